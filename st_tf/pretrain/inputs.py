"""Classification input: Model Garden's classification parser, uint8 output.

`ClassificationParser` is Model Garden's `classification_input.Parser`
(decode, random crop + optional horizontal flip in training, resize) with
our image contract: images stay **uint8** `[H, W, 3]` because the model
normalizes them itself (as `SelfTrainingModel` does). Model Garden's parser
ends with a mean/std normalization; it is undone exactly (float32) and the
resized pixels are rounded, as our detection/segmentation parsers round.

Records are decoded with Model Garden's `classification_input.Decoder`
(`image/encoded`, `image/class/label`).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import gin
import tensorflow as tf
from official.vision.dataloaders import classification_input
from official.vision.ops import preprocess_ops

MODES = ('train', 'eval')


def _denormalize_to_uint8(image: tf.Tensor) -> tf.Tensor:
  """Model Garden-normalized float [H, W, 3] -> rounded uint8 [H, W, 3]."""
  image = (image * tf.constant(preprocess_ops.STDDEV_RGB, tf.float32) +
           tf.constant(preprocess_ops.MEAN_RGB, tf.float32))
  return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


@gin.configurable
class ClassificationParser(classification_input.Parser):
  """Decoded classification dict -> (uint8 image [H, W, 3], int32 label []).

  'train' mode: Model Garden's random crop (area fraction in
  `crop_area_range`, aspect 3/4..4/3; when the crop would be the whole
  image, a 0.875 centre crop) and optional horizontal flip, then a resize to
  `output_size`. 'eval' mode: a resize only (`center_crop_fraction` 1.0, so
  nothing is cut away: DigitScenes crops already centre their digit).
  """

  def __init__(self,
               output_size: Sequence[int] = (64, 64),
               aug_crop: bool = True,
               crop_area_range: Tuple[float, float] = (0.5, 1.0),
               aug_rand_hflip: bool = False,
               mode: str = 'train'):
    """Initializes the parser.

    Args:
      output_size: [height, width] of the output images in pixels.
      aug_crop: random crop in 'train' mode.
      crop_area_range: (min, max) fraction of the image area a random crop
        keeps.
      aug_rand_hflip: random horizontal flip in 'train' mode (off by
        default: a mirrored digit is not the same glyph).
      mode: 'train' or 'eval'.
    """
    if mode not in MODES:
      raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
    if not 0.0 < crop_area_range[0] <= crop_area_range[1] <= 1.0:
      raise ValueError('crop_area_range must satisfy 0 < min <= max <= 1, got '
                       f'{crop_area_range}')
    super().__init__(
        output_size=[int(s) for s in output_size],
        num_classes=0,  # only used for multi-label
        decode_jpeg_only=False,  # JPEG and PNG records
        aug_rand_hflip=aug_rand_hflip,
        aug_crop=aug_crop,
        crop_area_range=tuple(crop_area_range),
        center_crop_fraction=1.0,
        dtype='float32')  # exact inverse of the normalization
    self._mode = mode

  @property
  def mode(self) -> str:
    return self._mode

  def _parse_train_image(self, decoded_tensors) -> tf.Tensor:
    """uint8 [H, W, 3] augmented image."""
    return _denormalize_to_uint8(super()._parse_train_image(decoded_tensors))

  def _parse_eval_image(self, decoded_tensors) -> tf.Tensor:
    """uint8 [H, W, 3] resized image."""
    return _denormalize_to_uint8(super()._parse_eval_image(decoded_tensors))

  def __call__(self, data: dict) -> Tuple[tf.Tensor, tf.Tensor]:
    """Parses one decoded example (eagerly or inside `Dataset.map`).

    Returns:
      image: uint8 [H, W, 3] (`output_size`).
      label: int32 scalar class id.
    """
    return self.parse_fn(self._mode == 'train')(data)


def decoder() -> classification_input.Decoder:
  """Model Garden's decoder of `image/encoded` + `image/class/label`."""
  return classification_input.Decoder()
