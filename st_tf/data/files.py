"""Input files: pattern matching with clear errors, and a file-aware reader.

`tfrecord_dataset_with_filename` is a drop-in `dataset_fn` for Model Garden's
`official.core.input_reader.InputReader` (and the vision
`CombinationDatasetInputReader`). The reader calls it two ways:

* ``dataset_fn(matched_files)`` with a Python list of paths (one file, or
  fewer files than input pipelines);
* ``dataset.interleave(dataset_fn)`` over the file names, i.e. with one scalar
  string tensor per call.

Both yield dict elements ``{'record': serialized tf.Example, 'file': path}``
that every decoder in `decoders.py` accepts, so decoding errors can name the
file. TFRecordDataset's own `DataLossError` only says ``corrupted record at
<offset>``; here each file is read on its own and checked at its end (valid
record bytes must add up to the file size), so a corrupt or truncated file
raises an `InvalidArgumentError` naming it, or, with ``skip_corrupt=True``, its
unreadable tail is skipped and logged with the file name.
"""
from __future__ import annotations

import functools
from typing import List, Sequence, Union

from absl import logging
import tensorflow as tf

from st_tf.data import schema

# Bytes of TFRecord framing per record: length (8) + length crc (4) + data crc.
_RECORD_OVERHEAD = 16


def match_files(pattern: Union[str, Sequence[str]]) -> List[str]:
  """Expands file patterns to a sorted list of files.

  Args:
    pattern: a path or glob, a comma-separated string of them, or a sequence
      of them.

  Returns:
    Sorted, de-duplicated file paths (metadata sidecars,
    `schema.METADATA_SUFFIX`, left out).

  Raises:
    ValueError: no pattern given, a pattern matches nothing, or every matched
      file is empty (0 bytes). The message names the pattern.
  """
  if pattern is None or (not isinstance(pattern, str) and not pattern):
    raise ValueError('No input file pattern given (got %r).' % (pattern,))
  items = [pattern] if isinstance(pattern, str) else list(pattern)
  patterns = []
  for item in items:
    if not isinstance(item, str):
      raise ValueError(f'File patterns must be strings, got {item!r}.')
    patterns.extend(p.strip() for p in item.split(',') if p.strip())
  if not patterns:
    raise ValueError('No input file pattern given (got %r).' % (pattern,))
  matched = []
  for p in patterns:
    # Metadata sidecars (`<prefix>.metadata.json`) are never records.
    found = [f for f in tf.io.gfile.glob(p) if not tf.io.gfile.isdir(f)
             and not f.endswith(schema.METADATA_SUFFIX)]
    if not found:
      raise ValueError(f'File pattern {p!r} does not match any file.')
    matched.extend(found)
  matched = sorted(set(matched))
  empty = [f for f in matched if tf.io.gfile.stat(f).length == 0]
  if len(empty) == len(matched):
    raise ValueError(f'File pattern {pattern!r} matches only empty (0-byte) '
                     f'files: {matched[:5]}')
  if empty:
    logging.warning('%d of the %d files matching %r are empty: %s',
                    len(empty), len(matched), pattern, empty[:5])
  return matched


def _file_size(filename: tf.Tensor) -> tf.Tensor:
  """Size in bytes of `filename` (scalar string tensor), read once per file."""
  size = tf.py_function(
      lambda f: tf.io.gfile.stat(f.numpy().decode()).length, [filename],
      tf.int64)
  size.set_shape([])
  return size


def _records_of_one_file(filename: tf.Tensor, size: tf.Tensor,
                         skip_corrupt: bool) -> tf.data.Dataset:
  """Records of one file as ``{'record', 'file'}``; checks it for corruption."""
  records = tf.data.TFRecordDataset(filename).ignore_errors(
      log_warning=skip_corrupt)
  flagged = records.map(lambda r: (r, tf.constant(False))).concatenate(
      tf.data.Dataset.from_tensors((tf.constant(''), tf.constant(True))))

  def count_bytes(consumed, element):
    record, is_end = element
    consumed += tf.where(
        is_end, tf.constant(0, tf.int64),
        tf.cast(tf.strings.length(record), tf.int64) + _RECORD_OVERHEAD)
    return consumed, (record, is_end, consumed)

  def keep(record, is_end, consumed):
    del record
    intact = tf.logical_or(tf.logical_not(is_end), tf.equal(consumed, size))
    message = tf.strings.join([
        'Corrupt or truncated TFRecord file ', filename, ': only the first ',
        tf.strings.as_string(consumed), ' of ', tf.strings.as_string(size),
        ' bytes hold valid records',
    ])
    if skip_corrupt:
      report = tf.cond(
          intact, tf.no_op,
          lambda: tf.print(message, '; skipped the rest of the file.'))
    else:
      report = tf.debugging.Assert(intact, [
          tf.strings.join([message, ' (pass skip_corrupt=True to skip it).'])
      ])
    with tf.control_dependencies([report]):
      return tf.logical_not(is_end)

  return (flagged.scan(tf.constant(0, tf.int64), count_bytes)
          .filter(keep)
          .map(lambda record, is_end, consumed: {  # pylint: disable=g-long-lambda
              'record': record, 'file': filename}))


def tfrecord_dataset_with_filename(
    filenames: Union[str, Sequence[str], tf.Tensor],
    skip_corrupt: bool = False) -> tf.data.Dataset:
  """Reads TFRecord files into ``{'record': string, 'file': string}`` elements.

  Usable as Model Garden's `InputReader(dataset_fn=...)`; for skipping use
  ``functools.partial(tfrecord_dataset_with_filename, skip_corrupt=True)``.

  Args:
    filenames: a path, a list of paths, or a scalar/1-D string tensor of
      paths (no globbing; see `match_files`).
    skip_corrupt: when False (default) a corrupt or truncated file raises
      `tf.errors.InvalidArgumentError` naming the file once its valid records
      are read; when True its unreadable tail is skipped and logged.

  Returns:
    A dataset of dicts: 'record' (scalar string, serialized tf.Example) and
    'file' (scalar string, the path it came from). Files are read in order.
  """
  if isinstance(filenames, str):
    filenames = [filenames]
  if isinstance(filenames, (list, tuple)):
    sizes = [tf.io.gfile.stat(f).length for f in filenames]
    files = tf.data.Dataset.from_tensor_slices(
        (tf.constant(list(filenames), tf.string),
         tf.constant(sizes, tf.int64)))
  else:
    names = tf.reshape(tf.convert_to_tensor(filenames, tf.string), [-1])
    files = tf.data.Dataset.from_tensor_slices(names).map(
        lambda f: (f, _file_size(f)))
  read = functools.partial(_records_of_one_file, skip_corrupt=skip_corrupt)
  return files.flat_map(read)
