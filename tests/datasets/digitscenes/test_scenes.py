"""DigitScenes: determinism, label geometry, pools, files, decoding."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from official.vision.dataloaders import segmentation_input
from official.vision.dataloaders import tf_example_decoder

from st_tf import paths
from st_tf.datasets.digitscenes import scenes as digitscenes
from st_tf.datasets.digitscenes import (
    classification as digitscenes_classification)

_REPO = paths.REPO_ROOT
_SMALL = dict(num_labeled=5, num_unlabeled=4, num_val=3)


def _records(paths):
  return [r.numpy() for r in tf.data.TFRecordDataset(paths)]


@pytest.fixture(scope='module')
def small_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp('digitscenes'))
  digitscenes.generate(out, seed=3, num_shards=2, num_workers=1, **_SMALL)
  return out


def test_scenes_are_deterministic_per_seed():
  item = {'split': 'labeled', 'index': 7, 'seed': 0, 'size': 128}
  a = digitscenes.make_example(item).SerializeToString()
  b = digitscenes.make_example(dict(item)).SerializeToString()
  c = digitscenes.make_example(dict(item, seed=1)).SerializeToString()
  assert a == b
  assert a != c
  for x, y in zip(digitscenes.scene_for('val', 2, 0),
                  digitscenes.scene_for('val', 2, 0)):
    np.testing.assert_array_equal(x, y)
  # Same index and seed in another split is another scene.
  assert not np.array_equal(digitscenes.scene_for('labeled', 2, 0)[0],
                            digitscenes.scene_for('unlabeled', 2, 0)[0])


def test_scene_labels_are_valid():
  counts = []
  for i in range(40):
    image, boxes, classes, mask = digitscenes.scene_for('labeled', i, 5)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert mask.shape == (128, 128) and mask.dtype == np.uint8
    assert boxes.dtype == np.float32 and boxes.shape == (len(classes), 4)
    assert 1 <= len(classes) <= 5
    assert np.all((classes >= 1) & (classes <= 10))
    assert np.all((boxes >= 0) & (boxes <= 1))
    assert np.all(boxes[:, 0] < boxes[:, 2])
    assert np.all(boxes[:, 1] < boxes[:, 3])
    assert set(np.unique(mask)) <= {0} | set(classes.tolist())
    heights = (boxes[:, 2] - boxes[:, 0]) * 128
    assert np.all((heights >= 5) & (heights <= 60))
    counts.append(len(classes))
  assert len(set(counts)) >= 3  # varied number of digits per scene


def _boxes_overlap(a, b):
  return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def test_boxes_are_the_stroke_extent_in_the_mask():
  checked = 0
  for i in range(30):
    _, boxes, classes, mask = digitscenes.scene_for('unlabeled', i, 1)
    pix = np.rint(boxes * 128).astype(int)
    np.testing.assert_allclose(pix / 128, boxes, atol=1e-6)  # pixel edges
    inside = np.zeros_like(mask, bool)
    for j, (box, cls) in enumerate(zip(pix, classes)):
      inside[box[0]:box[2], box[1]:box[3]] = True
      if any(_boxes_overlap(box, o) for k, o in enumerate(pix) if k != j):
        continue
      ys, xs = np.nonzero(mask[box[0]:box[2], box[1]:box[3]] == cls)
      assert (ys.min(), xs.min()) == (0, 0)
      assert (ys.max() + 1, xs.max() + 1) == (box[2] - box[0], box[3] - box[1])
      checked += 1
    assert not np.any(mask[~inside])  # no stroke pixel outside every box
  assert checked > 30


def test_val_pool_is_disjoint_from_train_pool():
  pools = digitscenes.digit_pools()
  train, val = pools['train'].indices, pools['val'].indices
  assert not set(train) & set(val)
  assert len(train) + len(val) == 1797
  assert val.min() > train.max()  # contiguous blocks, val = last 25%
  assert abs(len(val) / 1797 - 0.25) < 0.01
  assert set(pools['val'].labels.tolist()) == set(range(10))
  assert digitscenes.pool_for_split('val') is pools['val']
  assert digitscenes.pool_for_split('unlabeled') is pools['train']
  with pytest.raises(ValueError, match='unknown DigitScenes split'):
    digitscenes.pool_for_split('test')


def test_generate_writes_splits_metadata_and_coco(small_dir):
  meta = digitscenes.load_metadata(small_dir)
  assert meta['num_classes'] == 11 and meta['seed'] == 3
  assert meta['class_names'][1:] == [str(d) for d in range(10)]
  all_ids = set()
  assert meta['layout'] == 'v1'
  for split in digitscenes.get_layout('v1').splits:
    n = _SMALL[f'num_{split}']
    assert meta['splits'][split]['num_examples'] == n
    assert len(meta['splits'][split]['files']) == 2
    pattern = digitscenes.file_pattern(small_dir, split)
    assert len(tf.io.gfile.glob(pattern)) == 2
    with open(os.path.join(small_dir, f'{split}.json')) as f:
      coco = json.load(f)
    ids = {im['id'] for im in coco['images']}
    assert len(ids) == n and not ids & all_ids
    all_ids |= ids
    assert [c['id'] for c in coco['categories']] == list(range(1, 11))
    for ann in coco['annotations']:
      index = ann['image_id'] % digitscenes.SOURCE_ID_BLOCK
      _, boxes, classes, _ = digitscenes.scene_for(split, index, 3)
      y0, x0, y1, x1 = (boxes * 128).T
      expected = np.stack([x0, y0, x1 - x0, y1 - y0], -1)
      assert np.min(np.abs(expected - ann['bbox']).max(-1)) < 1e-3
      assert ann['category_id'] in classes.tolist() and ann['iscrowd'] == 0
      assert ann['area'] == pytest.approx(ann['bbox'][2] * ann['bbox'][3],
                                          abs=1e-2)
  assert not os.path.exists(os.path.join(small_dir, 'images'))
  assert digitscenes.is_complete(small_dir)
  assert digitscenes.is_complete(small_dir, num_labeled=5, seed=3)
  assert not digitscenes.is_complete(small_dir, num_labeled=6)
  assert not digitscenes.is_complete(small_dir, seed=0)


def test_records_decode_with_model_garden(small_dir):
  det = tf_example_decoder.TfExampleDecoder()
  seg = segmentation_input.Decoder()
  paths = tf.io.gfile.glob(digitscenes.file_pattern(small_dir, 'val'))
  raws = _records(sorted(paths))
  assert len(raws) == 3
  for raw in raws:
    d = det.decode(tf.constant(raw))
    index = int(d['source_id'].numpy()) - 3 * digitscenes.SOURCE_ID_BLOCK
    image, boxes, classes, mask = digitscenes.scene_for('val', index, 3)
    assert d['image'].shape == (128, 128, 3)
    # JPEG (quality 95) is close to, not equal to, the generated image.
    diff = np.abs(d['image'].numpy().astype(int) - image.astype(int))
    assert diff.mean() < 8
    np.testing.assert_allclose(d['groundtruth_boxes'].numpy(), boxes,
                               atol=1e-6)
    np.testing.assert_array_equal(d['groundtruth_classes'].numpy(), classes)
    np.testing.assert_allclose(
        d['groundtruth_area'].numpy(),
        (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) * 128**2,
        rtol=1e-4)
    s = seg.decode(tf.constant(raw))
    label = tf.io.decode_png(s['image/segmentation/class/encoded'])
    np.testing.assert_array_equal(label.numpy()[..., 0], mask)
    assert s['image/height'].numpy() == 128


def test_output_does_not_depend_on_sharding(small_dir, tmp_path):
  digitscenes.generate(str(tmp_path), seed=3, num_shards=1, num_workers=1,
                       num_labeled=5, num_unlabeled=0, num_val=0)
  one = sorted(_records(tf.io.gfile.glob(
      digitscenes.file_pattern(str(tmp_path), 'labeled'))))
  two = sorted(_records(tf.io.gfile.glob(
      digitscenes.file_pattern(small_dir, 'labeled'))))
  assert one == two
  # A missing shard makes the dataset incomplete.
  os.remove(os.path.join(str(tmp_path), 'labeled-00000-of-00001.tfrecord'))
  assert not digitscenes.is_complete(str(tmp_path))
  assert not digitscenes.is_complete(str(tmp_path / 'nothing_here'))


def test_script_writes_all_splits(tmp_path):
  out = tmp_path / 'ds'
  result = subprocess.run(
      [sys.executable, os.path.join(_REPO, 'scripts', 'make_digitscenes.py'),
       f'--output_dir={out}', '--num_labeled=3', '--num_unlabeled=2',
       '--num_val=2', '--num_shards=1', '--write_images',
       '--num_classification=3', '--num_classification_val=2'],
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  assert result.returncode == 0, result.stderr[-2000:]
  assert f'DigitScenes written to {out}' in result.stdout
  assert digitscenes.is_complete(str(out), num_labeled=3, num_unlabeled=2,
                                 num_val=2)
  assert sorted(os.listdir(out / 'images' / 'val')) == ['000000.png',
                                                         '000001.png']
  # --num_classification also writes the pre-training parts.
  assert digitscenes_classification.is_classification_complete(
      str(out), num_train=3, num_val=2)


def test_layout_v2_pools_are_disjoint_and_unlabeled_is_larger():
  layout = digitscenes.get_layout('v2')
  assert layout.splits == ('labeled', 'unlabeled', 'val', 'test')
  pools = {s: set(digitscenes.pool_for_split(s, 'v2').indices.tolist())
           for s in layout.splits}
  for a in layout.splits:
    for b in layout.splits:
      if a < b:
        assert not pools[a] & pools[b], (a, b)
  assert len(pools['unlabeled']) >= 4 * len(pools['labeled'])
  assert layout.sizes['unlabeled'] >= 20 * layout.sizes['labeled']
  for split in layout.splits:  # every digit appears in every pool
    labels = digitscenes.pool_for_split(split, 'v2').labels
    assert set(labels.tolist()) == set(range(10)), split
  with pytest.raises(ValueError, match="unknown DigitScenes layout 'v3'"):
    digitscenes.get_layout('v3')


def test_layout_v2_generates_test_split(tmp_path):
  out = str(tmp_path)
  digitscenes.generate(out, layout='v2', num_labeled=2, num_unlabeled=3,
                       num_val=1, num_test=2, num_shards=1, num_workers=1)
  meta = digitscenes.load_metadata(out)
  assert meta['layout'] == 'v2'
  assert {s: meta['splits'][s]['num_examples'] for s in meta['splits']} == {
      'labeled': 2, 'unlabeled': 3, 'val': 1, 'test': 2}
  assert meta['splits']['test']['digit_pool'] == [1450, 1797]
  with open(os.path.join(out, 'test.json')) as f:
    ids = [im['id'] for im in json.load(f)['images']]
  assert ids == [4 * digitscenes.SOURCE_ID_BLOCK, 4 * digitscenes.SOURCE_ID_BLOCK + 1]
  assert digitscenes.is_complete(out, layout='v2', num_test=2)
  assert not digitscenes.is_complete(out, layout='v1')
  # The v2 unlabeled scenes draw only from the unlabeled pool.
  pool = digitscenes.pool_for_split('unlabeled', 'v2')
  image = digitscenes.scene_for('unlabeled', 0, 0, layout='v2')[0]
  assert image.shape == (128, 128, 3) and len(pool.labels) == 900
  with pytest.raises(ValueError, match="layout 'v1' has no split 'test'"):
    digitscenes.generate(out, num_test=1)


def test_ensure_refuses_to_overwrite_another_finished_copy(tmp_path):
  # A v1 request on a folder holding a finished copy of other sizes must not
  # regenerate over it (other runs read those records); the same request is
  # a no-op, and an unfinished copy is regenerated.
  out = str(tmp_path / 'ds')
  digitscenes.generate(out, num_labeled=3, num_unlabeled=2, num_val=1)
  shard = os.path.join(out, digitscenes.load_metadata(out)['splits'][
      'labeled']['files'][0])
  mtime = os.stat(shard).st_mtime_ns
  with pytest.raises(ValueError, match='another DigitScenes.*another '
                     'output_dir'):
    digitscenes.ensure_digitscenes(out, num_labeled=4, num_unlabeled=2,
                                   num_val=1)
  assert os.stat(shard).st_mtime_ns == mtime
  digitscenes.ensure_digitscenes(out, num_labeled=3, num_unlabeled=2,
                                 num_val=1)
  assert os.stat(shard).st_mtime_ns == mtime
  os.remove(shard)
  digitscenes.ensure_digitscenes(out, num_labeled=4, num_unlabeled=2,
                                 num_val=1)
  assert digitscenes.is_complete(out, num_labeled=4)
