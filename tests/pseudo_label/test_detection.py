"""Detection pseudo-label ops: cheap NMS == default NMS, selection, flip merge."""
import numpy as np
import pytest
import tensorflow as tf

from st_tf.datasets.digitscenes import scenes as digitscenes
from st_tf.evaluation import coco
from st_tf.pseudo_label import detection
from st_tf.pseudo_label import teacher as teacher_lib
from tests.pseudo_label import tiny


def _kept(dets, i, threshold):
  num = int(dets['num'][i])
  return detection.select_boxes(
      dets['boxes'][i, :num].numpy(), dets['scores'][i, :num].numpy(),
      dets['classes'][i, :num].numpy(),
      detection.BoxSelection(threshold, max_boxes=100))


def test_cheap_generator_keeps_the_default_nms_boxes():
  model = tiny.detection_model()
  network = model.network
  images = np.stack([digitscenes.scene_for('unlabeled', i, 0, tiny.SIZE)[0]
                     for i in range(4)])
  # The eval path: Model Garden's default generator (v2, 0.05, top-k 1000).
  default = tiny.detection_model(
      nms_version='v2', pre_nms_score_threshold=0.05, pre_nms_top_k=1000,
      max_num_detections=100)
  default.set_weights(model.get_weights())
  # image_shape: boxes clipped to the image before NMS, as in `generate`.
  ref = default(tf.constant(images), training=False,
                image_shape=tf.constant([[tiny.SIZE, tiny.SIZE]] * 4,
                                        tf.float32))
  ref = {'boxes': ref['detection_boxes'], 'scores': ref['detection_scores'],
         'classes': ref['detection_classes'], 'num': ref['num_detections']}
  # The pseudo-label path: raw head outputs + batched NMS from 0.3.
  raw = teacher_lib.retinanet_raw_outputs(network, tf.constant(images))
  cheap = detection.generate(detection.make_generator(0.3), raw,
                             network.get_config(), (tiny.SIZE, tiny.SIZE))
  total = 0
  for i in range(len(images)):
    a, b = _kept(cheap, i, 0.5), _kept(ref, i, 0.5)
    assert len(a[0]) == len(b[0])
    total += len(a[0])
    # Same set of (class, box, score), compared after sorting.
    key = lambda k: np.lexsort((k[0][:, 1], k[0][:, 0], k[2]))
    ia, ib = key(a), key(b)
    np.testing.assert_array_equal(a[2][ia], b[2][ib])
    np.testing.assert_allclose(a[0][ia], b[0][ib], atol=1e-3)
    np.testing.assert_allclose(a[1][ia], b[1][ib], atol=1e-5)
  assert total >= 20  # The comparison covers a real NMS load.


def test_select_boxes_thresholds_size_and_count():
  boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 2, 10],
                    [5, 5, 30, 30], [1, 1, 20, 20]], np.float32)
  scores = np.array([0.9, 0.45, 0.95, 0.6, 0.7], np.float32)
  classes = np.array([1, 2, 1, 3, 3])
  selection = detection.BoxSelection(0.5, {2: 0.4, 3: 0.65}, min_box_size=3,
                                     max_boxes=5)
  kept_boxes, kept_scores, kept_classes = detection.select_boxes(
      boxes, scores, classes, selection)
  # Box 2 too thin (2 px), box 3 below its class threshold 0.65.
  np.testing.assert_allclose(kept_scores, [0.9, 0.7, 0.45])
  np.testing.assert_array_equal(kept_classes, [1, 3, 2])
  assert kept_boxes.shape == (3, 4)
  capped = detection.select_boxes(
      boxes, scores, classes, detection.BoxSelection(0.0, max_boxes=2))
  np.testing.assert_allclose(capped[1], [0.95, 0.9])
  low = detection.select_boxes(boxes, scores, classes, selection,
                               score_threshold=0.3)
  assert len(low[1]) == 4  # Per-class thresholds ignored; thin box dropped.


@pytest.mark.parametrize('value', [-0.1, 1.5, float('nan')])
def test_thresholds_outside_unit_interval_fail(value):
  with pytest.raises(ValueError, match='score_threshold'):
    detection.BoxSelection(value)
  with pytest.raises(ValueError, match=r'class_thresholds\[3\]'):
    detection.BoxSelection(0.5, {3: value})


def test_merge_flipped_removes_the_mirrored_duplicate():
  width = 64
  dets = {'boxes': tf.constant([[[10., 4., 30., 20.], [0., 0., 0., 0.]]]),
          'scores': tf.constant([[0.8, 0.0]]),
          'classes': tf.constant([[2, 0]], tf.int32),
          'num': tf.constant([1], tf.int32)}
  # The same object seen in the flipped image (x -> 64 - x), plus another.
  flipped = {'boxes': tf.constant([[[10., 44., 30., 60.],
                                    [40., 40., 60., 60.]]]),
             'scores': tf.constant([[0.7, 0.6]]),
             'classes': tf.constant([[2, 5]], tf.int32),
             'num': tf.constant([2], tf.int32)}
  out = detection.merge_flipped(dets, flipped, width, num_classes=11)
  num = int(out['num'][0])
  assert num == 2
  np.testing.assert_allclose(out['scores'][0, :num], [0.8, 0.6])
  np.testing.assert_array_equal(out['classes'][0, :num], [2, 5])
  np.testing.assert_allclose(out['boxes'][0, 1], [40., 4., 60., 24.])


def test_select_in_graph_matches_select_boxes():
  rng = np.random.default_rng(3)
  b, k = 3, 12
  yx = rng.uniform(0, 50, [b, k, 2]).astype(np.float32)
  hw = rng.uniform(0.5, 30, [b, k, 2]).astype(np.float32)
  dets = {'boxes': tf.constant(np.concatenate([yx, yx + hw], -1)),
          'scores': tf.constant(rng.uniform(0, 1, [b, k]).astype(np.float32)),
          'classes': tf.constant(rng.integers(1, 5, [b, k]), tf.int32),
          'num': tf.constant([12, 7, 0], tf.int32)}
  # Image 0 kept its size, 1 was downscaled 2x, 2 upscaled (padded input).
  info = tf.constant([[[64, 64], [64, 64], [1, 1], [0, 0]],
                      [[128, 100], [64, 50], [.5, .5], [0, 0]],
                      [[32, 40], [51.2, 64], [1.6, 1.6], [0, 0]]], tf.float32)
  selection = detection.BoxSelection(0.4, {2: 0.7, 9: 0.1}, min_box_size=4,
                                     max_boxes=5)
  out = {key: v.numpy() for key, v in detection.select_in_graph(
      dets, info, selection, quality_threshold=0.2).items()}
  original = coco.boxes_to_original_pixels(dets['boxes'].numpy(),
                                           info.numpy())
  for i in range(b):
    num = int(dets['num'][i])
    args = (original[i, :num], dets['scores'][i, :num].numpy(),
            dets['classes'][i, :num].numpy(), selection)
    want = detection.select_boxes(*args)
    kept = int(out['num_kept'][i])
    np.testing.assert_allclose(out['boxes'][i, :kept], want[0], rtol=1e-6)
    np.testing.assert_array_equal(out['scores'][i, :kept], want[1])
    np.testing.assert_array_equal(out['classes'][i, :kept], want[2])
    size = info.numpy()[i, 0]
    np.testing.assert_allclose(out['normalized'][i, :kept],
                               want[0] / np.tile(size, 2), rtol=1e-6)
    low = detection.select_boxes(*args, score_threshold=0.2)
    rows = out['quality'][i]
    order = np.argsort(-out['scores'][i][rows], kind='stable')
    np.testing.assert_array_equal(out['scores'][i][rows][order], low[1])
    np.testing.assert_array_equal(out['classes'][i][rows][order], low[2])
  assert out['num_kept'].tolist()[2] == 0 and out['num_kept'].sum() > 3
