"""Segmentation pseudo labels: per-pixel argmax, low confidence -> ignore.

The paper keeps a pixel's argmax class when the teacher's top probability is
>= 0.5 and gives the other pixels the ignore label (255). Flip test-time
augmentation averages the probabilities of an image and of its flip.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from st_tf.data import schema


def probabilities(logits: tf.Tensor, input_size: Sequence[int]) -> tf.Tensor:
  """Logits [B, h, w, C] -> softmax probabilities [B, H, W, C] (bilinear)."""
  logits = tf.image.resize(tf.cast(logits, tf.float32),
                           [int(s) for s in input_size], method='bilinear')
  return tf.nn.softmax(logits, axis=-1)


def average_flipped(probs: tf.Tensor, flipped_probs: tf.Tensor) -> tf.Tensor:
  """Averages probabilities [B, H, W, C] of images and of their h-flips."""
  return 0.5 * (probs + tf.image.flip_left_right(flipped_probs))


def confidence_and_class(probs: tf.Tensor) -> tf.Tensor:
  """[B, H, W, C] probabilities -> [B, H, W, 2] (top prob, argmax class)."""
  return tf.stack([tf.reduce_max(probs, -1),
                   tf.cast(tf.argmax(probs, -1), tf.float32)], axis=-1)


def scaled_size(image_info: np.ndarray) -> Tuple[int, int]:
  """(h, w) in pixels that the image covers in the padded input frame.

  Model Garden's `resize_and_crop_image` puts the DESIRED (padded) size in
  row 1 of `image_info`, not the scaled size: the image covers
  `round(original * scale)`, like Model Garden's own
  `segmentation_metrics` (rows 0 and 2).
  """
  size = np.round(np.asarray(image_info[0], np.float64) *
                  np.asarray(image_info[2], np.float64)).astype(int)
  return int(size[0]), int(size[1])


def to_original(values: np.ndarray, image_info: np.ndarray) -> np.ndarray:
  """Maps a map of the padded input frame back to the original image.

  Args:
    values: [H, W, K] map in the model input frame (resized + padded by
      `preprocess_ops.resize_and_crop_image`).
    image_info: [4, 2] Model Garden image info
      ([[h, w], [desired_h, desired_w], [sy, sx], [offset_y, offset_x]]);
      the image covers `values[:round(h * sy), :round(w * sx)]`.

  Returns:
    [h, w, K]; channel 0 (confidence) bilinear, others nearest neighbour.
  """
  h, w = (int(v) for v in np.round(image_info[0]))
  sh, sw = scaled_size(image_info)
  crop = values[:sh, :sw]
  if (sh, sw) == (h, w):
    return crop
  conf = tf.image.resize(crop[..., :1], [h, w], method='bilinear').numpy()
  rest = tf.image.resize(crop[..., 1:], [h, w], method='nearest').numpy()
  return np.concatenate([conf, rest], axis=-1)


def label_map(confidence: np.ndarray, classes: np.ndarray,
              pixel_threshold: float,
              class_thresholds: Optional[Mapping[int, float]] = None
              ) -> np.ndarray:
  """Pseudo label map: class where confidence >= threshold, else 255.

  Args:
    confidence: float [H, W] top class probability.
    classes: int [H, W] argmax class ids.
    pixel_threshold: in [0, 1].
    class_thresholds: optional {class id: threshold} for pixels whose
      argmax is that class (e.g. a higher one for the background, so that
      rare classes are not under-kept); `pixel_threshold` elsewhere.

  Returns:
    uint8 [H, W] class map, `schema.IGNORE_LABEL` (255) = ignore.
  """
  classes = np.asarray(classes)
  out = classes.astype(np.uint8)
  threshold = np.full(classes.shape, pixel_threshold, np.float32)
  for cls, value in (class_thresholds or {}).items():
    threshold[classes == int(cls)] = float(value)
  out[np.asarray(confidence) < threshold] = schema.IGNORE_LABEL
  return out
