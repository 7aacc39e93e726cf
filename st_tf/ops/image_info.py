"""The inverse of Model Garden's `image_info` (one place for it).

Model Garden's `preprocess_ops.resize_and_crop_image` returns `image_info`
float [B, 4, 2] = ``[[orig h, orig w], [desired h, w], [scale y, x],
[offset y, x]]``; a pixel box of the resized image maps back to the original
image by ``(box + offset) / scale``.
"""
from __future__ import annotations

import tensorflow as tf


def boxes_to_original(boxes: tf.Tensor, image_info: tf.Tensor,
                      clip: bool = True) -> tf.Tensor:
  """Pixel yxyx boxes of the resized image -> pixels of the original image.

  Args:
    boxes: float [B, K, 4] pixel yxyx in the resized (model input) frame.
    image_info: float [B, 4, 2] Model Garden image info of those images.
    clip: clip to ``[0, orig h] x [0, orig w]``.

  Returns:
    float32 [B, K, 4] pixel yxyx boxes in the original image.
  """
  info = tf.cast(image_info, tf.float32)
  scale = tf.tile(info[:, 2:3, :], [1, 1, 2])
  offset = tf.tile(info[:, 3:4, :], [1, 1, 2])
  original = (tf.cast(boxes, tf.float32) + offset) / scale
  if clip:
    original = tf.clip_by_value(original, 0.0,
                                tf.tile(info[:, 0:1, :], [1, 1, 2]))
  return original
