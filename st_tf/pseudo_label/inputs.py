"""Pseudo-labeling inputs: the job's work units and their decoded batches.

`plan` lists a job's input files, their record counts and its units.

Work split: the sorted input files are dealt to the `num_shards` jobs
(file i -> job i % num_shards); with fewer files than jobs every job takes
its slice of each file's records (record r -> job r % num_shards). Each
(input file, part) is a work unit and becomes one output shard.

`job_dataset` is ONE tf.data pipeline over all of a job's pending units:
records are decoded in parallel (`UnlabeledDecoder`), resized and
zero-padded to the teacher input size (Model Garden `resize_and_crop_image`,
as the export's `serve_encoded`; skipped when the image already has that
size) and batched across unit boundaries, each row tagged with its unit.
A teacher trained on other padding (Model Garden's own SavedModels: its
parsers normalize, then pad, i.e. pad with the mean colour) gets its
`Teacher.input_pad_value` there instead of zeros.
"""
from __future__ import annotations

import dataclasses
from typing import (Callable, Dict, Iterator, List, Optional, Sequence, Tuple,
                    Union)

from absl import logging
import tensorflow as tf
from official.vision.ops import preprocess_ops

from st_tf import paths as paths_lib
from st_tf.data import decoders
from st_tf.data import files as files_lib

# (input file, part, num_parts, number of records in the part).
WorkUnit = Tuple[str, int, int, int]
# Decoded batches kept ready ahead of the teacher: absorbs the decode
# threads' stalls when the cores are busy (16 images of 128 px: 0.8 MB).
PREFETCH_BATCHES = 4


def _count(records: tf.data.Dataset) -> int:
  return int(records.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def _records(path, skip_corrupt: bool) -> tf.data.Dataset:
  """The file's records; with `skip_corrupt` its unreadable tail is dropped
  (TFRecord framing cannot resync after a bad record)."""
  records = tf.data.TFRecordDataset(path)
  return records.ignore_errors(log_warning=True) if skip_corrupt else records


def count_records(path: str, skip_corrupt: bool = False) -> int:
  """Number of (readable, with `skip_corrupt`) records in a TFRecord file.

  Raises:
    ValueError: the file is corrupt or truncated (naming it and the fix)
      and `skip_corrupt` is False.
  """
  try:
    return _count(tf.data.TFRecordDataset(path))
  except tf.errors.DataLossError as e:
    if not skip_corrupt:
      raise ValueError(
          f'corrupt or truncated TFRecord file {path}: '
          f'{e.message.splitlines()[0]}. Fix: rewrite it, or set '
          'pseudo_label.skip_corrupt = True to label its readable records '
          'and skip the rest of the file') from e
  count = _count(_records(path, skip_corrupt=True))
  logging.warning('Corrupt TFRecord file %s: labeling its first %d readable '
                  'records and skipping the rest (skip_corrupt=True).', path,
                  count)
  return count


def work_units(paths: Sequence[str], counts: Sequence[int], shard_index: int,
               num_shards: int) -> List[WorkUnit]:
  """This job's (file, part, num_parts, count) units (see module doc)."""
  if len(paths) >= num_shards:
    return [(p, 0, 1, n) for i, (p, n) in enumerate(zip(paths, counts))
            if i % num_shards == shard_index]
  return [(p, shard_index, num_shards, len(range(shard_index, n, num_shards)))
          for p, n in zip(paths, counts)]


@dataclasses.dataclass(frozen=True)
class Plan:
  """A job's input files and its part of them (`plan`).

  Attributes:
    paths: the input files, sorted, one spelling each (`paths.normalize`,
      so a resumed job compares them).
    counts: the records of each file.
    units: this job's work units (`work_units`).
  """
  paths: List[str]
  counts: List[int]
  units: List[WorkUnit]

  def all_units(self) -> List[WorkUnit]:
    """The work units of a single job over all the files."""
    return work_units(self.paths, self.counts, 0, 1)


def plan(input_pattern: Union[str, Sequence[str]], shard_index: int,
         num_shards: int, skip_corrupt: bool = False) -> Plan:
  """The `Plan` of job `shard_index` (of `num_shards`) over `input_pattern`
  (glob or list of TFRecord files).

  Raises:
    ValueError: the files hold no record, or one is corrupt (see
      `count_records`).
  """
  # One spelling of each file (relative / absolute), so resume compares them.
  paths = sorted(paths_lib.normalize(p)
                 for p in files_lib.match_files(input_pattern))
  counts = [count_records(p, skip_corrupt) for p in paths]
  if not sum(counts):
    raise ValueError(f'the unlabeled set {input_pattern!r} is empty: its '
                     f'{len(paths)} files hold no record')
  return Plan(paths, counts, work_units(paths, counts, shard_index,
                                        num_shards))


def _prepare_fn(input_size: Sequence[int],
                pad_value: Optional[Sequence[float]] = None
                ) -> Callable[..., dict]:
  """(record, unit) -> image uint8 [H, W, 3] at the input size + info.

  The padding is `pad_value` (RGB in [0, 255], rounded) or zeros.

  The image is decoded without the decoder's per-record validation (a
  nested tf.data pipeline per image, ~40% of the decoding time); a record
  that does not decode fails the job and `_decode_error` names its file.
  """
  decoder = decoders.UnlabeledDecoder(validate=False)
  size = [int(s) for s in input_size]
  pad = tf.constant(list(pad_value) if pad_value else [0.0] * 3, tf.float32)

  def resize(image):
    # Bilinear resizing commutes with a constant shift: only the padding
    # (zeros of the shifted image) becomes `pad`.
    image, info = preprocess_ops.resize_and_crop_image(
        tf.cast(image, tf.float32) - pad, size, padded_size=size)
    image += pad
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), info

  def keep(image):  # Already the input size: resize would be the identity.
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    return image, tf.stack([hw, hw, tf.ones([2]), tf.zeros([2])])

  def prepare(record, unit):
    decoded = decoder.decode(record)
    image = decoded['image']
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], size))
    image, info = tf.cond(same, lambda: keep(image), lambda: resize(image))
    return {'image': tf.ensure_shape(image, size + [3]),
            'image_info': tf.ensure_shape(info, [4, 2]),
            'record': record, 'source_id': decoded['source_id'],
            'unit': unit}

  return prepare


def job_dataset(units: Sequence[WorkUnit], input_size: Sequence[int],
                batch_size: int, skip_corrupt: bool = False,
                pad_value: Optional[Sequence[float]] = None
                ) -> tf.data.Dataset:
  """One pipeline over the records of `units`, in order.

  `pad_value`: RGB of the padding (default zeros; see the module doc).

  With `skip_corrupt`, the unreadable tail of a corrupt file is dropped (as
  `count_records(..., skip_corrupt=True)` counts it).

  Batches may span consecutive units (only the job's last batch is
  partial); each row says its unit. Elements: 'image' uint8 [B, H, W, 3],
  'image_info' float32 [B, 4, 2], 'record' string [B] (serialized input),
  'source_id' string [B], 'unit' int32 [B] (index into `units`).
  """
  index = tf.data.Dataset.from_tensor_slices((
      tf.range(len(units), dtype=tf.int32),
      tf.constant([u[0] for u in units], tf.string),
      tf.constant([u[1] for u in units], tf.int64),
      tf.constant([u[2] for u in units], tf.int64)))

  def unit_records(unit, path, part, num_parts):
    records = _records(path, skip_corrupt).shard(num_parts, part)
    return tf.data.Dataset.zip(
        (records, tf.data.Dataset.from_tensors(unit).repeat()))

  return index.flat_map(unit_records).map(
      _prepare_fn(input_size, pad_value), num_parallel_calls=tf.data.AUTOTUNE).batch(
          batch_size).prefetch(PREFETCH_BATCHES)


def unit_dataset(unit: WorkUnit, input_size: Sequence[int],
                 batch_size: int) -> tf.data.Dataset:
  """Batches of one unit (see `job_dataset`)."""
  return job_dataset([unit], input_size, batch_size)


def batches(units: Sequence[WorkUnit], input_size: Sequence[int],
            batch_size: int, skip_corrupt: bool = False,
            pad_value: Optional[Sequence[float]] = None
            ) -> Iterator[Dict[str, tf.Tensor]]:
  """`job_dataset` batches; a record that fails to decode, or a corrupt
  file (`DataLossError`), raises a ValueError naming the file."""
  if not units:
    return
  iterator = iter(job_dataset(units, input_size, batch_size, skip_corrupt,
                              pad_value))
  unit = 0
  while True:
    try:
      batch = next(iterator)
    except StopIteration:
      return
    except tf.errors.InvalidArgumentError as e:
      files = sorted({u[0] for u in units[unit:unit + 2]})
      raise ValueError(f'cannot decode a record of {" or ".join(files)}: '
                       f'{e.message}') from e
    except tf.errors.DataLossError as e:
      files = sorted({u[0] for u in units[unit:unit + 2]})
      raise ValueError(
          f'corrupt or truncated TFRecord file {" or ".join(files)}: '
          f'{e.message.splitlines()[0]}. Fix: rewrite it, or set '
          'pseudo_label.skip_corrupt = True') from e
    unit = int(batch['unit'].numpy()[-1])
    yield batch
