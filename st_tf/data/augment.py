"""Augmentation policies S1..S4 of the paper (plus `eval`), by name.

A policy is an `AugmentPolicy`: an optional Model Garden image augmenter
(`official.vision.ops.augment` AutoAugment / RandAugment), an optional random
horizontal flip and a scale-jitter range for Model Garden's
`preprocess_ops.resize_and_crop_image` (random scale of the output size, then
a random crop of the output size, then zero padding).

Policies (paper, Sec. 3.1; defaults, all overridable in gin):

* ``S1``: FlipCrop, flip + scale jitter [0.8, 1.2].
* ``S2``: AutoAugment ``detection_v0`` + FlipCrop [0.8, 1.2].
* ``S3``: AutoAugment ``detection_v0`` + flip + large jitter [0.5, 2.0].
* ``S4``: RandAugment (2 layers, magnitude 10) + flip + large jitter
  [0.5, 2.0].
* ``eval``: no augmentation; resize (aspect ratio kept) and pad only.

Detection: the augmenter runs `distort_with_boxes`, so the geometric ops
(translate, shear, rotate, bbox-only ops) move the boxes; the flip and the
scale-jitter crop are applied jointly to image and boxes.

Segmentation: Model Garden's AutoAugment / RandAugment can transform boxes
but not a dense mask, so for segmentation only the **colour** (pixel-value)
ops of a policy touch the image -- RandAugment without its geometric ops
(`exclude_ops`), AutoAugment with every geometric op of a sub-policy replaced
by a no-op (probability 0, so sub-policies keep their shape and selection
probability). The geometric part of the policy (flip + scale jitter + crop)
is applied jointly to the image and the mask. Cutout is a pixel op (it paints
a grey square) and is kept; the mask under it keeps its labels.

Select a policy by name (``get_policy('S4')``) or through gin
(``DetectionParser.policy = @S4()``; the factories are gin configurables
named ``S1`` .. ``S4`` and ``eval_policy``).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence, Tuple, Union

import gin
import tensorflow as tf
from official.vision.ops import augment
from official.vision.ops import box_ops
from official.vision.ops import preprocess_ops

from st_tf import registry

IGNORE_LABEL = 255

# Geometric ops of Model Garden's augment (image-only and box-aware names).
GEOMETRIC_OPS = frozenset({
    'Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY',
    'Rotate_BBox', 'ShearX_BBox', 'ShearY_BBox', 'TranslateX_BBox',
    'TranslateY_BBox', 'TranslateY_Only_BBoxes',
})
_NO_OP = ('Brightness', 0.0, 0)  # never applied (probability 0)


def _to_uint8(image: tf.Tensor) -> tf.Tensor:
  """Rounds a float image in [0, 255] to uint8."""
  if image.dtype == tf.uint8:
    return image
  return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


@dataclasses.dataclass(frozen=True)
class AugmentPolicy:
  """One augmentation policy (see the module docstring).

  Attributes:
    name: policy name, e.g. 'S4'.
    box_augmenter: Model Garden augmenter used for detection
      (`distort_with_boxes`), or None.
    color_augmenter: colour-only augmenter used for segmentation
      (`distort`), or None.
    hflip: random horizontal flip with probability 0.5.
    scale_min: minimum random scale of the output size (scale jitter).
    scale_max: maximum random scale of the output size.
  """
  name: str
  box_augmenter: Optional[augment.ImageAugment] = None
  color_augmenter: Optional[augment.ImageAugment] = None
  hflip: bool = False
  scale_min: float = 1.0
  scale_max: float = 1.0

  def _resize_and_crop(self, image: tf.Tensor, output_size: Sequence[int],
                       padded_size: Sequence[int]):
    """Scale jitter + random crop + zero pad; returns (uint8 image, info)."""
    image, image_info = preprocess_ops.resize_and_crop_image(
        image, list(output_size), padded_size=list(padded_size),
        aug_scale_min=self.scale_min, aug_scale_max=self.scale_max,
        seed=None)
    image = tf.ensure_shape(_to_uint8(image), list(padded_size) + [3])
    return image, image_info

  def augment_detection(
      self, image: tf.Tensor, boxes: tf.Tensor, output_size: Sequence[int],
      padded_size: Optional[Sequence[int]] = None
  ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Augments an image and its boxes.

    Args:
      image: uint8 [H, W, 3].
      boxes: float32 [N, 4] normalized [ymin, xmin, ymax, xmax].
      output_size: [height, width] of the (cropped) output image.
      padded_size: [height, width] after zero padding; default output_size.

    Returns:
      image: uint8 [padded_h, padded_w, 3].
      boxes: float32 [M, 4] **pixel** yxyx in the output image, clipped to
        the crop. Boxes cropped away (and Model Garden's dummy box for N = 0)
        have zero area; the caller drops them. M = N except for that dummy.
      image_info: float32 [4, 2] Model Garden image info: [[orig_h, orig_w],
        [out_h, out_w], [y_scale, x_scale], [y_offset, x_offset]].
    """
    padded_size = output_size if padded_size is None else padded_size
    boxes = tf.cast(boxes, tf.float32)
    if self.box_augmenter is not None:
      image, boxes = self.box_augmenter.distort_with_boxes(image, boxes)
      # Model Garden may return [0, 0] (or a dummy box) for zero boxes.
      boxes = tf.reshape(boxes, [-1, 4])
    if self.hflip:
      image, boxes, _ = preprocess_ops.random_horizontal_flip(
          image, normalized_boxes=boxes, seed=None)
    boxes = box_ops.denormalize_boxes(boxes, tf.shape(image)[0:2])
    image, image_info = self._resize_and_crop(image, output_size, padded_size)
    boxes = preprocess_ops.resize_and_crop_boxes(
        boxes, image_info[2, :], image_info[1, :], image_info[3, :])
    return image, boxes, image_info

  def augment_segmentation(
      self, image: tf.Tensor, mask: tf.Tensor, output_size: Sequence[int],
      padded_size: Optional[Sequence[int]] = None,
      ignore_label: int = IGNORE_LABEL
  ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Augments an image and its class mask (colour ops on the image only).

    Args:
      image: uint8 [H, W, 3].
      mask: integer [H, W, 1] class map, `ignore_label` = ignore.
      output_size: [height, width] of the (cropped) output image.
      padded_size: [height, width] after padding; default output_size.
      ignore_label: label of ignored pixels; also given to padding.

    Returns:
      image: uint8 [padded_h, padded_w, 3].
      mask: int32 [padded_h, padded_w, 1], nearest-neighbour resized,
        `ignore_label` outside the image.
      image_info: float32 [4, 2] as in `augment_detection`.
    """
    padded_size = output_size if padded_size is None else padded_size
    mask = tf.cast(mask, tf.int32)
    if self.color_augmenter is not None:
      image = self.color_augmenter.distort(image)
    if self.hflip:
      image, _, mask = preprocess_ops.random_horizontal_flip(
          image, masks=mask, seed=None)
    image, image_info = self._resize_and_crop(image, output_size, padded_size)
    # Model Garden's trick: shift labels by +1 so that padding (0) -> -1.
    mask = preprocess_ops.resize_and_crop_masks(
        (mask + 1)[None], image_info[2, :], list(output_size),
        image_info[3, :])[0]
    mask = tf.image.pad_to_bounding_box(mask, 0, 0, padded_size[0],
                                        padded_size[1]) - 1
    mask = tf.where(mask < 0, ignore_label, mask)
    mask = tf.ensure_shape(mask, list(padded_size) + [1])
    return image, mask, image_info


def color_only_autoaugment_policy(policy: Sequence[Sequence[tuple]]) -> list:
  """AutoAugment sub-policies with geometric ops replaced by a no-op."""
  return [[_NO_OP if op[0] in GEOMETRIC_OPS else tuple(op) for op in sub]
          for sub in policy]


def _autoaugment(name: str, cutout_const: float, translate_const: float):
  """(box-aware, colour-only) AutoAugment pair for policy `name`."""
  box_aug = augment.AutoAugment(name, cutout_const=cutout_const,
                                translate_const=translate_const)
  color_aug = augment.AutoAugment(
      name, policies=color_only_autoaugment_policy(box_aug.policies),
      cutout_const=cutout_const, translate_const=translate_const)
  return box_aug, color_aug


@gin.configurable('S1')
def flip_crop(scale_min: float = 0.8, scale_max: float = 1.2) -> AugmentPolicy:
  """S1: random flip + scale jitter crop."""
  return AugmentPolicy('S1', hflip=True, scale_min=scale_min,
                       scale_max=scale_max)


@gin.configurable('S2')
def autoaugment_flip_crop(scale_min: float = 0.8, scale_max: float = 1.2,
                          augmentation_name: str = 'detection_v0',
                          cutout_const: float = 100.,
                          translate_const: float = 250.) -> AugmentPolicy:
  """S2: AutoAugment (`augmentation_name`) + flip + scale jitter crop.

  `cutout_const` / `translate_const` are Model Garden's (pixels at magnitude
  10), tuned for ~640 px images; scale them down for small images.
  """
  box_aug, color_aug = _autoaugment(augmentation_name, cutout_const,
                                    translate_const)
  return AugmentPolicy('S2', box_aug, color_aug, hflip=True,
                       scale_min=scale_min, scale_max=scale_max)


@gin.configurable('S3')
def autoaugment_large_jitter(scale_min: float = 0.5, scale_max: float = 2.0,
                             augmentation_name: str = 'detection_v0',
                             cutout_const: float = 100.,
                             translate_const: float = 250.) -> AugmentPolicy:
  """S3: AutoAugment + flip + large scale jitter (see S2 for the consts)."""
  box_aug, color_aug = _autoaugment(augmentation_name, cutout_const,
                                    translate_const)
  return AugmentPolicy('S3', box_aug, color_aug, hflip=True,
                       scale_min=scale_min, scale_max=scale_max)


@gin.configurable('S4')
def randaugment_large_jitter(scale_min: float = 0.5, scale_max: float = 2.0,
                             num_layers: int = 2, magnitude: float = 10.,
                             cutout_const: float = 40.,
                             translate_const: float = 100.) -> AugmentPolicy:
  """S4: RandAugment (`num_layers`, `magnitude`) + flip + large jitter."""
  box_aug = augment.RandAugment.build_for_detection(
      num_layers=num_layers, magnitude=magnitude, cutout_const=cutout_const,
      translate_const=translate_const)
  color_aug = augment.RandAugment(
      num_layers=num_layers, magnitude=magnitude, cutout_const=cutout_const,
      translate_const=translate_const, exclude_ops=sorted(GEOMETRIC_OPS))
  return AugmentPolicy('S4', box_aug, color_aug, hflip=True,
                       scale_min=scale_min, scale_max=scale_max)


@gin.configurable('eval_policy')
def eval_policy() -> AugmentPolicy:
  """No augmentation: resize (keeping the aspect ratio) and pad."""
  return AugmentPolicy('eval')


POLICIES: registry.Registry[Callable[..., AugmentPolicy]] = registry.Registry(
    'augmentation policy', {
        'S1': flip_crop,
        'S2': autoaugment_flip_crop,
        'S3': autoaugment_large_jitter,
        'S4': randaugment_large_jitter,
        'eval': eval_policy,
    })


def get_policy(policy: Union[str, AugmentPolicy],
               binding: Optional[str] = None) -> AugmentPolicy:
  """Returns `policy` itself, or the registered policy of that name.

  Args:
    policy: an `AugmentPolicy` or a name in `POLICIES`.
    binding: the gin binding that chose `policy`, for the error.

  Raises:
    ValueError: unknown name (lists the known ones).
  """
  if isinstance(policy, AugmentPolicy):
    return policy
  return POLICIES.get(policy, binding=binding)()
