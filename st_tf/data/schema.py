"""The one tf.Example schema shared by every reader and writer in st_tf.

Keys are Model Garden's (`official.vision.data.tf_example_feature_key`), so
records written by `official/vision/data/create_coco_tf_record.py` decode with
no conversion. Pseudo labels use the human schema plus:

* ``image/object/bbox/confidence`` (Model Garden's per-box score key,
  written by its `TfExampleBuilder.add_boxes_feature(confidences=...)`):
  float per box, the teacher's score in [0, 1]. Records written before with
  ``image/object/score`` (`LEGACY_SCORE`) still decode;
* ``pseudo/teacher_id``: bytes, which teacher wrote the record (provenance).
  A record with a non-empty teacher id is a pseudo-labeled record.

Conventions (all writers accept and all decoders return these):

* images: uint8 ``[H, W, 3]`` RGB, stored PNG- or JPEG-encoded.
* boxes: float ``[N, 4]``, **normalized** ``[ymin, xmin, ymax, xmax]`` in [0, 1].
* classes: int ``[N]``; detection class ids start at 1 (0 is background).
* semantic masks: uint8 ``[H, W]`` class map, PNG-encoded, ``IGNORE_LABEL``
  (255) = ignore.

Dataset-level facts (class names, class count) are not in the records but in
a sidecar ``<prefix>.metadata.json`` beside the shards (`METADATA_SUFFIX`;
its fields and readers: `st_tf/data/metadata.py`).
"""
from __future__ import annotations

import io
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from official.vision.data import tf_example_builder
from official.vision.data import tf_example_feature_key as mg_keys

IGNORE_LABEL = 255
# Sidecar of the shards `<prefix>-i-of-n.tfrecord`: `<prefix>` + this.
METADATA_SUFFIX = '.metadata.json'

_IMAGE = mg_keys.EncodedImageFeatureKey()
_BOX = mg_keys.BoxFeatureKey()
_INSTANCE_MASK = mg_keys.EncodedInstanceMaskFeatureKey()
_SEMANTIC = mg_keys.EncodedSemanticMaskFeatureKey()

# Image keys (Model Garden's).
IMAGE_ENCODED = _IMAGE.encoded            # 'image/encoded'
IMAGE_FORMAT = _IMAGE.format              # 'image/format'
IMAGE_HEIGHT = _IMAGE.height              # 'image/height'
IMAGE_WIDTH = _IMAGE.width                # 'image/width'
IMAGE_SOURCE_ID = _IMAGE.source_id        # 'image/source_id'
# Detection keys (Model Garden's).
BOX_YMIN = _BOX.ymin                      # 'image/object/bbox/ymin'
BOX_XMIN = _BOX.xmin
BOX_YMAX = _BOX.ymax
BOX_XMAX = _BOX.xmax
CLASS_LABEL = _BOX.label                  # 'image/object/class/label'
AREA = _INSTANCE_MASK.area                # 'image/object/area'
IS_CROWD = 'image/object/is_crowd'
# Semantic segmentation key (Model Garden's).
SEGMENTATION_MASK = _SEMANTIC.mask        # 'image/segmentation/class/encoded'
SEGMENTATION_MASK_FORMAT = _SEMANTIC.mask_format
# Pseudo-label extras: Model Garden's per-box confidence, and our teacher id.
SCORE = _BOX.confidence                   # 'image/object/bbox/confidence'
LEGACY_SCORE = 'image/object/score'       # read only (records before issue 11)
TEACHER_ID = 'pseudo/teacher_id'


def image_features() -> dict:
  """Parse spec for the keys every record has."""
  return {
      IMAGE_ENCODED: tf.io.FixedLenFeature((), tf.string),
      IMAGE_HEIGHT: tf.io.FixedLenFeature((), tf.int64, -1),
      IMAGE_WIDTH: tf.io.FixedLenFeature((), tf.int64, -1),
      IMAGE_SOURCE_ID: tf.io.FixedLenFeature((), tf.string, ''),
      TEACHER_ID: tf.io.FixedLenFeature((), tf.string, ''),
  }


def segmentation_features() -> dict:
  """Parse spec for semantic segmentation records (human or pseudo)."""
  spec = image_features()
  spec[SEGMENTATION_MASK] = tf.io.FixedLenFeature((), tf.string, '')
  return spec


def encode_image(image: np.ndarray, image_format: str = 'png') -> bytes:
  """Encodes a uint8 ``[H, W, C]`` (or ``[H, W]``) array as PNG or JPEG bytes."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f'encode_image expects uint8, got {image.dtype}')
  if image.ndim == 2:
    image = image[..., None]
  if image_format.lower() == 'png':
    return tf.io.encode_png(image).numpy()
  if image_format.lower() in ('jpeg', 'jpg'):
    return tf.io.encode_jpeg(image, quality=95).numpy()
  raise ValueError(f'unsupported image_format {image_format!r}')


def _builder_with_image(image, source_id: str, image_format: str,
                        teacher_id: Optional[str]):
  """Starts a Model Garden example builder holding the image and provenance."""
  if isinstance(image, (bytes, bytearray)):
    encoded = bytes(image)
    height = width = None
    fmt = None
  else:
    image = np.asarray(image)
    encoded = encode_image(image, image_format)
    height, width = int(image.shape[0]), int(image.shape[1])
    fmt = image_format.upper().replace('JPG', 'JPEG')
  builder = tf_example_builder.TfExampleBuilder()
  builder.add_encoded_image_feature(
      encoded, image_format=fmt, height=height, width=width,
      num_channels=3 if height else None,
      image_source_id=str(source_id).encode())
  if teacher_id is not None:
    if not teacher_id:
      raise ValueError('teacher_id must be a non-empty string for pseudo labels')
    builder.add_bytes_feature(TEACHER_ID, teacher_id.encode())
  return builder


def detection_example(image,
                      boxes: np.ndarray,
                      classes: Sequence[int],
                      source_id: str,
                      *,
                      is_crowd: Optional[Sequence[int]] = None,
                      area: Optional[Sequence[float]] = None,
                      scores: Optional[Sequence[float]] = None,
                      teacher_id: Optional[str] = None,
                      image_format: str = 'png') -> tf.train.Example:
  """Builds a detection tf.Example (human, or pseudo when `teacher_id` is set).

  Args:
    image: uint8 ``[H, W, 3]`` array, or already-encoded image bytes.
    boxes: float ``[N, 4]`` normalized ``[ymin, xmin, ymax, xmax]``.
    classes: int ``[N]`` class ids (>= 1).
    source_id: unique image id (string).
    is_crowd: optional int ``[N]`` (0/1).
    area: optional float ``[N]`` box or mask area in pixels.
    scores: optional float ``[N]`` teacher scores; required for pseudo labels.
    teacher_id: provenance of pseudo labels; None for human labels.
    image_format: 'png' or 'jpeg' when `image` is an array.

  Returns:
    A tf.train.Example in Model Garden's detection schema.
  """
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  classes = [int(c) for c in classes]
  if len(classes) != len(boxes):
    raise ValueError(f'{len(boxes)} boxes but {len(classes)} classes')
  if teacher_id is not None and scores is None:
    raise ValueError('pseudo-label records need per-box scores')
  if scores is not None:
    scores = [float(s) for s in scores]
    if len(scores) != len(classes):
      raise ValueError(f'{len(classes)} boxes but {len(scores)} scores')
  builder = _builder_with_image(image, source_id, image_format, teacher_id)
  builder.add_boxes_feature(
      xmins=boxes[:, 1].tolist(), xmaxs=boxes[:, 3].tolist(),
      ymins=boxes[:, 0].tolist(), ymaxs=boxes[:, 2].tolist(), labels=classes,
      confidences=scores)
  builder.add_ints_feature(
      IS_CROWD, [0] * len(classes) if is_crowd is None else
      [int(c) for c in is_crowd])
  if area is not None:
    builder.add_floats_feature(AREA, [float(a) for a in area])
  return builder.example


def segmentation_example(image,
                         mask: np.ndarray,
                         source_id: str,
                         *,
                         teacher_id: Optional[str] = None,
                         image_format: str = 'png') -> tf.train.Example:
  """Builds a semantic segmentation tf.Example.

  Args:
    image: uint8 ``[H, W, 3]`` array, or encoded image bytes.
    mask: uint8 ``[H, W]`` class map (255 = ignore), or PNG bytes.
    source_id: unique image id.
    teacher_id: provenance of pseudo labels; None for human labels.
    image_format: 'png' or 'jpeg' when `image` is an array.
  """
  builder = _builder_with_image(image, source_id, image_format, teacher_id)
  if isinstance(mask, (bytes, bytearray)):
    encoded_mask = bytes(mask)
  else:
    encoded_mask = encode_image(np.asarray(mask, np.uint8), 'png')
  builder.add_bytes_feature(SEGMENTATION_MASK, encoded_mask)
  builder.add_bytes_feature(SEGMENTATION_MASK_FORMAT, b'PNG')
  return builder.example


def unlabeled_example(image, source_id: str, *,
                      image_format: str = 'png') -> tf.train.Example:
  """Builds an unlabeled-image tf.Example (image keys only)."""
  return _builder_with_image(image, source_id, image_format, None).example


def is_pseudo_example(example: tf.train.Example) -> bool:
  """True when the record carries a teacher id (i.e. holds pseudo labels)."""
  values = example.features.feature[TEACHER_ID].bytes_list.value
  return bool(values and values[0])


def image_bytes_to_array(data: bytes) -> np.ndarray:
  """Decodes PNG/JPEG bytes to a uint8 numpy array (host side helper)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  return np.asarray(Image.open(io.BytesIO(data)))
