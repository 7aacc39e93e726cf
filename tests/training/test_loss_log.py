"""train.loss_log_every: train_log.csv rows, window means, resume, errors."""
import os

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from st_tf.training import loss_log
from st_tf.training import trainer
from tests.training import tiny

_CONFIG = """
train.model = @tiny_model
train.train_dataset = @tiny_dataset
train.steps_per_epoch = 4
make_optimizer.learning_rate = @warmup_cosine()
warmup_cosine.learning_rate = 0.1
warmup_cosine.total_steps = 8
warmup_cosine.warmup_steps = 2
"""


class _Record(tf_keras.callbacks.Callback):
  """Per-step logs as Keras hands them to batch callbacks."""

  def __init__(self):
    super().__init__()
    self.loss = {}

  def on_train_batch_end(self, batch, logs=None):
    step = int(self.model.optimizer.iterations.numpy())
    self.loss[step] = float(logs['loss'])


class _Crash(tf_keras.callbacks.Callback):

  def __init__(self, at):
    super().__init__()
    self._at = at

  def on_train_batch_end(self, batch, logs=None):
    if int(self.model.optimizer.iterations.numpy()) >= self._at:
      raise KeyboardInterrupt('preempted')


class _MeanModel(tiny.TinyModel):
  """TinyModel whose `loss` is a running epoch mean, like SelfTrainingModel."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.tracker = tf_keras.metrics.Mean('loss')
    self.step_loss = tf.Variable(0.0, trainable=False)

  @property
  def metrics(self):
    return [self.tracker]

  def train_step(self, data):
    logs = super().train_step(data)
    self.step_loss.assign(logs['loss'])
    self.tracker.update_state(logs['loss'])
    return {'loss': self.tracker.result(), 'step_loss': logs['loss']}


@gin.configurable
def _mean_model():
  model = _MeanModel()
  model(tf.zeros([1, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE, 3], tf.uint8))
  return model


def test_raw_loss_is_logged_every_n_steps(tmp_path):
  gin.parse_config(_CONFIG)
  model_dir = str(tmp_path / 'run')
  record = _Record()
  trainer.train(model_dir=model_dir, train_steps=8, loss_log_every=2,
                callbacks=[record])
  rows = loss_log.read_log(os.path.join(model_dir, loss_log.FILE_NAME))
  assert [r['step'] for r in rows] == [2, 4, 6, 8]
  for row in rows:  # TinyModel returns the step's own loss (no tracker).
    assert row['loss'] == pytest.approx(record.loss[row['step']], rel=1e-6)
    assert 'learning_rate' in row and 'human_loss' not in row
  assert rows[0]['learning_rate'] == pytest.approx(0.1)  # end of warmup


def test_running_means_become_window_means(tmp_path):
  gin.parse_config(_CONFIG.replace('@tiny_model', '@_mean_model'))
  model_dir = str(tmp_path / 'run')
  steps = {}

  class _StepLoss(tf_keras.callbacks.Callback):

    def on_train_batch_end(self, batch, logs=None):
      steps[int(self.model.optimizer.iterations.numpy())] = float(
          logs['step_loss'])

  trainer.train(model_dir=model_dir, train_steps=8, loss_log_every=3,
                callbacks=[_StepLoss()])
  rows = loss_log.read_log(os.path.join(model_dir, loss_log.FILE_NAME))
  # Rows at steps 3, 6 (a window across the epoch boundary at 4 restarts
  # at the epoch start: steps 5-6).
  assert [r['step'] for r in rows] == [3, 6]
  assert rows[0]['loss'] == pytest.approx(
      np.mean([steps[1], steps[2], steps[3]]), rel=1e-5)
  assert rows[1]['loss'] == pytest.approx(
      np.mean([steps[5], steps[6]]), rel=1e-5)


def test_per_step_log_equals_step_losses(tmp_path):
  gin.parse_config(_CONFIG.replace('@tiny_model', '@_mean_model'))
  model_dir = str(tmp_path / 'run')
  steps = {}

  class _StepLoss(tf_keras.callbacks.Callback):

    def on_train_batch_end(self, batch, logs=None):
      steps[int(self.model.optimizer.iterations.numpy())] = float(
          logs['step_loss'])

  trainer.train(model_dir=model_dir, train_steps=8, loss_log_every=1,
                callbacks=[_StepLoss()])
  rows = loss_log.read_log(os.path.join(model_dir, loss_log.FILE_NAME))
  assert [r['step'] for r in rows] == list(range(1, 9))
  np.testing.assert_allclose([r['loss'] for r in rows],
                             [steps[s] for s in range(1, 9)], rtol=1e-5)


def test_resume_drops_rows_after_checkpoint_and_appends(tmp_path):
  gin.parse_config(_CONFIG)
  model_dir = str(tmp_path / 'run')
  path = os.path.join(model_dir, loss_log.FILE_NAME)
  with pytest.raises(KeyboardInterrupt):
    trainer.train(model_dir=model_dir, train_steps=8, loss_log_every=1,
                  callbacks=[_Crash(6)])
  assert [r['step'] for r in loss_log.read_log(path)] == list(range(1, 7))
  with open(path, 'a') as f:
    f.write('7,0.5')  # a line torn by the crash
  trainer.train(model_dir=model_dir, train_steps=8, loss_log_every=1)
  # Resumed from ckpt-4: steps 5, 6 are redone, each logged once.
  assert [r['step'] for r in loss_log.read_log(path)] == list(range(1, 9))


def test_off_by_default_and_bad_interval(tmp_path):
  gin.parse_config(_CONFIG)
  model_dir = str(tmp_path / 'run')
  trainer.train(model_dir=model_dir, train_steps=4)
  assert not os.path.exists(os.path.join(model_dir, loss_log.FILE_NAME))
  with pytest.raises(ValueError, match='loss_log_every'):
    trainer.train(model_dir=str(tmp_path / 'bad'), train_steps=4,
                  loss_log_every=0)


def test_read_log_keeps_non_finite(tmp_path):
  path = tmp_path / 'train_log.csv'
  path.write_text(','.join(loss_log.COLUMNS) + '\n1,1.5,,,0.1,\n2,nan,,,0.1,'
                  '\n3,inf,,,0.1,\n')
  rows = loss_log.read_log(str(path))
  assert rows[0] == {'step': 1, 'loss': 1.5, 'learning_rate': 0.1}
  assert np.isnan(rows[1]['loss']) and np.isinf(rows[2]['loss'])
