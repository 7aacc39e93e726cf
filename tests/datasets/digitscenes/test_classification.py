"""DigitScenes classification crops: pool, determinism, records, metadata."""
import glob
import hashlib
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from official.vision.dataloaders import classification_input

from st_tf.datasets.digitscenes import render as digitscene_render
from st_tf.datasets.digitscenes import scenes as digitscenes
from st_tf.datasets.digitscenes import classification as dsc


def _records(pattern):
  return [r.numpy() for r in tf.data.TFRecordDataset(sorted(glob.glob(
      pattern)))]


@pytest.fixture(scope='module')
def small_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp('cls'))
  dsc.generate_classification(out, num_train=12, num_val=6, seed=3,
                              num_shards=2, image_format='png')
  return out


def test_crops_come_only_from_the_train_pool(small_dir):
  pools = digitscene_render.digit_pools()
  train = set(pools['train'].indices.tolist())
  val = set(pools['val'].indices.tolist())
  targets = np.concatenate([pools['train'].labels, pools['val'].labels])
  for split in dsc.SPLITS:
    for index in range(200):
      _, label, digit = dsc.crop_for(split, index, seed=0)
      assert digit in train and digit not in val
      assert label == targets[digit]
  # The written records carry the provenance too.
  for raw in _records(dsc.file_pattern(small_dir, 'classification_val')) + (
      _records(dsc.file_pattern(small_dir, 'classification'))):
    f = tf.train.Example.FromString(raw).features.feature
    digit = f[dsc.DIGIT_INDEX].int64_list.value[0]
    assert digit in train
    assert f[dsc.LABEL].int64_list.value[0] == targets[digit]
  meta = dsc.load_classification_metadata(small_dir)
  assert meta['digit_pool'] == 'train'
  assert meta['digit_indices'] == [0, len(train)]


def test_crops_are_deterministic_and_look_like_scene_digits():
  a = dsc.crop_for('classification', 5, seed=1)
  b = dsc.crop_for('classification', 5, seed=1)
  np.testing.assert_array_equal(a[0], b[0])
  assert a[1:] == b[1:]
  assert not np.array_equal(a[0], dsc.crop_for('classification', 5, 2)[0])
  assert not np.array_equal(a[0], dsc.crop_for('classification_val', 5,
                                                1)[0])
  image = a[0]
  assert image.shape == (64, 64, 3) and image.dtype == np.uint8
  with pytest.raises(ValueError, match='>= 64'):
    dsc.crop_for('classification', 0, 0, size=48)
  with pytest.raises(ValueError, match='unknown'):
    dsc.crop_for('val', 0, 0)


def test_scenes_are_unchanged_by_the_shared_drawing_helpers():
  # make_scene was refactored to share helpers with make_digit_crop; the
  # scenes (and so every existing DigitScenes copy) must stay byte-identical.
  h = hashlib.md5()
  for split in digitscenes.get_layout('v1').splits:
    for a in digitscenes.scene_for(split, 7, 0):
      h.update(a.tobytes())
  assert h.hexdigest() == 'ad684be317c6354bc7f4f30f3a862736'


def test_records_decode_with_model_garden_decoder(small_dir):
  decoder = classification_input.Decoder()
  raws = _records(dsc.file_pattern(small_dir, 'classification'))
  assert len(raws) == 12
  by_id = {}
  for raw in raws:
    decoded = decoder.decode(tf.constant(raw))
    f = tf.train.Example.FromString(raw).features.feature
    source_id = int(f['image/source_id'].bytes_list.value[0])
    assert f['image/format'].bytes_list.value[0] == b'PNG'
    by_id[source_id] = decoded
  assert sorted(by_id) == [11_000_000 + i for i in range(12)]
  decoded = by_id[11_000_004]
  image, label, _ = dsc.crop_for('classification', 4, seed=3)
  np.testing.assert_array_equal(
      tf.io.decode_image(decoded['image/encoded']).numpy(), image)
  assert int(decoded['image/class/label']) == label


def test_output_does_not_depend_on_sharding(small_dir, tmp_path):
  dsc.generate_classification(str(tmp_path), num_train=12, num_val=6, seed=3,
                              num_shards=1, image_format='png')
  for split in dsc.SPLITS:
    assert sorted(_records(dsc.file_pattern(str(tmp_path), split))) == sorted(
        _records(dsc.file_pattern(small_dir, split)))


def test_metadata_completeness_and_ensure(tmp_path):
  out = str(tmp_path)
  digitscenes.generate(out, num_labeled=2, num_unlabeled=1, num_val=1)
  scenes_meta = open(os.path.join(out, digitscenes.METADATA_FILE)).read()
  assert not dsc.is_classification_complete(out)
  dsc.ensure_digitscenes_classification(out, num_train=5, num_val=3)
  meta = json.load(open(os.path.join(out, dsc.METADATA_FILE)))
  assert meta['num_classes'] == 10 and meta['image_size'] == 64
  assert meta['splits']['classification']['num_examples'] == 5
  assert meta['splits']['classification_val']['num_examples'] == 3
  assert dsc.is_classification_complete(out, num_train=5, num_val=3, seed=0)
  assert not dsc.is_classification_complete(out, num_train=6)
  assert not dsc.is_classification_complete(out, seed=1)
  # The scene splits and their metadata are untouched.
  assert open(os.path.join(out, digitscenes.METADATA_FILE)).read() == (
      scenes_meta)
  assert digitscenes.is_complete(out, num_labeled=2, num_unlabeled=1,
                                 num_val=1)
  # A complete copy is not rewritten; a missing shard makes it incomplete.
  shard = os.path.join(out, meta['splits']['classification']['files'][0])
  mtime = os.stat(shard).st_mtime_ns
  dsc.ensure_digitscenes_classification(out, num_train=5, num_val=3)
  assert os.stat(shard).st_mtime_ns == mtime
  os.remove(shard)
  assert not dsc.is_classification_complete(out)
  assert not dsc.is_classification_complete(str(tmp_path / 'nothing'))
  with pytest.raises(FileNotFoundError, match='make_digitscenes'):
    dsc.load_classification_metadata(str(tmp_path / 'nothing'))


@pytest.mark.parametrize('kwargs, match', [
    ({'num_train': 0}, 'classification size'),
    ({'num_val': 0}, 'classification_val size'),
    ({'seed': -1}, 'seed'),
    ({'image_size': 32}, 'image_size'),
    ({'max_jitter': -1}, 'max_jitter'),
    ({'image_format': 'gif'}, 'image_format'),
])
def test_bad_arguments_fail_clearly(tmp_path, kwargs, match):
  with pytest.raises(ValueError, match=match):
    dsc.generate_classification(str(tmp_path), **kwargs)
  assert not os.listdir(tmp_path)
