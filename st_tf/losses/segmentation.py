"""Semantic segmentation loss restricted to a subset of the batch.

Model Garden's `SegmentationLoss` (`official/vision/losses/
segmentation_losses.py`): by default (`use_groundtruth_dimension=True`) the
logits are resized bilinearly to the label size; with False the labels are
resized (nearest neighbour) to the logits size instead, as the released
PASCAL config does (tensorflow/tpu `models/official/detection/projects/
self_training/configs/pascal_seg_efficientnet-b7-nasfpn.yaml`, line 47).
Then per-pixel softmax cross-entropy, pixels labelled `ignore_label` are dropped,
the sum is divided by the number of valid pixels (+1e-5 guard). It has no
per-example weight, so the examples not selected by `example_weight` are
excluded by relabelling all their pixels `ignore_label`; the loss is then the
mean over the valid pixels of the selected examples only.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import gin
import tensorflow as tf
from official.vision.losses import segmentation_losses

from st_tf.data import schema


def segmentation_loss(outputs: Mapping[str, Any],
                      labels: Mapping[str, Any],
                      example_weight: tf.Tensor,
                      *,
                      ignore_label: int = schema.IGNORE_LABEL,
                      label_smoothing: float = 0.0,
                      class_weights: Sequence[float] = (),
                      use_groundtruth_dimension: bool = True
                      ) -> dict[str, tf.Tensor]:
  """Softmax cross-entropy of the valid pixels of the selected examples.

  Args:
    outputs: SegmentationModel outputs: `logits` [B, h, w, num_classes]
      (any float dtype, possibly lower resolution than the masks).
    labels: `masks` int [B, H, W, 1] class ids, `ignore_label` = ignore (also
      on padding).
    example_weight: float [B], 1.0 for examples of this part, 0.0 otherwise,
      or [P, B] for P parts (the result then holds [P] vectors). Only its
      support (> 0) is used.
    ignore_label: mask value that is not trained on.
    label_smoothing: Model Garden's label smoothing.
    class_weights: Model Garden's per-class loss weights ([num_classes];
      empty = all 1). With rare foreground classes (DigitScenes strokes are
      ~5% of the pixels) weighting them up keeps the model from predicting
      background everywhere.
    use_groundtruth_dimension: True: the loss is computed at the label
      resolution [H, W] (logits upsampled); False: at the logits resolution
      [h, w] (labels downsampled, nearest), cheaper at 1/4 or 1/16 of the
      pixels. `valid_pixels` / `ignore_fraction` count pixels at the
      resolution the loss uses.

  Returns:
    dict of float32 scalars: `total` (mean loss per valid pixel of the part;
    0 if the part has no valid pixel), `valid_pixels` (count) and
    `ignore_fraction` (ignored pixels / all pixels of the part, 0 if the
    part is empty).
  """
  for key, where, owner in (('logits', outputs, 'outputs'),
                            ('masks', labels, 'labels')):
    if key not in where:
      raise ValueError(
          f'st_tf/losses/segmentation.py: {owner} lack {key!r} (have '
          f'{sorted(where)}).')
  if example_weight.shape.rank == 2:  # One Model Garden loss per part.
    parts = [segmentation_loss(outputs, labels, w, ignore_label=ignore_label,
                               label_smoothing=label_smoothing,
                               class_weights=class_weights,
                               use_groundtruth_dimension=(
                                   use_groundtruth_dimension))
             for w in tf.unstack(example_weight)]
    return {k: tf.stack([p[k] for p in parts]) for k in parts[0]}
  logits = tf.cast(outputs['logits'], tf.float32)
  masks = tf.cast(labels['masks'], tf.int32)
  if masks.shape.rank != 4:
    raise ValueError(
        'st_tf/losses/segmentation.py: labels["masks"] must be [B, H, W, 1], '
        f'got shape {masks.shape}.')
  selected = tf.cast(example_weight, tf.float32) > 0
  masks = tf.where(selected[:, None, None, None], masks,
                   tf.fill(tf.shape(masks), ignore_label))
  loss_fn = segmentation_losses.SegmentationLoss(
      label_smoothing=label_smoothing,
      class_weights=list(class_weights),
      ignore_label=ignore_label,
      use_groundtruth_dimension=use_groundtruth_dimension)
  total = loss_fn(logits, masks)
  if not use_groundtruth_dimension:  # Count pixels where the loss is taken.
    masks = tf.image.resize(masks, tf.shape(logits)[1:3],
                            method=tf.image.ResizeMethod.NEAREST_NEIGHBOR)

  valid = tf.reduce_sum(tf.cast(tf.not_equal(masks, ignore_label), tf.float32))
  pixels_per_example = tf.cast(tf.reduce_prod(tf.shape(masks)[1:]), tf.float32)
  part_pixels = tf.reduce_sum(tf.cast(selected, tf.float32)) * pixels_per_example
  ignore_fraction = tf.math.divide_no_nan(part_pixels - valid, part_pixels)
  return {
      'total': total,
      'valid_pixels': valid,
      'ignore_fraction': ignore_fraction,
  }


# Gin handle (`SelfTrainingModel.loss_fn = @segmentation_loss`); calling
# `segmentation_loss` directly stays a pure function with explicit arguments.
gin.external_configurable(segmentation_loss, module='st_tf.losses')
