"""Two views of an unlabeled image for the mean teacher: weak and strong.

* weak: the weak policy's geometry (default S1: random flip + scale jitter
  crop, Model Garden's `resize_and_crop_image`), no colour op; the EMA
  teacher labels it.
* strong: the weak view + colour-only RandAugment (Model Garden's, the
  geometric ops and its own Cutout excluded) + one Model Garden `cutout`
  square; the student learns from it. There is NO further geometry, so a
  box or pixel label of the weak view is one of the strong view, with no
  box bookkeeping (tests/data/test_views.py checks it).

`TwoViewParser` maps a decoded dict (`DetectionDecoder`,
`SegmentationDecoder` or `UnlabeledDecoder` output) to a dict of fixed
shapes:

  'weak', 'strong': uint8 [H, W, 3] (padded to the output size);
  'image_info': float32 [4, 2] Model Garden image info of the weak view;
  'valid': bool [H, W, 1], True on the image (False on its padding);
  with `groundtruth='boxes'`: 'groundtruth_boxes' float32 [G, 4] pixel yxyx
  of the weak view (zero rows = padding), 'groundtruth_classes' int32 [G];
  with `groundtruth='masks'`: 'groundtruth_masks' int32 [H, W, 1] (255 =
  ignore). Ground truth is only used to log pseudo-label quality.

Use it as the parser of `pipeline.build_dataset` (any mode: it always
augments); `pipeline.build_mean_teacher_dataset` zips it with the human
batches.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import gin
import tensorflow as tf
from official.vision.ops import augment as mg_augment
from official.vision.ops import preprocess_ops

from st_tf.data import augment

GROUNDTRUTH = (None, 'boxes', 'masks')


@gin.configurable
def strong_color_augmenter(num_layers: int = 2, magnitude: float = 10.0,
                           cutout_const: float = 10.0
                           ) -> mg_augment.RandAugment:
  """Model Garden RandAugment with colour ops only (no geometry, no Cutout:
  the strong view adds its own)."""
  return mg_augment.RandAugment(
      num_layers=num_layers, magnitude=magnitude, cutout_const=cutout_const,
      exclude_ops=sorted(augment.GEOMETRIC_OPS | {'Cutout'}))


@gin.configurable
class TwoViewParser:
  """Decoded unlabeled example -> weak and strong views (see module doc)."""

  def __init__(self,
               output_size: Sequence[int] = (128, 128),
               weak_policy: Union[str, augment.AugmentPolicy] = 'S1',
               strong_augmenter: Optional[mg_augment.ImageAugment] = (
                   gin.REQUIRED),
               cutout_size: int = 8,
               size_multiple: int = 1,
               groundtruth: Optional[str] = None,
               max_num_instances: int = 100):
    """Creates the parser.

    Args:
      output_size: [height, width] of the crop (as the student parser's).
      weak_policy: a policy name or `AugmentPolicy`; only its flip and scale
        jitter are used (its augmenters are ignored).
      strong_augmenter: a colour-only Model Garden augmenter (e.g.
        `@strong_color_augmenter()`) applied to the weak view, or None.
      cutout_size: half side in pixels of the strong view's cutout square
        (Model Garden `augment.cutout`, grey); 0 = no cutout.
      size_multiple: pad the views to a multiple of this (2**max_level for
        detection, as `DetectionParser`).
      groundtruth: None, 'boxes' or 'masks': also emit the decoded ground
        truth in the weak frame (for pseudo-label quality logs).
      max_num_instances: ground-truth boxes are padded to this many rows.
    """
    if groundtruth not in GROUNDTRUTH:
      raise ValueError(f'TwoViewParser.groundtruth must be one of '
                       f'{GROUNDTRUTH}, got {groundtruth!r}')
    policy = augment.get_policy(weak_policy, 'TwoViewParser.weak_policy')
    self._weak = augment.AugmentPolicy(
        f'{policy.name}_geometry', hflip=policy.hflip,
        scale_min=policy.scale_min, scale_max=policy.scale_max)
    self._strong = strong_augmenter
    self._cutout_size = int(cutout_size)
    self._output_size = [int(s) for s in output_size]
    self._padded_size = [int(s) for s in preprocess_ops.compute_padded_size(
        self._output_size, size_multiple)]
    self._groundtruth = groundtruth
    self._max_num_instances = int(max_num_instances)

  @property
  def padded_size(self) -> Sequence[int]:
    return list(self._padded_size)

  def strong_view(self, weak: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, 3] weak view -> strong view (pixel ops only)."""
    image = weak
    if self._strong is not None:
      image = self._strong.distort(image)
    if self._cutout_size > 0:
      image = mg_augment.cutout(image, self._cutout_size, replace=128)
    return tf.ensure_shape(tf.cast(image, tf.uint8), weak.shape)

  def _weak_view(self, data: dict):
    """(image, valid, image_info, extras) of the weak view."""
    image = data['image']
    extras = {}
    if self._groundtruth == 'boxes':
      image, boxes, info = self._weak.augment_detection(
          image, data['groundtruth_boxes'], self._output_size,
          self._padded_size)
      classes = tf.cast(data['groundtruth_classes'], tf.int32)
      n = tf.shape(classes)[0]
      boxes = boxes[:n]  # Model Garden's dummy row for zero boxes goes.
      extras = {
          'groundtruth_boxes': preprocess_ops.clip_or_pad_to_fixed_size(
              boxes, self._max_num_instances, 0),
          'groundtruth_classes': preprocess_ops.clip_or_pad_to_fixed_size(
              classes, self._max_num_instances, 0)}
      # The image region: the same geometry on an all-valid mask.
      valid = _valid_region(info, self._padded_size)
      return image, valid, info, extras
    mask = data['label'] if self._groundtruth == 'masks' else tf.zeros_like(
        image[..., :1])
    image, mask, info = self._weak.augment_segmentation(
        image, mask, self._output_size, self._padded_size)
    if self._groundtruth == 'masks':
      extras['groundtruth_masks'] = mask
    return image, _valid_region(info, self._padded_size), info, extras

  def __call__(self, data: dict) -> Dict[str, tf.Tensor]:
    """Decoded dict -> the views dict (see the module docstring)."""
    weak, valid, info, extras = self._weak_view(data)
    return {'weak': weak, 'strong': self.strong_view(weak),
            'image_info': info, 'valid': valid, **extras}


def _valid_region(image_info: tf.Tensor, padded_size: Sequence[int]
                  ) -> tf.Tensor:
  """bool [H, W, 1]: the pixels the (scaled, cropped) image covers.

  Model Garden's `resize_and_crop_image` puts the scaled image at the
  top-left: it covers min(round(original * scale) - offset, output size)
  pixels (row 1 of the info holds the output size).
  """
  covered = tf.minimum(tf.round(image_info[0] * image_info[2]) -
                       image_info[3], image_info[1])
  rows = tf.range(padded_size[0], dtype=tf.float32)[:, None] < covered[0]
  cols = tf.range(padded_size[1], dtype=tf.float32)[None, :] < covered[1]
  return (rows & cols)[..., None]
