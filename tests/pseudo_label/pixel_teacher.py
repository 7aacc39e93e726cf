"""A per-pixel segmentation teacher and odd-shaped unlabeled records (tests).

`PixelTeacher` labels each pixel from its own colour only (no receptive
field), so its prediction on an image is exact whatever padding surrounds
it: a pseudo mask can be compared pixel for pixel with `predict(image)`.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import tensorflow as tf

from st_tf.data import schema
from st_tf.pseudo_label import runner
from st_tf.pseudo_label import teacher as teacher_lib

NUM_CLASSES = 4


def predict(images: tf.Tensor) -> tf.Tensor:
  """uint8 [B, H, W, 3] -> [B, H, W, 2] (confidence, class) per pixel.

  class = red // 64 (0..3); confidence = 0.5 + green / 510 (0.5..1.0).
  """
  images = tf.cast(images, tf.float32)
  classes = tf.floor(images[..., 0] / 64.0)
  confidence = 0.5 + images[..., 1] / 510.0
  return tf.stack([confidence, classes], axis=-1)


class PixelTeacher(teacher_lib.Teacher):
  """Segmentation teacher of fixed input size computing `predict`."""

  task = 'segmentation'
  supports_segmentation_flip = False

  def __init__(self, input_size: Tuple[int, int]):
    self.input_size = tuple(int(s) for s in input_size)
    self.teacher_id = f'pixel-teacher:{self.input_size}'
    self.num_classes = NUM_CLASSES

  def forward(self, images):
    return {'maps': predict(images)}

  def detections(self, images, generator):
    raise NotImplementedError

  def segment(self, images, flip):
    del flip
    return predict(images)


def random_image(height: int, width: int, channels: int = 3,
                 seed: int = 0) -> np.ndarray:
  """uint8 [H, W, channels] noise (channels 1: [H, W] grayscale)."""
  rng = np.random.default_rng(seed)
  shape = (height, width) if channels == 1 else (height, width, channels)
  return rng.integers(0, 256, shape, dtype=np.uint8)


def write_records(path: str, images: Sequence[np.ndarray],
                  prefix: str = 'img') -> list:
  """Writes unlabeled PNG records of `images`; returns their source ids."""
  ids = [f'{prefix}-{i}' for i in range(len(images))]
  with tf.io.TFRecordWriter(path) as w:
    for source_id, image in zip(ids, images):
      w.write(schema.unlabeled_example(image, source_id).SerializeToString())
  return ids


def label(out: str, pattern, **kwargs) -> dict:
  """`runner.pseudo_label` with a 32 px PixelTeacher, quality off."""
  return runner.pseudo_label(
      output_dir=out, input_pattern=pattern,
      teacher=PixelTeacher((32, 32)), num_classes=NUM_CLASSES,
      batch_size=2, gallery_size=0, quality=False, **kwargs)
