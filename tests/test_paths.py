"""Tests for st_tf.paths."""
import os

from st_tf import paths


def test_local_paths_get_one_spelling_urls_are_left_alone(tmp_path,
                                                         monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert paths.normalize('data/../data/x.tfrecord') == os.path.join(
      str(tmp_path), 'data', 'x.tfrecord')
  assert paths.normalize(str(tmp_path / 'data' / 'x.tfrecord')) == (
      paths.normalize('data/x.tfrecord'))
  for url in ('gs://bucket/a//b/x.tfrecord', 'ram://x/y'):
    assert paths.normalize(url) == url
