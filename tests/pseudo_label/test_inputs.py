"""Corrupt or truncated input files during pseudo-labeling."""
import pytest

from st_tf.pseudo_label import inputs
from st_tf.pseudo_label import writer
from tests.pseudo_label import pixel_teacher
from tests.pseudo_label import tiny


def _files(tmp_path):
  """good.tfrecord (3 images) and bad.tfrecord (4, its last one torn)."""
  good, bad = str(tmp_path / 'good.tfrecord'), str(tmp_path / 'bad.tfrecord')
  ids = pixel_teacher.write_records(
      good, [pixel_teacher.random_image(32, 32, seed=i) for i in range(3)],
      prefix='good')
  ids += pixel_teacher.write_records(
      bad, [pixel_teacher.random_image(32, 32, seed=9 + i) for i in range(4)],
      prefix='bad')[:3]
  with open(bad, 'rb') as f:
    data = f.read()
  with open(bad, 'wb') as f:
    f.write(data[:-10])  # A torn write: the last record is truncated.
  return [good, bad], ids


_label = pixel_teacher.label


def test_corrupt_file_is_named_or_skipped_with_skip_corrupt(tmp_path):
  paths, ids = _files(tmp_path)
  out = str(tmp_path / 'out')
  with pytest.raises(ValueError, match=r'bad\.tfrecord.*skip_corrupt'):
    _label(out, paths)
  manifest = _label(out, paths, skip_corrupt=True)
  assert manifest['complete'] and manifest['totals']['images_in'] == 6
  got = tiny.source_ids(tiny.read_records(writer.file_pattern(out)))
  assert got == sorted(ids)


def test_file_torn_after_counting_is_named(tmp_path):
  paths, _ = _files(tmp_path)
  unit = (paths[1], 0, 1, 4)  # Counted before it was torn.
  with pytest.raises(ValueError, match=r'corrupt or truncated .*bad\.tfrecord'):
    list(inputs.batches([unit], (32, 32), batch_size=2))
  batches = list(inputs.batches([unit], (32, 32), batch_size=2,
                                skip_corrupt=True))
  assert sum(len(b['unit']) for b in batches) == 3
