"""Semantic segmentation mIoU and per-class IoU (Model Garden metrics).

Logits ``[B, h, w, C]`` (usually at 1/4-1/8 of the input) are bilinearly
upsampled to the label resolution ``[B, H, W]`` before the argmax, and pixels
labelled 255 (`schema.IGNORE_LABEL`, also the parser's padding) are ignored.
Model Garden's `MeanIoU` (mean over classes that occur in labels or
predictions) and `PerClassIoU` (0 for classes that never occur) share that
preprocessing.
"""
from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional

import gin
import tensorflow as tf
import tf_keras
from official.vision.evaluation import segmentation_metrics

from st_tf.data import schema

# Key prefix of the per-class IoUs: 'iou/<class id>'.
PER_CLASS_PREFIX = 'iou/'


class SegmentationEvaluator:
  """Accumulates a confusion matrix over batches; reports IoUs."""

  def __init__(self, num_classes: int):
    """Args: num_classes: number of classes C, background (0) included."""
    if num_classes < 1:
      raise ValueError(f'num_classes must be >= 1, got {num_classes}')
    self.num_classes = num_classes
    self._mean_iou = segmentation_metrics.MeanIoU(
        num_classes=num_classes, rescale_predictions=False, name='mean_iou')
    self._per_class_iou = segmentation_metrics.PerClassIoU(
        num_classes=num_classes, rescale_predictions=False,
        name='per_class_iou')
    self._num_pixels = 0

  def reset_states(self) -> None:
    self._mean_iou.reset_state()
    self._per_class_iou.reset_state()
    self._num_pixels = 0

  def update_state(self, masks: tf.Tensor, logits: tf.Tensor) -> None:
    """Adds one batch.

    Args:
      masks: int ``[B, H, W, 1]`` (or ``[B, H, W]``) class ids, 255 = ignore.
      logits: float ``[B, h, w, C]`` model logits at any resolution.
    """
    masks = tf.convert_to_tensor(masks)
    logits = tf.convert_to_tensor(logits)
    if masks.shape.rank == 3:
      masks = masks[..., tf.newaxis]
    if masks.shape.rank != 4 or logits.shape.rank != 4:
      raise ValueError(f'expected masks [B,H,W,1] and logits [B,h,w,C]; got '
                       f'{masks.shape} and {logits.shape}')
    if logits.shape[-1] != self.num_classes:
      raise ValueError(f'logits have {logits.shape[-1]} classes, evaluator '
                       f'expects {self.num_classes}')
    masks = tf.cast(masks, tf.int32)
    valid = tf.not_equal(masks, schema.IGNORE_LABEL)
    out_of_range = tf.logical_and(
        valid, tf.logical_or(masks < 0, masks >= self.num_classes))
    if bool(tf.reduce_any(out_of_range)):
      raise ValueError(f'mask values outside [0, {self.num_classes}) and not '
                       f'{schema.IGNORE_LABEL} found')
    y_true = {
        'masks': masks,
        'valid_masks': valid,
        # Unused with rescale_predictions=False; MG reads the key.
        'image_info': tf.zeros([tf.shape(masks)[0], 4, 2], tf.float32),
    }
    logits = tf.cast(logits, tf.float32)
    self._mean_iou.update_state(y_true, logits)
    self._per_class_iou.update_state(y_true, logits)
    self._num_pixels += int(tf.reduce_sum(tf.cast(valid, tf.int64)))

  def result(self) -> Dict[str, float]:
    """Returns {'mean_iou', 'iou/<class id>' for each class (IoUs in [0, 1]),
    'num_pixels' (valid label pixels seen)}."""
    if not self._num_pixels:
      raise ValueError('SegmentationEvaluator.result(): no valid (non-255) '
                       'label pixels were seen; is the eval dataset empty?')
    metrics = {'mean_iou': float(self._mean_iou.result())}
    for i, value in enumerate(self._per_class_iou.result().numpy()):
      metrics[f'{PER_CLASS_PREFIX}{i}'] = float(value)
    metrics['num_pixels'] = float(self._num_pixels)
    return metrics


@gin.configurable
def evaluate_segmentation(model: tf_keras.Model,
                          dataset: Iterable,
                          *,
                          output_dir: Optional[str] = None,
                          num_classes: Optional[int] = None,
                          num_batches: Optional[int] = None
                          ) -> Dict[str, float]:
  """Runs `model` over `dataset`; returns mIoU and per-class IoU.

  Args:
    model: uint8-input segmentation model returning {'logits': [B,h,w,C]}.
    dataset: yields `(images uint8 [B,H,W,3], labels)` with `labels['masks']`
      int ``[B,H,W,1]`` (255 = ignore).
    output_dir: unused (same signature as `evaluate_detection`).
    num_classes: C; None -> taken from the logits.
    num_batches: stop after this many batches (None: whole dataset).

  Returns:
    See `SegmentationEvaluator.result`.
  """
  del output_dir

  @tf.function
  def predict(images):
    outputs = model(images, training=False)
    if not isinstance(outputs, Mapping) or 'logits' not in outputs:
      raise ValueError('segmentation model must return a dict with `logits`')
    return outputs['logits']

  evaluator = None
  for i, (images, labels) in enumerate(dataset):
    if num_batches is not None and i >= num_batches:
      break
    if 'masks' not in labels:
      raise ValueError(f'segmentation eval labels need `masks`; got '
                       f'{sorted(labels)}')
    logits = predict(images)
    if evaluator is None:
      evaluator = SegmentationEvaluator(num_classes or int(logits.shape[-1]))
    evaluator.update_state(labels['masks'], logits)
  if evaluator is None:
    raise ValueError('evaluate_segmentation: the eval dataset was empty')
  return evaluator.result()
