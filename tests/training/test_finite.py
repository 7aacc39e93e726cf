"""A NaN loss stops training, is never checkpointed nor marked complete."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from st_tf.self_train import models as self_train_models
from st_tf.self_train import stages
from st_tf.training import finite
from st_tf.training import trainer
from tests.training import tiny


def _dataset(nan_from_step=None):
  """Batches of 4; targets NaN from optimizer step `nan_from_step` on."""

  def fn(input_context=None):
    del input_context
    first_bad = 4 * (nan_from_step - 1) if nan_from_step else 1 << 40

    def example(i):
      image = tf.fill([tiny.IMAGE_SIZE, tiny.IMAGE_SIZE, 3], tf.uint8.max)
      target = tf.where(i >= first_bad, np.nan, 0.5) * tf.ones([2])
      return image, target

    return tf.data.Dataset.range(1 << 20).map(example).batch(4)

  return fn


def _train(model_dir, nan_from_step=None, **kwargs):
  return trainer.train(
      model_dir=model_dir, model=tiny.tiny_model,
      train_dataset=_dataset(nan_from_step), train_steps=6, steps_per_epoch=2,
      optimizer=lambda: tf_keras.optimizers.SGD(0.01), **kwargs)


def _steps(model_dir):
  return sorted(int(p.rsplit('-', 1)[1]) for p in
                tf.train.get_checkpoint_state(model_dir)
                .all_model_checkpoint_paths)


def test_nan_loss_stops_training_before_its_checkpoint(tmp_path):
  model_dir = str(tmp_path / 'run')
  with pytest.raises(finite.NonFiniteError,
                     match=r'step 3: .*loss=nan.*ckpt-2.*gradient_clip_norm'):
    _train(model_dir, nan_from_step=3)
  assert _steps(model_dir) == [2]  # Nothing of the NaN epoch.


def test_nan_training_stage_is_never_marked_complete(tmp_path):
  model_dir = str(tmp_path / 'pipeline')
  train_dir = os.path.join(model_dir, 'teacher')
  log = stages.StageLog(model_dir)
  with pytest.raises(finite.NonFiniteError):
    self_train_models.train_stage(
        log, 'teacher/train', train_dir, 'teacher', model=tiny.tiny_model,
        train_dataset=_dataset(nan_from_step=1), train_steps=2,
        steps_per_epoch=2, optimizer=lambda: tf_keras.optimizers.SGD(0.01))
  assert not stages.train_complete(train_dir)
  assert not os.path.exists(os.path.join(model_dir, stages.STATE_FILE))
  assert tf.train.latest_checkpoint(train_dir) is None


def _save_nan_checkpoint(model_dir, from_step, step):
  """A checkpoint as an unguarded trainer would have saved after a NaN."""
  model = tiny.tiny_model()
  optimizer = tf_keras.optimizers.SGD(0.01)
  checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                   step=optimizer.iterations)
  checkpoint.restore(os.path.join(model_dir, f'ckpt-{from_step}'))
  model.head.kernel.assign(tf.fill(model.head.kernel.shape, np.nan))
  optimizer.iterations.assign(step)
  tf.train.CheckpointManager(checkpoint, model_dir, max_to_keep=5,
                             checkpoint_name='ckpt').save(
                                 checkpoint_number=step)


class _Start(tf_keras.callbacks.Callback):

  def on_train_begin(self, logs=None):
    self.step = int(self.model.optimizer.iterations.numpy())


def test_resume_from_last_finite_checkpoint_when_asked(tmp_path):
  model_dir = str(tmp_path / 'run')
  trainer.train(model_dir=model_dir, model=tiny.tiny_model,
                train_dataset=_dataset(), train_steps=2, steps_per_epoch=2,
                optimizer=lambda: tf_keras.optimizers.SGD(0.01))
  _save_nan_checkpoint(model_dir, from_step=2, step=4)
  with pytest.raises(finite.NonFiniteError,
                     match='ckpt-4 holds non-finite.*resume_from_last_finite'):
    _train(model_dir)
  start = _Start()
  logs = _train(model_dir, resume_from_last_finite=True, callbacks=[start])
  assert start.step == 2 and np.isfinite(logs['loss'])
  assert stages.final_step(model_dir) == 6
