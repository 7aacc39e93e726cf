"""Gin entry: restore a checkpoint, evaluate, record the metrics.

Example gin (detection)::

    evaluate.model_dir = '/tmp/teacher'
    evaluate.model = @SelfTrainingModel()
    evaluate.dataset = @eval_dataset()
    evaluate.metric_fn = @evaluate_detection
    evaluate_detection.annotation_file = '/data/digitscenes/val.json'

`metric_fn` is a gin reference (not a name): `@evaluate_detection` (COCO AP)
or `@evaluate_segmentation` (mIoU), or any callable
``(model, dataset, *, output_dir) -> Dict[str, float]``.

Outputs in `model_dir`: `eval_metrics.json` (``{"step", "checkpoint",
"metrics"}``, overwritten by each evaluation), TensorBoard scalars under
`eval/`, and per-step artifacts (COCO detections JSON) in `eval/step_<N>/`.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Optional

from absl import logging
import gin
import tensorflow as tf
import tf_keras

from st_tf import atomic_io
# Imported so that `@evaluate_detection` / `@evaluate_segmentation` resolve.
from st_tf.evaluation import coco  # pylint: disable=unused-import
from st_tf.evaluation import segmentation  # pylint: disable=unused-import
from st_tf.training import checkpoints

METRICS_FILE = 'eval_metrics.json'
EVAL_SUBDIR = 'eval'


def _materialize(value: Any, kind: type) -> Any:
  """Accepts an object or a zero-argument factory returning one."""
  if isinstance(value, kind):
    return value
  if callable(value) and not isinstance(value, tf_keras.Model):
    return value()
  return value


def build_from_dataset(model: tf_keras.Model, dataset: tf.data.Dataset) -> None:
  """Builds `model` with a zero batch shaped like the dataset's images."""
  if model.built or not isinstance(dataset, tf.data.Dataset):
    return
  spec = dataset.element_spec[0]
  shape = spec.shape.as_list()
  if None in shape[1:]:
    return  # Unknown image size: the restore is deferred to the first call.
  model(tf.zeros([1] + shape[1:], spec.dtype), training=False)


def write_metrics(model_dir: str, step: int, checkpoint: str,
                  metrics: Dict[str, float]) -> str:
  """Writes `eval_metrics.json` and TensorBoard scalars; returns JSON path."""
  tf.io.gfile.makedirs(model_dir)  # E.g. a given teacher's new eval folder.
  path = os.path.join(model_dir, METRICS_FILE)
  record = {'step': int(step), 'checkpoint': checkpoint,
            'metrics': {k: float(v) for k, v in metrics.items()}}
  atomic_io.write_json(path, record, indent=2, sort_keys=True)
  writer = tf.summary.create_file_writer(os.path.join(model_dir, EVAL_SUBDIR))
  with writer.as_default():
    for name, value in metrics.items():
      tf.summary.scalar(name, float(value), step=int(step))
  writer.close()
  return path


@gin.configurable
def evaluate(model_dir: str = gin.REQUIRED,
             model: Any = gin.REQUIRED,
             dataset: Any = gin.REQUIRED,
             metric_fn: Callable[..., Dict[str, float]] = gin.REQUIRED,
             checkpoint: Optional[str] = None) -> Dict[str, Any]:
  """Restores a checkpoint of `model` and evaluates it on `dataset`.

  Args:
    model_dir: the trainer's directory (checkpoints, metric outputs).
    model: uint8-input `SelfTrainingModel` (or a factory returning one).
    dataset: eval `tf.data.Dataset` of `(images, labels)` (or a factory).
    metric_fn: `(model, dataset, *, output_dir) -> metrics`, e.g.
      `coco.evaluate_detection` or `segmentation.evaluate_segmentation`.
    checkpoint: checkpoint prefix or directory; None -> latest in model_dir.

  Returns:
    The metrics dict plus 'step' (int).
  """
  model = _materialize(model, tf_keras.Model)
  dataset = _materialize(dataset, tf.data.Dataset)
  build_from_dataset(model, dataset)
  path, step = checkpoints.restore_model(model, model_dir, checkpoint)
  logging.info('Evaluating %s (step %d)', path, step)
  output_dir = os.path.join(model_dir, EVAL_SUBDIR, f'step_{step}')
  metrics = dict(metric_fn(model, dataset, output_dir=output_dir))
  write_metrics(model_dir, step, path, metrics)
  logging.info('Step %d eval metrics: %s', step, metrics)
  return dict(metrics, step=step)
