"""Deterministic labeled-data subsets: the first N records, written once.

The fraction f of the labeled split is its first `N = round(f * num_labeled)`
records, read from the split's shards in sorted file order (records in file
order), copied as they are (serialized bytes, no re-encoding) into one
shard `<out_dir>/labeled_p<pct>-00000-of-00001.tfrecord`. The file is
written under a temporary name and renamed, and a complete file (exactly N
records) is left alone, so the subset is made once and a killed write
leaves no partial subset behind. 100 % uses the original pattern.
"""
from __future__ import annotations

import os
from typing import List

import tensorflow as tf

from st_tf import atomic_io
from st_tf.data import files as files_lib


def subset_path(out_dir: str, percent: int) -> str:
  """Path of the `percent` % subset in `out_dir`."""
  return os.path.join(out_dir, f'labeled_p{percent}-00000-of-00001.tfrecord')


def subset_size(num_labeled: int, percent: int) -> int:
  """N = round(percent / 100 * num_labeled) (Python's round: half to even)."""
  if not 0 < percent <= 100:
    raise ValueError(f'percent must be in (0, 100], got {percent}')
  n = int(round(percent / 100.0 * num_labeled))
  if n < 1:
    raise ValueError(f'{percent} % of {num_labeled} labeled records is '
                     'fewer than one record')
  return n


def count_records(path: str) -> int:
  """Number of records in one TFRecord file."""
  return sum(1 for _ in tf.data.TFRecordDataset(path))


def first_records(file_pattern: str, num: int) -> List[bytes]:
  """The first `num` serialized records of the sorted files of the pattern.

  Raises:
    ValueError: the files hold fewer than `num` records.
  """
  paths = sorted(files_lib.match_files(file_pattern))
  records: List[bytes] = []
  for path in paths:
    for raw in tf.data.TFRecordDataset(path):
      records.append(raw.numpy())
      if len(records) == num:
        return records
  raise ValueError(f'{file_pattern} holds {len(records)} records, fewer than '
                   f'the {num} requested')


def write_subset(file_pattern: str, num: int, out_path: str) -> bool:
  """Writes the first `num` records of `file_pattern` to `out_path`.

  Returns:
    True if written, False if `out_path` already held exactly `num` records
    (left untouched).
  """
  if num < 1:
    raise ValueError(f'num must be >= 1, got {num}')
  if tf.io.gfile.exists(out_path) and count_records(out_path) == num:
    return False
  records = first_records(file_pattern, num)
  tf.io.gfile.makedirs(os.path.dirname(out_path) or '.')
  tmp = f'{out_path}.tmp{os.getpid()}'
  with tf.io.TFRecordWriter(tmp) as writer:
    for raw in records:
      writer.write(raw)
  atomic_io.rename(tmp, out_path)
  return True


def labeled_pattern(data_dir: str, out_dir: str, percent: int) -> str:
  """The LABELED_PATTERN of a cell: the original split's shards at 100 %,
  else its subset file (made by `ensure_subset`)."""
  if percent == 100:
    return os.path.join(data_dir, 'labeled-*')
  return subset_path(out_dir, percent)


def ensure_subset(data_dir: str, out_dir: str, percent: int,
                  num_labeled: int) -> str:
  """Writes the `percent` % subset if missing; returns its pattern."""
  pattern = labeled_pattern(data_dir, out_dir, percent)
  if percent != 100:
    write_subset(os.path.join(data_dir, 'labeled-*'),
                 subset_size(num_labeled, percent), pattern)
  return pattern
