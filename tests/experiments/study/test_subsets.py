"""Labeled subsets: first N records in order, atomic, idempotent."""
import os

import pytest
import tensorflow as tf

from experiments.study import subsets


def _write_shards(folder, counts):
  """labeled-0000i-of-0000n shards of records b'i-j' (file i, record j)."""
  os.makedirs(folder, exist_ok=True)
  n = len(counts)
  # Written in reverse order: the subset must follow sorted names.
  for i in reversed(range(n)):
    path = os.path.join(folder, f'labeled-{i:05d}-of-{n:05d}.tfrecord')
    with tf.io.TFRecordWriter(path) as w:
      for j in range(counts[i]):
        w.write(f'{i}-{j}'.encode())


def _read(path):
  return [r.numpy() for r in tf.data.TFRecordDataset(path)]


def test_subset_takes_first_n_in_file_order(tmp_path):
  data = str(tmp_path / 'data')
  _write_shards(data, [3, 3, 4])
  assert subsets.subset_size(10, 50) == 5
  out = subsets.ensure_subset(data, str(tmp_path / 'out'), 50, 10)
  assert out.endswith('labeled_p50-00000-of-00001.tfrecord')
  assert _read(out) == [b'0-0', b'0-1', b'0-2', b'1-0', b'1-1']
  assert not [f for f in os.listdir(tmp_path / 'out') if '.tmp' in f]
  # 100 % is the original pattern, nothing written.
  assert subsets.ensure_subset(data, str(tmp_path / 'out'), 100, 10) == (
      os.path.join(data, 'labeled-*'))


def test_subset_is_written_once(tmp_path):
  data = str(tmp_path / 'data')
  _write_shards(data, [5, 5])
  out_dir = str(tmp_path / 'out')
  path = subsets.subset_path(out_dir, 20)
  assert subsets.write_subset(os.path.join(data, 'labeled-*'), 2, path)
  mtime = os.path.getmtime(path)
  assert not subsets.write_subset(os.path.join(data, 'labeled-*'), 2, path)
  assert os.path.getmtime(path) == mtime
  # A wrong (e.g. torn) file is replaced.
  with open(path, 'wb') as f:
    f.write(b'')
  assert subsets.write_subset(os.path.join(data, 'labeled-*'), 2, path)
  assert _read(path) == [b'0-0', b'0-1']


def test_subset_errors(tmp_path):
  data = str(tmp_path / 'data')
  _write_shards(data, [2])
  with pytest.raises(ValueError, match='fewer than'):
    subsets.write_subset(os.path.join(data, 'labeled-*'), 5,
                         str(tmp_path / 'x.tfrecord'))
  assert not os.path.exists(tmp_path / 'x.tfrecord')
  with pytest.raises(ValueError, match='fewer than one'):
    subsets.subset_size(2, 20)
  with pytest.raises(ValueError, match='percent'):
    subsets.subset_size(10, 0)
