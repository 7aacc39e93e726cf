"""Tests for st_tf.atomic_io."""
import json
import os

from st_tf import atomic_io


def test_write_json_replaces_atomically_and_leaves_no_temp(tmp_path):
  path = str(tmp_path / 'meta.json')
  atomic_io.write_json(path, {'a': 1})
  atomic_io.write_json(path, {'a': 2, 'b': [1, 2]}, indent=2)
  with open(path) as f:
    assert json.load(f) == {'a': 2, 'b': [1, 2]}
  assert os.listdir(tmp_path) == ['meta.json']
