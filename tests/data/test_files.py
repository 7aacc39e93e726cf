"""Tests for st_tf.data.files: match_files and the file-aware dataset_fn."""
import functools

import numpy as np
import pytest
import tensorflow as tf
from official.core import config_definitions as cfg
from official.core import input_reader

from st_tf.data import decoders
from st_tf.data import files
from st_tf.data import schema


def _write(path, examples):
  with tf.io.TFRecordWriter(str(path)) as writer:
    for ex in examples:
      writer.write(ex.SerializeToString())
  return str(path)


def _unlabeled(source_id):
  return schema.unlabeled_example(
      np.full((8, 8, 3), 5, np.uint8), source_id)


def test_match_files_expands_sorts_and_dedupes(tmp_path):
  a = _write(tmp_path / 'a.tfrecord', [_unlabeled('a')])
  b = _write(tmp_path / 'b.tfrecord', [_unlabeled('b')])
  pattern = str(tmp_path / '*.tfrecord')
  assert files.match_files(pattern) == [a, b]
  assert files.match_files([b, pattern]) == [a, b]
  assert files.match_files(f'{b}, {a}') == [a, b]


@pytest.mark.parametrize('pattern', ['', None, [], ' , '])
def test_match_files_missing_pattern(pattern):
  with pytest.raises(ValueError, match='No input file pattern'):
    files.match_files(pattern)


def test_match_files_no_match_names_pattern(tmp_path):
  pattern = str(tmp_path / 'nothing-*.tfrecord')
  with pytest.raises(ValueError, match='nothing-.*does not match any file'):
    files.match_files(pattern)
  with pytest.raises(ValueError, match='missing.tfrecord'):
    files.match_files(str(tmp_path / 'missing.tfrecord'))


def test_match_files_only_empty_files(tmp_path):
  (tmp_path / 'e-0.tfrecord').write_bytes(b'')
  (tmp_path / 'e-1.tfrecord').write_bytes(b'')
  with pytest.raises(ValueError, match=r"e-\*' matches only empty"):
    files.match_files(str(tmp_path / 'e-*'))
  good = _write(tmp_path / 'e-2.tfrecord', [_unlabeled('x')])
  assert good in files.match_files(str(tmp_path / 'e-*'))


def test_dataset_fn_list_and_tensor_inputs(tmp_path):
  a = _write(tmp_path / 'a.tfrecord', [_unlabeled('a0'), _unlabeled('a1')])
  b = _write(tmp_path / 'b.tfrecord', [_unlabeled('b0')])
  # Called with a Python list, as InputReader does for few files.
  got = [(e['file'].numpy().decode(), len(e['record'].numpy()) > 0)
         for e in files.tfrecord_dataset_with_filename([a, b])]
  assert got == [(a, True), (a, True), (b, True)]
  # Called once per file name tensor, as InputReader's interleave does.
  ds = tf.data.Dataset.from_tensor_slices([a, b]).interleave(
      files.tfrecord_dataset_with_filename, cycle_length=1)
  assert [e['file'].numpy().decode() for e in ds] == [a, a, b]


@pytest.mark.parametrize('damage', ['truncate', 'flip'])
def test_corrupt_file_raises_naming_file_or_is_skipped(tmp_path, damage):
  good = _write(tmp_path / 'good.tfrecord',
                [_unlabeled('r0'), _unlabeled('r1'), _unlabeled('r2')])
  data = bytearray(open(good, 'rb').read())
  record_len = len(data) // 3
  if damage == 'truncate':
    data = data[:2 * record_len + 10]
  else:
    data[record_len + 20] ^= 0xFF  # inside the second record's payload
  bad = str(tmp_path / 'bad-00000.tfrecord')
  with open(bad, 'wb') as f:
    f.write(bytes(data))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='Corrupt or truncated TFRecord file .*bad-00000'):
    list(files.tfrecord_dataset_with_filename(bad))
  kept = list(files.tfrecord_dataset_with_filename(bad, skip_corrupt=True))
  assert len(kept) == (2 if damage == 'truncate' else 1)
  decoded = decoders.UnlabeledDecoder().decode(kept[0])
  assert decoded['source_id'].numpy() == b'r0'


def test_model_garden_input_reader_with_dataset_fn(tmp_path):
  decoder = decoders.DetectionDecoder(num_classes=3, skip_invalid=True)
  img = np.zeros((16, 16, 3), np.uint8)
  good = [schema.detection_example(img, [[0, 0, .5, .5]], [1], f'g{i}')
          for i in range(3)]
  bad = schema.detection_example(img, [[0, 0, .5, .5]], [9], 'bad')
  a = _write(tmp_path / 'd-00000-of-00002.tfrecord', good[:2])
  _write(tmp_path / 'd-00001-of-00002.tfrecord', [bad, good[2]])
  for pattern in [str(tmp_path / 'd-*'), a]:  # interleave path, list path
    params = cfg.DataConfig(input_path=pattern, global_batch_size=1,
                            is_training=False, cycle_length=2)
    reader = input_reader.InputReader(
        params,
        dataset_fn=functools.partial(files.tfrecord_dataset_with_filename,
                                     skip_corrupt=False),
        decoder_fn=decoder.decode,
        sample_fn=decoder.filter_invalid,
        parser_fn=lambda d: d['source_id'])
    ids = sorted(x.numpy()[0].decode() for x in reader.read())
    if pattern == a:
      assert ids == ['g0', 'g1']
    else:
      assert ids == ['g0', 'g1', 'g2']
  assert decoder.num_skipped == 1
