"""Tests for st_tf.atomic_io and the writers that use it."""
import json
import os

import pytest

from st_tf import atomic_io
from st_tf.evaluation import runner as eval_runner
from st_tf.pseudo_label import writer
from st_tf.self_train import stages


def test_write_json_replaces_atomically_and_leaves_no_temp(tmp_path):
  path = str(tmp_path / 'meta.json')
  atomic_io.write_json(path, {'a': 1})
  atomic_io.write_json(path, {'a': 2, 'b': [1, 2]}, indent=2)
  with open(path) as f:
    assert json.load(f) == {'a': 2, 'b': [1, 2]}
  assert os.listdir(tmp_path) == ['meta.json']


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
  path = str(tmp_path / 'meta.json')
  atomic_io.write_json(path, {'a': 1})
  with pytest.raises(TypeError):
    atomic_io.write_json(path, {'a': object()})  # Fails while serializing.

  def broken_replace(src, dst):
    raise OSError('disk full')

  monkeypatch.setattr(os, 'replace', broken_replace)
  with pytest.raises(OSError, match='disk full'):
    atomic_io.write_json(path, {'a': 3})
  assert os.listdir(tmp_path) == ['meta.json']
  assert atomic_io.read_json(path) == {'a': 1}


def test_data_is_fsynced_before_the_rename(tmp_path, monkeypatch):
  events = []
  fsync, replace = os.fsync, os.replace
  monkeypatch.setattr(os, 'fsync',
                      lambda fd: events.append('fsync') or fsync(fd))
  monkeypatch.setattr(os, 'replace', lambda a, b: events.append(
      'rename') or replace(a, b))
  atomic_io.write_json(str(tmp_path / 'x.json'), [1])
  assert events[:2] == ['fsync', 'rename']  # Then the folder's fsync.


def test_every_json_writer_is_durable(tmp_path, monkeypatch):
  calls = []
  fsync = os.fsync
  monkeypatch.setattr(os, 'fsync',
                      lambda fd: calls.append(fd) or fsync(fd))
  writers = [
      lambda: stages.write_json(str(tmp_path / 'stages.json'), {}),
      lambda: writer.write_json(str(tmp_path / 'manifest.json'), {}),
      lambda: eval_runner.write_metrics(str(tmp_path), 1, 'ckpt-1', {'AP': 1}),
  ]
  for write in writers:
    calls.clear()
    write()
    assert calls, write
  assert not [n for n in os.listdir(tmp_path) if '.tmp' in n]


def test_torn_json_names_the_file_and_the_fix(tmp_path):
  path = str(tmp_path / 'state.json')
  with open(path, 'w') as f:
    f.write('{"a": [1, 2')
  with pytest.raises(atomic_io.TornFileError, match='state.json is torn.*Delete'):
    atomic_io.read_json(path)


def test_write_bytes_replaces_atomically_and_leaves_no_temp(tmp_path):
  path = str(tmp_path / 'plot.png')
  atomic_io.write_bytes(path, b'\x89PNG old')
  atomic_io.write_bytes(path, b'\x89PNG\x00new')
  with open(path, 'rb') as f:
    assert f.read() == b'\x89PNG\x00new'
  assert os.listdir(tmp_path) == ['plot.png']


def test_rename_dir_publishes_the_folder_and_fsyncs_its_parent(
    tmp_path, monkeypatch):
  src, dst = tmp_path / 'out.tmp', tmp_path / 'out'
  src.mkdir()
  (src / 'a.txt').write_text('a')
  synced = []
  fsync_dir = atomic_io.fsync_dir
  monkeypatch.setattr(atomic_io, 'fsync_dir',
                      lambda d: synced.append(d) or fsync_dir(d))
  atomic_io.rename_dir(str(src), str(dst))
  assert sorted(os.listdir(tmp_path)) == ['out']
  assert (dst / 'a.txt').read_text() == 'a'
  assert synced == [str(tmp_path)]
