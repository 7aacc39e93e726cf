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
  # A 2x3 image scaled x2 (4x6) into an 8x8 padded frame maps back to 2x3.
  # Model Garden's image_info row 1 is the desired (padded) size, 8x8.
  info = np.array([[2, 3], [8, 8], [2, 2], [0, 0]], np.float32)
  padded = np.full([8, 8, 2], -1.0, np.float32)
  padded[:4, :6] = 1.0
  back = segmentation.to_original(padded, info)
  assert back.shape == (2, 3, 2)
  np.testing.assert_array_equal(back, np.ones([2, 3, 2], np.float32))


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


def _full_coco_ap(images, threshold):
  """AP / AP50 from COCOeval with its default parameters (all 4 areas)."""
  import contextlib  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  from pycocotools import coco  # pylint: disable=g-import-not-at-top
  from pycocotools import cocoeval  # pylint: disable=g-import-not-at-top
  gt = {'images': [{'id': i} for i in range(1, len(images) + 1)],
        'annotations': [], 'categories': [{'id': c} for c in range(1, 4)]}
  dets = []
  xywh = lambda b: [b[1], b[0], b[3] - b[1], b[2] - b[0]]
  for i, image in enumerate(images, start=1):
    for box, cls in zip(image['gt_boxes'], image['gt_classes']):
      gt['annotations'].append({
          'id': len(gt['annotations']) + 1, 'image_id': i, 'iscrowd': 0,
          'category_id': cls, 'bbox': xywh(box),
          'area': (box[2] - box[0]) * (box[3] - box[1])})
    dets += [{'image_id': i, 'category_id': c, 'bbox': xywh(b), 'score': s}
             for b, s, c in zip(image['boxes'], image['scores'],
                                image['classes']) if s >= threshold]
  with contextlib.redirect_stdout(io.StringIO()):
    ground_truth = coco.COCO()
    ground_truth.dataset = gt
    ground_truth.createIndex()
    evaluator = cocoeval.COCOeval(ground_truth, ground_truth.loadRes(dets),
                                  'bbox')
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
  return {'ap': evaluator.stats[0], 'ap50': evaluator.stats[1]}


def test_coco_ap_equals_cocoeval_with_every_area_range():
  rng = np.random.default_rng(0)
  images = []
  for _ in range(12):  # Small (< 32^2 px), medium and large boxes.
    gt = [[y, x, y + h, x + w] for y, x, h, w in
          rng.uniform([0, 0, 4, 4], [100, 100, 120, 120], [3, 4]).tolist()]
    noisy = (np.array(gt) + rng.normal(0, 4, [3, 4])).tolist()
    images.append({'gt_boxes': gt, 'gt_classes': [1, 2, 3],
                   'boxes': noisy + [[0, 0, 30, 30]],
                   'scores': rng.uniform(0.2, 1, 4).tolist(),
                   'classes': [1, 2, int(rng.integers(1, 4)), 1]})
  for threshold in (0.3, 0.6):
    want = _full_coco_ap(images, threshold)
    got = quality.coco_ap(images, threshold)
    assert 0 < got['ap'] < 1
    assert got == pytest.approx(want, abs=0, rel=0)


def test_label_map_class_thresholds_balance_background_and_digits():
  confidence = np.array([[0.95, 0.6], [0.6, 0.35]], np.float32)
  classes = np.array([[0, 0], [3, 3]])
  plain = segmentation.label_map(confidence, classes, 0.5)
  np.testing.assert_array_equal(plain, [[0, 0], [3, 255]])
  balanced = segmentation.label_map(confidence, classes, 0.3, {0: 0.9})
  np.testing.assert_array_equal(balanced, [[0, 255], [3, 3]])
