"""Pseudo-label quality, segmentation ops and the output folder (no models)."""
import numpy as np
import pytest
import tensorflow as tf

from st_tf.pseudo_label import quality
from st_tf.pseudo_label import segmentation
from st_tf.pseudo_label import writer

_GT = {'gt_boxes': [[0, 0, 10, 10], [20, 20, 40, 40]], 'gt_classes': [1, 2]}


def test_precision_recall_at_thresholds():
  image = dict(_GT, boxes=[[0, 0, 10, 10], [0, 0, 9, 10], [20, 20, 40, 38],
                           [50, 50, 60, 60]],
               scores=[0.9, 0.8, 0.6, 0.35], classes=[1, 1, 1, 2])
  # At 0.5: box 0 matches GT 0; box 1 duplicates it; box 2 has the wrong
  # class. At 0.3 the extra box 3 is a false positive.
  result = quality.detection_quality([image], (0.3, 0.5, 0.95))
  assert result['0.5']['precision'] == pytest.approx(1 / 3)
  assert result['0.5']['recall'] == pytest.approx(0.5)
  assert result['0.3']['precision'] == pytest.approx(1 / 4)
  assert result['0.95'] == dict(precision=0.0, recall=0.0,
                                boxes_per_image=0.0, ap=0.0, ap50=0.0)


def test_perfect_pseudo_labels_have_ap_one():
  image = dict(_GT, boxes=_GT['gt_boxes'], scores=[0.9, 0.7],
               classes=_GT['gt_classes'])
  result = quality.detection_quality([image, image], (0.5,))['0.5']
  assert result['precision'] == result['recall'] == 1.0
  assert result['ap'] == pytest.approx(1.0)
  assert result['ap50'] == pytest.approx(1.0)


def test_segmentation_counts_and_quality():
  gt = np.array([[0, 1], [2, 255]], np.uint8)
  classes = np.array([[0, 1], [1, 2]])
  confidence = np.array([[0.9, 0.4], [0.8, 0.9]])
  counts = quality.segmentation_counts(gt, confidence, classes, 3, (0.3, 0.5))
  summed = quality.add_counts(counts, counts)
  result = quality.segmentation_quality(summed)
  assert result['0.3']['coverage'] == pytest.approx(1.0)
  assert result['0.3']['pixel_accuracy'] == pytest.approx(2 / 3)
  assert result['0.5']['coverage'] == pytest.approx(2 / 3)
  assert result['0.5']['pixel_accuracy'] == pytest.approx(0.5)


def test_label_map_flip_average_and_crop():
  probs = tf.constant(np.random.default_rng(0).dirichlet(
      np.ones(3), size=(1, 4, 6)), tf.float32)
  averaged = segmentation.average_flipped(probs, tf.image.flip_left_right(
      probs))
  np.testing.assert_allclose(averaged, probs, atol=1e-6)
  maps = segmentation.confidence_and_class(probs)[0].numpy()
  label = segmentation.label_map(maps[..., 0], maps[..., 1].astype(int), 0.5)
  top = probs[0].numpy().max(-1)
  np.testing.assert_array_equal(label == 255, top < 0.5)
  np.testing.assert_array_equal(
      label[top >= 0.5], probs[0].numpy().argmax(-1)[top >= 0.5])
  # A 2x3 image scaled x2 into the padded 4x6 frame maps back to 2x3.
  info = np.array([[2, 3], [4, 6], [2, 2], [0, 0]], np.float32)
  padded = np.zeros([8, 8, 2], np.float32)
  assert segmentation.to_original(padded, info).shape == (2, 3, 2)


def test_failed_shard_leaves_nothing(tmp_path):
  out = str(tmp_path)
  folder = writer.OutputFolder(out, teacher_id='t', task='detection',
                               settings={'a': 1}, shard_index=0, num_shards=1)
  with pytest.raises(RuntimeError):
    with folder.shard('pseudo-x.tfrecord', {}) as shard:
      shard.write(tf.train.Example(), {1: 2})
      raise RuntimeError('crash')
  assert not list(tmp_path.iterdir())
  assert not folder.is_done('pseudo-x.tfrecord')
