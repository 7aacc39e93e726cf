"""Fast pseudo-label record writing: the input's image keys + the labels.

`schema.detection_example` / `schema.segmentation_example` go through Model
Garden's example builder, which re-reads the header of every encoded image
to find its format and size. Pseudo-labeling already holds the input record,
so here the output record is the input's image features copied as protos
(`IMAGE_KEYS`: encoded bytes, format, size, channels, source id) plus the
pseudo-label features, added by Model Garden's `TfExampleBuilder` (boxes,
labels and per-box `image/object/bbox/confidence`) under the schema's keys. Labels of the input (ground
truth boxes, masks...) are NOT copied. The records decode exactly like the
schema writers' (tests/pseudo_label/test_records.py round-trips both through
`st_tf.data.decoders`).

Conventions: boxes normalized ``[ymin, xmin, ymax, xmax]`` in [0, 1]; class
ids >= 1; area in original-image pixels; masks uint8 ``[H, W]`` (255 =
ignore) or PNG bytes.
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np
import tensorflow as tf
from official.vision.data import tf_example_builder
from official.vision.data import tf_example_feature_key as mg_keys

from st_tf.data import schema

IMAGE_CHANNELS = mg_keys.EncodedImageFeatureKey().num_channels
# Image keys copied from the input record (schema.py's, plus channels).
IMAGE_KEYS = (schema.IMAGE_ENCODED, schema.IMAGE_FORMAT, schema.IMAGE_HEIGHT,
              schema.IMAGE_WIDTH, IMAGE_CHANNELS, schema.IMAGE_SOURCE_ID)
_MAGIC = ((b'\x89PNG', b'PNG'), (b'\xff\xd8', b'JPEG'), (b'GIF8', b'GIF'),
          (b'BM', b'BMP'))


def _image_format(encoded: bytes) -> bytes:
  for magic, name in _MAGIC:
    if encoded.startswith(magic):
      return name
  return b''


def _to_bytes(value) -> bytes:
  return value.encode() if isinstance(value, str) else bytes(value)


Record = Union[bytes, tf.train.Example]


def parse(record: Record) -> tf.train.Example:
  """The input record as a tf.train.Example (parsed when serialized)."""
  if isinstance(record, tf.train.Example):
    return record
  return tf.train.Example.FromString(record)


def _image_part(record: Record, source_id: bytes, height: int, width: int
                ) -> tf.train.Example:
  """A new Example holding the input record's image features.

  Missing keys are filled: source id (the decoder's), height / width (of
  the decoded image), channels 3, format from the encoded bytes.
  """
  src = parse(record).features.feature
  if not src[schema.IMAGE_ENCODED].bytes_list.value:
    raise ValueError(f'input record {source_id!r} has no '
                     f'{schema.IMAGE_ENCODED}')
  out = tf.train.Example()
  dst = out.features.feature
  for key in IMAGE_KEYS:
    if key in src:
      dst[key].CopyFrom(src[key])
  if not dst[schema.IMAGE_SOURCE_ID].bytes_list.value:
    dst[schema.IMAGE_SOURCE_ID].bytes_list.value.append(_to_bytes(source_id))
  for key, value in ((schema.IMAGE_HEIGHT, height),
                     (schema.IMAGE_WIDTH, width), (IMAGE_CHANNELS, 3)):
    if not dst[key].int64_list.value:
      dst[key].int64_list.value.append(int(value))
  if not dst[schema.IMAGE_FORMAT].bytes_list.value:
    dst[schema.IMAGE_FORMAT].bytes_list.value.append(_image_format(
        dst[schema.IMAGE_ENCODED].bytes_list.value[0]))
  return out


def _teacher_bytes(teacher_id) -> bytes:
  if not teacher_id:
    raise ValueError('teacher_id must be a non-empty string for pseudo labels')
  return _to_bytes(teacher_id)


def pseudo_detection_record(record: Record, boxes: np.ndarray,
                            classes: np.ndarray, scores: np.ndarray,
                            area: np.ndarray, teacher_id: str, *,
                            source_id: bytes = b'', height: int = 0,
                            width: int = 0,
                            is_crowd: Optional[np.ndarray] = None) -> bytes:
  """Serialized pseudo detection record built from the input record.

  Args:
    record: the input tf.Example (any of our schemas), serialized or parsed.
    boxes: float [N, 4] normalized yxyx boxes.
    classes: int [N] class ids >= 1.
    scores: float [N] teacher scores in [0, 1].
    area: float [N] box areas in original-image pixels.
    teacher_id: non-empty provenance id.
    source_id, height, width: used only when the input record lacks them.
    is_crowd: optional int [N]: 1 marks the ignore band's boxes (see
      `detection.BoxSelection.band_low`); default all 0.

  Returns:
    The serialized tf.Example (detection schema + score + teacher id).
  """
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  n = len(boxes)
  if not len(classes) == len(scores) == len(area) == n:
    raise ValueError(f'{n} boxes but {len(classes)} classes, {len(scores)} '
                     f'scores, {len(area)} areas')
  teacher = _teacher_bytes(teacher_id)
  crowd = [0] * n if is_crowd is None else np.asarray(
      is_crowd, np.int64).reshape(-1).tolist()
  if len(crowd) != n:
    raise ValueError(f'{n} boxes but {len(crowd)} is_crowd flags')
  out = _image_part(record, source_id, height, width)
  builder = tf_example_builder.TfExampleBuilder().set(out)
  builder.add_boxes_feature(
      xmins=boxes[:, 1].tolist(), xmaxs=boxes[:, 3].tolist(),
      ymins=boxes[:, 0].tolist(), ymaxs=boxes[:, 2].tolist(),
      labels=np.asarray(classes, np.int64).tolist(),
      confidences=np.asarray(scores, np.float32).tolist())
  builder.add_ints_feature(schema.IS_CROWD, crowd)
  builder.add_floats_feature(schema.AREA,
                             np.asarray(area, np.float32).tolist())
  builder.add_bytes_feature(schema.TEACHER_ID, teacher)
  return builder.serialized_example


def pseudo_segmentation_record(record: Record, mask: Optional[np.ndarray],
                               teacher_id: str, *, source_id: bytes = b'',
                               height: int = 0, width: int = 0,
                               mask_png: Optional[bytes] = None) -> bytes:
  """Serialized pseudo segmentation record built from the input record.

  Args:
    record: the input tf.Example, serialized or parsed.
    mask: uint8 [H, W] pseudo class map (255 = ignore); unused when
      `mask_png` (its PNG bytes) is given.
    teacher_id: non-empty provenance id.
    source_id, height, width: used only when the input record lacks them.
    mask_png: the already-encoded mask.
  """
  teacher = _teacher_bytes(teacher_id)
  out = _image_part(record, source_id, height, width)
  dst = out.features.feature
  if mask_png is None:
    mask_png = schema.encode_image(np.asarray(mask, np.uint8), 'png')
  dst[schema.SEGMENTATION_MASK].bytes_list.value.append(mask_png)
  dst[schema.SEGMENTATION_MASK_FORMAT].bytes_list.value.append(b'PNG')
  dst[schema.TEACHER_ID].bytes_list.value.append(teacher)
  return out.SerializeToString()
