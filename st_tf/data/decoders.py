"""Decoders for the four record kinds, with in-graph input validation.

* `DetectionDecoder`: Model Garden's `TfExampleDecoder` output plus
  ``groundtruth_scores`` and ``teacher_id`` (human and pseudo records).
* `SegmentationDecoder`: image + semantic label map.
* `UnlabeledDecoder`: image only; accepts any of our records.

Every ``decode`` takes either a serialized tf.Example (scalar string) or a
dict ``{'record': string, 'file': string}`` as produced by
`files.tfrecord_dataset_with_filename`, and returns a dict that also holds
``file`` (scalar string, '' when unknown). Decoding works eagerly and inside
`tf.data.Dataset.map`.

Validation (``validate=True``, the default) runs inside the graph:

* ``skip_invalid=False``: a bad record raises `tf.errors.InvalidArgumentError`
  whose message says what is wrong and names the record's source id and file.
* ``skip_invalid=True``: ``decode`` does not raise; filter the decoded
  dataset with ``decoder.is_valid`` (or ``decoder.filter_invalid(ds)``, usable
  as Model Garden's InputReader ``sample_fn``). Each skip is printed with its
  reason, source id, file and the running count; ``decoder.num_skipped`` holds
  the count.

Checks: image fails to decode, or disagrees with ``image/height|width``;
detection boxes outside [0, 1] (tolerance `BOX_TOLERANCE`), ymin > ymax or
xmin > xmax, class id < 1 (0 is background) or >= ``num_classes``, box /
class / score count mismatch, scores outside [0, 1]; segmentation label map
that fails to decode, differs in size from the image, or holds ids >=
``num_classes`` other than 255.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple, Union

import gin
import tensorflow as tf
from official.vision.dataloaders import decoder as mg_decoder
from official.vision.dataloaders import tf_example_decoder

from st_tf.data import schema

BOX_TOLERANCE = 1e-3

DecoderInput = Union[tf.Tensor, dict]
Problem = Tuple[tf.Tensor, Callable[[], tf.Tensor]]  # (is_bad, reason_fn)


def split_input(serialized: DecoderInput) -> Tuple[tf.Tensor, tf.Tensor]:
  """Returns (serialized record, file name or '') from a decoder input."""
  if isinstance(serialized, dict):
    return serialized['record'], tf.convert_to_tensor(serialized['file'])
  return serialized, tf.constant('')


def decode_image_or_empty(encoded: tf.Tensor, channels: int) -> tf.Tensor:
  """Decodes PNG/JPEG/GIF/BMP/WebP bytes; an undecodable image -> [0, 0, C].

  Returns:
    uint8 ``[H, W, channels]``; ``[0, 0, channels]`` if decoding fails.
  """
  image = tf.data.Dataset.from_tensors(encoded).map(
      lambda b: tf.io.decode_image(  # pylint: disable=g-long-lambda
          b, channels=channels, expand_animations=False)).ignore_errors()
  image = image.concatenate(tf.data.Dataset.from_tensors(
      tf.zeros([0, 0, channels], tf.uint8))).take(1).get_single_element()
  image.set_shape([None, None, channels])
  return image


def _image_problems(decoded: dict) -> List[Problem]:
  """Problems shared by all record kinds (image decode and size)."""
  shape = tf.shape(decoded['image'], out_type=tf.int64)
  failed = tf.equal(tf.size(decoded['image']), 0)
  mismatch = tf.logical_and(
      tf.logical_not(failed),
      tf.logical_or(tf.not_equal(decoded['height'], shape[0]),
                    tf.not_equal(decoded['width'], shape[1])))
  return [
      (failed, lambda: tf.constant(
          'image failed to decode (not a valid PNG/JPEG/GIF/BMP/WebP)')),
      (mismatch, lambda: tf.strings.format(
          'image/height, image/width ({}, {}) differ from the decoded image '
          'size {}', (decoded['height'], decoded['width'], shape[:2]))),
  ]


class _Validation:
  """Assert-or-filter machinery shared by the decoders."""

  _kind = 'record'

  def _init_validation(self, validate: bool, skip_invalid: bool):
    self._validate = validate
    self._skip_invalid = skip_invalid
    with tf.init_scope():
      self._skipped = tf.Variable(0, dtype=tf.int64, trainable=False,
                                  name='num_skipped_records')

  def _problems(self, decoded: dict) -> List[Problem]:
    raise NotImplementedError

  def _message(self, decoded: dict, reason: tf.Tensor) -> tf.Tensor:
    file = tf.where(tf.equal(decoded['file'], ''), '<unknown>',
                    decoded['file'])
    return tf.strings.join([
        f'Invalid {self._kind} record (source_id=', decoded['source_id'],
        ', file=', file, '): ', reason])

  def _maybe_assert(self, decoded: dict) -> dict:
    """With validate and not skip_invalid: raises on the first problem."""
    if not self._validate or self._skip_invalid:
      return decoded
    checks = []
    for bad, reason_fn in self._problems(decoded):
      message = tf.cond(bad, lambda r=reason_fn: self._message(decoded, r()),
                        lambda: tf.constant(''))
      checks.append(tf.debugging.Assert(tf.logical_not(bad), [message]))
      # Later checks may rely on earlier ones (e.g. image decoded).
    with tf.control_dependencies(checks):
      return {k: tf.identity(v) for k, v in decoded.items()}

  def is_valid(self, decoded: dict) -> tf.Tensor:
    """Predicate for `Dataset.filter`: False (logged, counted) for bad records.

    Args:
      decoded: the dict returned by ``decode``.

    Returns:
      A scalar tf.bool.
    """
    problems = self._problems(decoded)
    bad_any = tf.reduce_any(tf.stack([bad for bad, _ in problems]))

    def first_reason():
      branches = [(bad, r) for bad, r in problems]
      return tf.case(branches, default=lambda: tf.constant('unknown'),
                     exclusive=False)

    def skip():
      count = self._skipped.assign_add(1)
      with tf.control_dependencies([tf.print(
          'Skipping', self._message(decoded, first_reason()),
          '; skipped so far:', count)]):
        return tf.constant(False)

    return tf.cond(bad_any, skip, lambda: tf.constant(True))

  def filter_invalid(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Drops (and counts) invalid decoded examples; an InputReader sample_fn."""
    return dataset.filter(self.is_valid)

  @property
  def num_skipped(self) -> int:
    """How many records `is_valid` rejected so far."""
    return int(self._skipped.numpy())


@gin.configurable
class DetectionDecoder(_Validation, tf_example_decoder.TfExampleDecoder):
  """Decodes detection records (human or pseudo) in Model Garden's format."""

  _kind = 'detection'

  def __init__(self,
               num_classes: Optional[int] = None,
               validate: bool = True,
               include_mask: bool = False,
               skip_invalid: bool = False):
    """Initializes the decoder.

    Args:
      num_classes: class count including background (ids in [1, num_classes));
        None skips the upper-bound check.
      validate: check records in the graph (see the module doc).
      include_mask: also decode instance masks (Model Garden's behaviour).
      skip_invalid: do not raise; reject bad records in `is_valid` instead.
    """
    super().__init__(include_mask=include_mask)
    # A record without source id gets a hashed one instead of a parse error.
    self._keys_to_features[schema.IMAGE_SOURCE_ID] = tf.io.FixedLenFeature(
        (), tf.string, '')
    self._num_classes = num_classes
    self._init_validation(validate, skip_invalid)

  def _decode_image(self, parsed_tensors):
    if not self._validate:
      return super()._decode_image(parsed_tensors)
    return decode_image_or_empty(parsed_tensors[schema.IMAGE_ENCODED], 3)

  def decode(self, serialized: DecoderInput) -> dict:
    """Decodes one record.

    Args:
      serialized: scalar string, or ``{'record': string, 'file': string}``.

    Returns:
      Model Garden's dict (``image`` uint8 [H, W, 3], ``groundtruth_boxes``
      float32 [N, 4] normalized yxyx, ``groundtruth_classes`` int64 [N],
      ``groundtruth_is_crowd`` bool [N], ``groundtruth_area`` float32 [N]
      pixels, ``source_id``, ``height``, ``width``) plus
      ``groundtruth_scores`` float32 [N] (`schema.SCORE`, else the legacy
      `schema.LEGACY_SCORE`, else 1.0, i.e. human),
      ``teacher_id`` string ('' for human) and ``file`` string.
    """
    record, file = split_input(serialized)
    decoded = super().decode(record)
    extra = tf.io.parse_single_example(record, {
        schema.SCORE: tf.io.VarLenFeature(tf.float32),
        schema.LEGACY_SCORE: tf.io.VarLenFeature(tf.float32),
        schema.TEACHER_ID: tf.io.FixedLenFeature((), tf.string, ''),
    })
    scores = tf.sparse.to_dense(extra[schema.SCORE])
    legacy = tf.sparse.to_dense(extra[schema.LEGACY_SCORE])
    num_boxes = tf.shape(decoded['groundtruth_classes'])[0]
    decoded['groundtruth_scores'] = tf.case(
        [(tf.greater(tf.size(scores), 0), lambda: scores),
         (tf.greater(tf.size(legacy), 0), lambda: legacy)],
        default=lambda: tf.ones([num_boxes], tf.float32))
    decoded['teacher_id'] = extra[schema.TEACHER_ID]
    decoded['file'] = file
    return self._maybe_assert(decoded)

  def _problems(self, decoded: dict) -> List[Problem]:
    boxes = decoded['groundtruth_boxes']
    classes = decoded['groundtruth_classes']
    scores = decoded['groundtruth_scores']
    num = tf.shape(classes)[0]
    outside = tf.logical_or(boxes < -BOX_TOLERANCE, boxes > 1 + BOX_TOLERANCE)
    inverted = tf.logical_or(boxes[:, 0] > boxes[:, 2],
                             boxes[:, 1] > boxes[:, 3])
    problems = _image_problems(decoded) + [
        (tf.not_equal(tf.shape(boxes)[0], num), lambda: tf.strings.format(
            '{} boxes but {} class labels', (tf.shape(boxes)[0], num))),
        (tf.not_equal(tf.shape(scores)[0], num), lambda: tf.strings.format(
            '{} boxes but {} scores', (num, tf.shape(scores)[0]))),
        (tf.reduce_any(outside), lambda: tf.strings.format(
            'box coordinates outside [0, 1] (boxes must be normalized '
            'ymin, xmin, ymax, xmax): {}',
            tf.boolean_mask(boxes, tf.reduce_any(outside, -1)))),
        (tf.reduce_any(inverted), lambda: tf.strings.format(
            'boxes with ymin > ymax or xmin > xmax: {}',
            tf.boolean_mask(boxes, inverted))),
        (tf.reduce_any(classes < 1), lambda: tf.strings.format(
            'class ids < 1 (0 is background): {}', classes)),
        (tf.reduce_any(tf.logical_or(scores < 0, scores > 1)),
         lambda: tf.strings.format('scores outside [0, 1]: {}', scores)),
    ]
    if self._num_classes is not None:
      problems.append((
          tf.reduce_any(classes >= self._num_classes),
          lambda: tf.strings.format(
              'class ids >= num_classes = {}: {}',
              (self._num_classes, classes))))
    return problems


@gin.configurable
class SegmentationDecoder(_Validation, mg_decoder.Decoder):
  """Decodes semantic segmentation records (human or pseudo)."""

  _kind = 'segmentation'

  def __init__(self,
               num_classes: Optional[int] = None,
               validate: bool = True,
               skip_invalid: bool = False):
    """Initializes the decoder.

    Args:
      num_classes: class count (ids in [0, num_classes) plus 255 = ignore);
        None skips the range check.
      validate: check records in the graph (see the module doc).
      skip_invalid: do not raise; reject bad records in `is_valid` instead.
    """
    self._num_classes = num_classes
    self._keys_to_features = schema.segmentation_features()
    self._init_validation(validate, skip_invalid)

  def decode(self, serialized: DecoderInput) -> dict:
    """Decodes one record.

    Returns:
      ``image`` uint8 [H, W, 3], ``label`` uint8 [H, W, 1] class ids
      (255 = ignore), ``source_id``, ``height``, ``width`` (int64),
      ``teacher_id`` ('' for human), ``file``.
    """
    record, file = split_input(serialized)
    parsed = tf.io.parse_single_example(record, self._keys_to_features)
    image, label = (
        _decode_pair(parsed, self._validate))
    return self._maybe_assert(_with_image_info(parsed, image, file, {
        'label': label, 'teacher_id': parsed[schema.TEACHER_ID]}))

  def _problems(self, decoded: dict) -> List[Problem]:
    label = decoded['label']
    label_hw = tf.shape(label, out_type=tf.int64)[:2]
    image_hw = tf.shape(decoded['image'], out_type=tf.int64)[:2]
    failed = tf.equal(tf.size(label), 0)
    problems = _image_problems(decoded) + [
        (failed, lambda: tf.constant(
            'segmentation label map missing or failed to decode')),
        (tf.logical_and(tf.logical_not(failed),
                        tf.reduce_any(tf.not_equal(label_hw, image_hw))),
         lambda: tf.strings.format(
             'label map size {} differs from the image size {}',
             (label_hw, image_hw))),
    ]
    if self._num_classes is not None:
      bad = tf.logical_and(
          tf.cast(label, tf.int32) >= self._num_classes,
          tf.not_equal(label, schema.IGNORE_LABEL))
      problems.append((tf.reduce_any(bad), lambda: tf.strings.format(
          'label ids >= num_classes = {} (other than 255 = ignore): {}',
          (self._num_classes, tf.unique(tf.boolean_mask(label, bad))[0]))))
    return problems


@gin.configurable
class UnlabeledDecoder(_Validation, mg_decoder.Decoder):
  """Decodes the image of any of our records, ignoring labels."""

  _kind = 'unlabeled'

  def __init__(self, validate: bool = True, skip_invalid: bool = False):
    self._keys_to_features = schema.image_features()
    self._init_validation(validate, skip_invalid)

  def decode(self, serialized: DecoderInput) -> dict:
    """Returns ``image`` uint8 [H, W, 3], ``source_id``, ``height``,
    ``width`` (int64) and ``file``."""
    record, file = split_input(serialized)
    parsed = tf.io.parse_single_example(record, self._keys_to_features)
    image = _decode_rgb(parsed[schema.IMAGE_ENCODED], self._validate)
    return self._maybe_assert(_with_image_info(parsed, image, file, {}))

  def _problems(self, decoded: dict) -> List[Problem]:
    return _image_problems(decoded)


def _decode_rgb(encoded: tf.Tensor, validate: bool) -> tf.Tensor:
  if validate:
    return decode_image_or_empty(encoded, 3)
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def _decode_pair(parsed: dict, validate: bool):
  """Decodes image (uint8 [H, W, 3]) and label map (uint8 [H, W, 1])."""
  image = _decode_rgb(parsed[schema.IMAGE_ENCODED], validate)
  encoded_label = parsed[schema.SEGMENTATION_MASK]
  if validate:
    label = decode_image_or_empty(encoded_label, 1)
  else:
    label = tf.io.decode_png(encoded_label, channels=1)
    label.set_shape([None, None, 1])
  return image, label


def _with_image_info(parsed: dict, image: tf.Tensor, file: tf.Tensor,
                     extra: dict) -> dict:
  """Source id (hashed when absent), height/width (from the image if absent)."""
  encoded = parsed[schema.IMAGE_ENCODED]
  source_id = tf.cond(
      tf.greater(tf.strings.length(parsed[schema.IMAGE_SOURCE_ID]), 0),
      lambda: parsed[schema.IMAGE_SOURCE_ID],
      lambda: tf_example_decoder._generate_source_id(encoded))  # pylint: disable=protected-access
  shape = tf.shape(image, out_type=tf.int64)
  height = parsed[schema.IMAGE_HEIGHT]
  width = parsed[schema.IMAGE_WIDTH]
  height = tf.where(height > 0, height, shape[0])
  width = tf.where(width > 0, width, shape[1])
  return dict(image=image, source_id=source_id, height=height, width=width,
              file=file, **extra)
