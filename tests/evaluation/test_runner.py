"""The gin `evaluate` entry: restore, evaluate, JSON + TensorBoard outputs."""
import json
import os

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from st_tf.evaluation import runner
from st_tf.evaluation import segmentation
from st_tf.training import checkpoints
from tests.evaluation import tiny_models


def _save_like_trainer(model, model_dir, step):
  ckpt = tf.train.Checkpoint(model=model, optimizer=tf_keras.optimizers.SGD(),
                             step=tf.Variable(step, dtype=tf.int64))
  return tf.train.CheckpointManager(ckpt, model_dir, max_to_keep=2).save()


def _dataset():
  rng = np.random.RandomState(0)
  images = rng.randint(0, 255, [4, 64, 64, 3]).astype(np.uint8)
  masks = rng.randint(0, 3, [4, 64, 64, 1]).astype(np.int32)
  masks[:, :, 60:] = 255
  return tf.data.Dataset.from_tensor_slices(
      (images, {'masks': masks})).batch(2)


def test_evaluate_restores_latest_checkpoint_and_records(tmp_path):
  model_dir = str(tmp_path / 'model')
  trained = tiny_models.tiny_segmentation(num_classes=3)
  _save_like_trainer(trained, model_dir, step=7)
  expected = segmentation.evaluate_segmentation(trained, _dataset())

  gin.parse_config([f"evaluate.model_dir = '{model_dir}'",
                    'evaluate.metric_fn = @evaluate_segmentation'])
  fresh = tiny_models.tiny_segmentation(num_classes=3)
  metrics = runner.evaluate(model=fresh, dataset=_dataset)

  for a, b in zip(fresh.weights, trained.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert metrics['step'] == 7
  assert metrics['mean_iou'] == pytest.approx(expected['mean_iou'], abs=1e-6)
  record = json.load(open(os.path.join(model_dir, 'eval_metrics.json')))
  assert record['step'] == 7 and record['checkpoint'].endswith('ckpt-1')
  assert record['metrics']['mean_iou'] == pytest.approx(metrics['mean_iou'])
  events = tf.io.gfile.glob(os.path.join(model_dir, 'eval', 'events.*'))
  assert events
  tags = {v.tag for e in tf.compat.v1.train.summary_iterator(events[0])
          for v in e.summary.value}
  assert {'mean_iou', 'iou/0'} <= tags


def test_missing_or_mismatched_checkpoint(tmp_path):
  model = tiny_models.tiny_segmentation(num_classes=3)
  with pytest.raises(FileNotFoundError, match='No checkpoint found'):
    runner.evaluate(model_dir=str(tmp_path), model=model, dataset=_dataset(),
                    metric_fn=segmentation.evaluate_segmentation)
  other = tiny_models.tiny_segmentation(num_classes=5)
  path = _save_like_trainer(other, str(tmp_path / 'other'), step=3)
  with pytest.raises(ValueError, match='ckpt-1 does not match'):
    checkpoints.restore_model(model, None, path)
  assert checkpoints.checkpoint_step(path) == 3


def test_write_metrics_creates_a_missing_folder(tmp_path):
  # A given teacher (self_train.teacher_model_dir) is evaluated into a new
  # round_0/teacher folder that nothing created before.
  folder = os.path.join(str(tmp_path), 'round_0', 'teacher')
  path = runner.write_metrics(folder, 7, 'ckpt-7', {'AP': 0.25})
  with open(path) as f:
    record = json.load(f)
  assert record['step'] == 7 and record['metrics'] == {'AP': 0.25}
