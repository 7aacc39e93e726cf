"""Trainer: checkpoints, summaries, configs, preemption resume, init skip."""
import glob
import os

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from st_tf.training import checkpoints
from st_tf.training import trainer
from tests.training import tiny

_CONFIG = """
train.model = @tiny_model
train.train_dataset = @tiny_dataset
train.steps_per_epoch = 2
make_optimizer.learning_rate = @warmup_cosine()
make_optimizer.global_clipnorm = 10.0
warmup_cosine.learning_rate = 0.1
warmup_cosine.total_steps = 6
warmup_cosine.warmup_steps = 2
"""


class _Crash(tf_keras.callbacks.Callback):
  """Simulates a preemption after `at` optimizer steps."""

  def __init__(self, at):
    super().__init__()
    self._at = at

  def on_train_batch_end(self, batch, logs=None):
    if int(self.model.optimizer.iterations.numpy()) >= self._at:
      raise KeyboardInterrupt('preempted')


class _StartStep(tf_keras.callbacks.Callback):

  def on_train_begin(self, logs=None):
    self.start = int(self.model.optimizer.iterations.numpy())


def _event_tags(log_dir):
  tags = {}
  for path in glob.glob(os.path.join(log_dir, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        tags.setdefault(value.tag, []).append(event.step)
  return tags


def _ckpt_step(path):
  return int(tf.train.load_variable(path, 'step/.ATTRIBUTES/VARIABLE_VALUE'))


def test_train_writes_checkpoints_summaries_and_configs(tmp_path):
  gin.parse_config(_CONFIG)
  model_dir = str(tmp_path / 'run')
  logs = trainer.train(model_dir=model_dir, train_steps=4)
  assert np.isfinite(logs['loss'])
  latest = tf.train.latest_checkpoint(model_dir)
  assert latest.endswith('ckpt-4') and _ckpt_step(latest) == 4
  assert os.path.exists(os.path.join(model_dir, 'ckpt-2.index'))
  tags = _event_tags(os.path.join(model_dir, 'train'))
  assert tags['loss'] == [2, 4]
  assert tags['learning_rate'] == [2, 4]
  operative = open(os.path.join(model_dir, 'operative_config.gin')).read()
  assert 'warmup_cosine.total_steps = 6' in operative
  assert 'tiny_dataset.batch_size = 4' in operative  # called defaults too
  full = open(os.path.join(model_dir, 'config.gin')).read()
  assert 'train.steps_per_epoch = 2' in full


def test_killed_run_resumes_from_saved_step(tmp_path):
  gin.parse_config(_CONFIG)
  model_dir = str(tmp_path / 'run')
  with pytest.raises(KeyboardInterrupt):
    trainer.train(model_dir=model_dir, train_steps=6, callbacks=[_Crash(3)])
  assert _ckpt_step(tf.train.latest_checkpoint(model_dir)) == 2
  saved = tf.train.load_variable(
      tf.train.latest_checkpoint(model_dir),
      'model/head/kernel/.ATTRIBUTES/VARIABLE_VALUE')

  init_calls = []
  start = _StartStep()
  restored = {}

  class _Peek(tf_keras.callbacks.Callback):

    def on_train_begin(self, logs=None):
      restored['head'] = self.model.head.kernel.numpy()

  trainer.train(model_dir=model_dir, train_steps=6,
                init=init_calls.append, callbacks=[start, _Peek()])
  assert start.start == 2
  assert not init_calls  # no init when resuming
  np.testing.assert_allclose(restored['head'], saved)
  assert _ckpt_step(tf.train.latest_checkpoint(model_dir)) == 6
  # Done: a third run is a no-op.
  assert trainer.train(model_dir=model_dir, train_steps=6) == {}


def test_fresh_run_calls_init_and_checkpoint_restores(tmp_path):
  gin.parse_config(_CONFIG)
  model_dir = str(tmp_path / 'run')
  init_calls = []
  trainer.train(model_dir=model_dir, train_steps=2, init=init_calls.append)
  assert len(init_calls) == 1 and isinstance(init_calls[0], tiny.TinyModel)
  model = tiny.tiny_model()
  path, _ = checkpoints.restore_model(model, model_dir)
  np.testing.assert_allclose(
      model.head.kernel.numpy(),
      tf.train.load_variable(path, 'model/head/kernel/.ATTRIBUTES/'
                                   'VARIABLE_VALUE'))
  with pytest.raises(ValueError, match='does not exist'):
    checkpoints.restore_model(model, str(tmp_path / 'empty'))


@pytest.mark.parametrize('steps,per_epoch,per_exec,match', [
    (5, 2, 1, 'multiple of steps_per_epoch'),
    (4, 2, 3, 'multiple of steps_per_execution'),
    (0, 2, 1, 'positive'),
])
def test_bad_step_counts_fail_fast(tmp_path, steps, per_epoch, per_exec,
                                   match):
  with pytest.raises(ValueError, match=match):
    trainer.train(model_dir=str(tmp_path), model=tiny.tiny_model,
                  train_dataset=tiny.tiny_dataset, train_steps=steps,
                  steps_per_epoch=per_epoch, steps_per_execution=per_exec)


def test_backup_and_restore_agrees_with_own_resume(tmp_path):
  gin.parse_config(_CONFIG)
  model_dir = str(tmp_path / 'run')
  with pytest.raises(KeyboardInterrupt):
    trainer.train(model_dir=model_dir, train_steps=6, backup_and_restore=True,
                  callbacks=[_Crash(5)])
  assert _ckpt_step(tf.train.latest_checkpoint(model_dir)) == 4
  backup = os.path.join(model_dir, 'backup')
  assert glob.glob(os.path.join(backup, '**', '*.index'), recursive=True)
  start = _StartStep()
  trainer.train(model_dir=model_dir, train_steps=6, backup_and_restore=True,
                callbacks=[start])
  assert start.start == 4
  assert _ckpt_step(tf.train.latest_checkpoint(model_dir)) == 6
  # BackupAndRestore deletes its backup once training completes.
  assert not glob.glob(os.path.join(backup, '**', '*.index'), recursive=True)


def _trained_weights(model_dir):
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
  return {k: reader.get_tensor(k) for k in sorted(
      reader.get_variable_to_shape_map()) if k.startswith('model/')}


def test_seed_reaches_weight_init_and_training(tmp_path):
  gin.parse_config(_CONFIG)
  runs = {}
  for name, seed in (('a', 7), ('b', 7), ('c', 8)):
    trainer.train(model_dir=str(tmp_path / name), train_steps=2, seed=seed)
    runs[name] = _trained_weights(str(tmp_path / name))
  assert runs['a'].keys() == runs['c'].keys() and runs['a']
  for key in runs['a']:  # the tiny dataset is fixed: same seed, same run
    np.testing.assert_allclose(runs['a'][key], runs['b'][key], rtol=1e-5,
                               atol=1e-6, err_msg=key)
  assert any(not np.allclose(runs['a'][k], runs['c'][k]) for k in runs['a'])
