"""RetinaNet detection loss restricted to a subset of the batch.

Same loss as Model Garden's `RetinaNetTask.build_losses`
(`official/vision/tasks/retinanet.py`): sigmoid focal loss on the classes and
Huber loss on the encoded box targets, both summed and normalized by the
number of positive anchors + 1. The only addition is `example_weight`: the
per-anchor weights of example `b` are multiplied by `example_weight[b]`, and the
normalizer counts only the positives of the selected examples, so the human
and the pseudo part of one batch get their own, independently normalized loss
from a single forward pass.
"""
from __future__ import annotations

from typing import Any, Mapping

import gin
import tensorflow as tf
import tf_keras
from official.vision.losses import focal_loss
from official.vision.losses import loss_utils


def _check_labels(labels: Mapping[str, Any], outputs: Mapping[str, Any]):
  for key in ('cls_targets', 'box_targets', 'cls_weights', 'box_weights'):
    if key not in labels:
      raise ValueError(
          f'st_tf/losses/detection.py: labels lack {key!r} (have '
          f'{sorted(labels)}); expected the RetinaNet label dict of '
          'st_tf.data.parsers.DetectionParser.')
  for key in ('cls_outputs', 'box_outputs'):
    if key not in outputs:
      raise ValueError(
          f'st_tf/losses/detection.py: model outputs lack {key!r} (have '
          f'{sorted(outputs)}); expected a Model Garden RetinaNetModel.')


def detection_loss(outputs: Mapping[str, Any],
                   labels: Mapping[str, Any],
                   example_weight: tf.Tensor,
                   *,
                   num_classes: int,
                   focal_alpha: float = 0.25,
                   focal_gamma: float = 1.5,
                   huber_delta: float = 0.1,
                   box_loss_weight: float = 50.) -> dict[str, tf.Tensor]:
  """RetinaNet loss of the examples selected by `example_weight`.

  Args:
    outputs: RetinaNetModel outputs: `cls_outputs` {level: [B, h, w,
      A * num_classes]} and `box_outputs` {level: [B, h, w, A * 4]} logits /
      encoded box deltas (any float dtype; computed in float32).
    labels: RetinaNet label dict: `cls_targets` {level: int [B, h, w, A]}
      (class ids, 0 = background, -1 = negative / ignored), `box_targets`
      {level: [B, h, w, A * 4]} (encoded), `cls_weights` [B, num_anchors],
      `box_weights` [B, num_anchors].
    example_weight: float [B], 1.0 for examples of this part, 0.0 otherwise.
    num_classes: classes of the model, background included.
    focal_alpha: focal loss alpha.
    focal_gamma: focal loss gamma.
    huber_delta: Huber delta on the encoded box targets.
    box_loss_weight: weight of the box loss in `total`.

  Returns:
    dict of float32 scalars: `total` = cls + box_loss_weight * box, `cls`,
    `box`, and `num_positives` (positive anchors of the part, without the +1
    guard). All are finite and zero when the part is empty.
  """
  _check_labels(labels, outputs)
  example_weight = tf.cast(example_weight, tf.float32)[:, None]
  cls_sample_weight = tf.cast(labels['cls_weights'], tf.float32) * example_weight
  box_sample_weight = tf.cast(labels['box_weights'], tf.float32) * example_weight
  num_positives = tf.reduce_sum(box_sample_weight)
  normalizer = num_positives + 1.0  # Model Garden's zero guard.
  cls_sample_weight /= normalizer
  box_sample_weight /= normalizer

  cls_loss_fn = focal_loss.FocalLoss(
      alpha=focal_alpha, gamma=focal_gamma,
      reduction=tf_keras.losses.Reduction.SUM)
  box_loss_fn = tf_keras.losses.Huber(
      huber_delta, reduction=tf_keras.losses.Reduction.SUM)

  y_true_cls = loss_utils.multi_level_flatten(
      labels['cls_targets'], last_dim=None)
  y_true_cls = tf.one_hot(y_true_cls, num_classes)
  y_pred_cls = loss_utils.multi_level_flatten(
      _to_float32(outputs['cls_outputs']), last_dim=num_classes)
  y_true_box = loss_utils.multi_level_flatten(
      _to_float32(labels['box_targets']), last_dim=4)
  y_pred_box = loss_utils.multi_level_flatten(
      _to_float32(outputs['box_outputs']), last_dim=4)

  cls_loss = cls_loss_fn(
      y_true=y_true_cls, y_pred=y_pred_cls, sample_weight=cls_sample_weight)
  box_loss = box_loss_fn(
      y_true=y_true_box, y_pred=y_pred_box, sample_weight=box_sample_weight)
  return {
      'total': cls_loss + box_loss_weight * box_loss,
      'cls': cls_loss,
      'box': box_loss,
      'num_positives': num_positives,
  }


def _to_float32(levels: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  return {k: tf.cast(v, tf.float32) for k, v in levels.items()}


# Gin handle (`SelfTrainingModel.loss_fn = @detection_loss`); calling
# `detection_loss` directly stays a pure function with explicit arguments.
gin.external_configurable(detection_loss, module='st_tf.losses')
