"""Pseudo-label output folder: shard names, manifests, torn files."""
import os

import pytest

from st_tf.pseudo_label import writer
from tests.pseudo_label import pixel_teacher
from tests.pseudo_label import tiny


def _two_folders_same_base_name(tmp_path):
  ids = []
  for folder in ('a', 'b'):
    os.makedirs(tmp_path / folder)
    images = [pixel_teacher.random_image(32, 32, seed=i + 10 * len(ids))
              for i in range(3)]
    ids += pixel_teacher.write_records(
        str(tmp_path / folder / 'x-00000.tfrecord'), images, prefix=folder)
  return [str(tmp_path / f / 'x-00000.tfrecord') for f in 'ab'], ids


_label = pixel_teacher.label


def test_input_files_with_the_same_base_name_are_labeled_once(tmp_path):
  paths, ids = _two_folders_same_base_name(tmp_path)
  out = str(tmp_path / 'out')
  manifest = _label(out, paths)
  got = tiny.source_ids(tiny.read_records(writer.file_pattern(out)))
  assert got == sorted(ids)  # All 6 images, each once.
  assert manifest['totals']['images_out'] == 6
  assert len(manifest['shards']) == 2


def test_shard_stems_are_unique_and_keep_unique_base_names():
  stems = writer.shard_stems(['/d/a/x.tfrecord', '/d/b/x.tfrecord',
                              '/d/a/y.tfrecord'])
  assert stems['/d/a/y.tfrecord'] == 'y'  # Unchanged: resume compatible.
  assert len(set(stems.values())) == 3
  # Relative to the common folder: the same wherever the tree lives.
  moved = writer.shard_stems(['gs://bucket/in/a/x.tfrecord',
                              'gs://bucket/in/b/x.tfrecord'])
  assert moved['gs://bucket/in/a/x.tfrecord'] == stems['/d/a/x.tfrecord']


def _tear(path):
  with open(path) as f:
    text = f.read()
  with open(path, 'w') as f:
    f.write(text[:len(text) // 2])


def test_torn_manifest_is_rebuilt_or_named(tmp_path):
  paths, ids = _two_folders_same_base_name(tmp_path)
  out = str(tmp_path / 'out')
  _label(out, paths)
  _tear(writer.manifest_path(out, 0, 1))
  manifest = _label(out, paths)  # This job's own manifest: rebuilt.
  assert manifest['complete'] and manifest['totals']['images_out'] == 6
  got = tiny.source_ids(tiny.read_records(writer.file_pattern(out)))
  assert got == sorted(ids)  # Relabeled under the same names: once each.
  # Another job's torn manifest: refused, naming the file to delete.
  other = str(tmp_path / 'jobs')
  _label(other, paths, shard_index=0, num_shards=2)
  _label(other, paths, shard_index=1, num_shards=2)
  _tear(writer.manifest_path(other, 1, 2))
  with pytest.raises(ValueError, match=r'manifest-00001-of-00002.json is torn'
                     r'.*Delete it and rerun pseudo-label job 00001-of-00002'):
    _label(other, paths, shard_index=0, num_shards=2)
