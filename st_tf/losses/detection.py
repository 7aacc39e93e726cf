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

from typing import Any, Mapping, Optional

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
                   box_loss_weight: float = 50.,
                   pseudo_box_loss_weight: Optional[float] = None
                   ) -> dict[str, tf.Tensor]:
  """RetinaNet loss of the examples selected by `example_weight`.

  The per-anchor focal and Huber terms are computed once and then reduced
  for each part, so the human and pseudo losses of a student batch cost one
  loss evaluation (pass `example_weight` of shape [P, B]).

  Args:
    outputs: RetinaNetModel outputs: `cls_outputs` {level: [B, h, w,
      A * num_classes]} and `box_outputs` {level: [B, h, w, A * 4]} logits /
      encoded box deltas (any float dtype; computed in float32).
    labels: RetinaNet label dict: `cls_targets` {level: int [B, h, w, A]}
      (class ids, 0 = background, -1 = negative / ignored), `box_targets`
      {level: [B, h, w, A * 4]} (encoded), `cls_weights` [B, num_anchors],
      `box_weights` [B, num_anchors].
    example_weight: float [B] (one part) or [P, B] (P parts, e.g. human and
      pseudo), 1.0 for examples of the part, 0.0 otherwise.
    num_classes: classes of the model, background included.
    focal_alpha: focal loss alpha.
    focal_gamma: focal loss gamma.
    huber_delta: Huber delta on the encoded box targets.
    box_loss_weight: weight of the box loss in `total`.
    pseudo_box_loss_weight: if set, the box-loss weight of the SECOND part
      of a [2, B] `example_weight` -- the pseudo part of a student batch
      (`SelfTrainingModel` passes [human, pseudo]). 0 trains the pseudo
      boxes for classification only (as Unbiased Teacher). One-part calls
      (eval, teacher) always use `box_loss_weight`.

  Returns:
    dict of float32 scalars (or [P] vectors): `total` = cls + box_loss_weight
    * box, `cls`, `box`, and `num_positives` (positive anchors of the part,
    without the +1 guard). Each part is normalized by its own positives + 1,
    exactly as Model Garden's `RetinaNetTask.build_losses` normalizes a batch;
    all are finite and zero when a part is empty.
  """
  _check_labels(labels, outputs)
  # Model Garden's loss objects; `.call` gives the unreduced terms.
  cls_loss_fn = focal_loss.FocalLoss(
      alpha=focal_alpha, gamma=focal_gamma,
      reduction=tf_keras.losses.Reduction.NONE)
  box_loss_fn = tf_keras.losses.Huber(
      huber_delta, reduction=tf_keras.losses.Reduction.NONE)

  y_true_cls = loss_utils.multi_level_flatten(
      labels['cls_targets'], last_dim=None)
  y_true_cls = tf.one_hot(y_true_cls, num_classes)
  y_pred_cls = loss_utils.multi_level_flatten(
      _to_float32(outputs['cls_outputs']), last_dim=num_classes)
  y_true_box = loss_utils.multi_level_flatten(
      _to_float32(labels['box_targets']), last_dim=4)
  y_pred_box = loss_utils.multi_level_flatten(
      _to_float32(outputs['box_outputs']), last_dim=4)

  cls_weights = tf.cast(labels['cls_weights'], tf.float32)  # [B, A]
  box_weights = tf.cast(labels['box_weights'], tf.float32)  # [B, A]
  # Per-example sums [B]: focal summed over classes and anchors, Huber
  # averaged over the 4 coordinates (as Keras does) and summed over anchors.
  cls_per_example = tf.reduce_sum(
      tf.reduce_sum(cls_loss_fn.call(y_true_cls, y_pred_cls), -1) *
      cls_weights, -1)
  box_per_example = tf.reduce_sum(
      box_loss_fn.call(y_true_box, y_pred_box) * box_weights, -1)
  positives_per_example = tf.reduce_sum(box_weights, -1)

  weight = tf.cast(example_weight, tf.float32)
  part_sum = lambda per_example: tf.reduce_sum(weight * per_example, -1)
  num_positives = part_sum(positives_per_example)
  normalizer = num_positives + 1.0  # Model Garden's zero guard.
  cls_loss = part_sum(cls_per_example) / normalizer
  box_loss = part_sum(box_per_example) / normalizer
  weights = tf.constant(box_loss_weight, tf.float32)
  if pseudo_box_loss_weight is not None and weight.shape.rank == 2:
    if weight.shape[0] != 2:
      raise ValueError('st_tf/losses/detection.py: pseudo_box_loss_weight '
                       'needs example_weight [2, B] (human, pseudo), got '
                       f'shape {weight.shape}.')
    weights = tf.constant([box_loss_weight, pseudo_box_loss_weight],
                          tf.float32)
  return {
      'total': cls_loss + weights * box_loss,
      'cls': cls_loss,
      'box': box_loss,
      'num_positives': num_positives,
  }


def _to_float32(levels: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  return {k: tf.cast(v, tf.float32) for k, v in levels.items()}


# Gin handle (`SelfTrainingModel.loss_fn = @detection_loss`); calling
# `detection_loss` directly stays a pure function with explicit arguments.
gin.external_configurable(detection_loss, module='st_tf.losses')
