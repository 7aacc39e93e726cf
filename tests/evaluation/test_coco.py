"""COCO evaluation: box mapping, AP vs pycocotools, end to end on a tiny model."""
import json

import numpy as np
from pycocotools import coco as pycoco
from pycocotools import cocoeval
import pytest
import tensorflow as tf

from st_tf.evaluation import coco
from tests.evaluation import tiny_models

# (image id, height, width, y_scale, x_scale, y_offset, x_offset)
_IMAGES = [(11, 200, 160, 0.32, 0.32, 0.0, 0.0),
           (12, 100, 120, 0.5, 0.5, 0.0, 0.0),
           (13, 90, 90, 0.8, 0.8, 3.0, 5.0)]
_K = 8  # detections per image (padded)


def _scene(seed=0):
  """GT boxes (pixel yxyx) per image, and noisy detections with FPs/misses."""
  rng = np.random.RandomState(seed)
  gts, dets = {}, {}
  for image_id, h, w, *_ in _IMAGES:
    sizes = [18, 40, 110 if h >= 150 else 50]
    boxes, classes = [], []
    for s in sizes:
      y, x = rng.uniform(0, h - s), rng.uniform(0, min(w, h) - s)
      boxes.append([y, x, y + s, x + s])
      classes.append(int(rng.randint(1, 3)))
    boxes = np.array(boxes, np.float32)
    gts[image_id] = (boxes, np.array(classes))
    det_boxes, det_classes, det_scores = [], [], []
    for i, (box, cls) in enumerate(zip(boxes, classes)):
      if i == 0 and image_id == 12:
        continue  # a miss
      jitter = rng.uniform(-0.15, 0.15, 4) * (box[2] - box[0])
      det_boxes.append(np.clip(box + jitter, 0, [h, w, h, w]))
      det_classes.append(cls)
      det_scores.append(rng.uniform(0.3, 1.0))
    for _ in range(2):  # false positives
      y, x = rng.uniform(0, h - 20), rng.uniform(0, w - 20)
      det_boxes.append([y, x, y + 20, x + 20])
      det_classes.append(int(rng.randint(1, 3)))
      det_scores.append(rng.uniform(0.3, 1.0))
    dets[image_id] = (np.array(det_boxes, np.float32), np.array(det_classes),
                      np.array(det_scores, np.float32))
  return gts, dets


def _gt_json(gts, path):
  images, anns = [], []
  for image_id, h, w, *_ in _IMAGES:
    images.append({'id': image_id, 'height': h, 'width': w})
    for box, cls in zip(*gts[image_id]):
      ymin, xmin, ymax, xmax = (float(v) for v in box)
      anns.append({'id': len(anns) + 1, 'image_id': image_id,
                   'category_id': int(cls), 'iscrowd': 0,
                   'bbox': [xmin, ymin, xmax - xmin, ymax - ymin],
                   'area': (xmax - xmin) * (ymax - ymin)})
  with open(path, 'w') as f:
    json.dump({'images': images, 'annotations': anns,
               'categories': [{'id': 1}, {'id': 2}]}, f)


def _batch(rows, gts, dets):
  """Model-frame detections + image_info + MG groundtruths for `rows`."""
  b = len(rows)
  boxes = np.zeros([b, _K, 4], np.float32)
  scores = np.zeros([b, _K], np.float32)
  classes = np.zeros([b, _K], np.int32)
  num = np.zeros([b], np.int32)
  info = np.zeros([b, 4, 2], np.float32)
  gt_boxes = np.zeros([b, 4, 4], np.float32)
  gt_classes = np.zeros([b, 4], np.int64)
  gt_num = np.zeros([b], np.int32)
  for i, (image_id, h, w, sy, sx, oy, ox) in enumerate(rows):
    info[i] = [[h, w], [h * sy, w * sx], [sy, sx], [oy, ox]]
    d_boxes, d_classes, d_scores = dets[image_id]
    n = len(d_boxes)
    # Into the parser frame: scaled = original * scale - offset.
    boxes[i, :n] = d_boxes * [sy, sx, sy, sx] - [oy, ox, oy, ox]
    scores[i, :n], classes[i, :n], num[i] = d_scores, d_classes, n
    g_boxes, g_classes = gts[image_id]
    gt_boxes[i, :len(g_boxes)] = g_boxes
    gt_classes[i, :len(g_boxes)] = g_classes
    gt_num[i] = len(g_boxes)
  areas = (gt_boxes[..., 2] - gt_boxes[..., 0]) * (
      gt_boxes[..., 3] - gt_boxes[..., 1])
  ids = np.array([r[0] for r in rows], np.int64)
  groundtruths = {
      'source_id': ids, 'height': np.array([r[1] for r in rows]),
      'width': np.array([r[2] for r in rows]), 'num_detections': gt_num,
      'boxes': gt_boxes, 'classes': gt_classes, 'areas': areas,
      'is_crowds': np.zeros([b, 4], np.int32)}
  detections = {'detection_boxes': boxes, 'detection_scores': scores,
                'detection_classes': classes, 'num_detections': num}
  return ids, info, detections, groundtruths


def test_boxes_to_original_pixels_inverts_scale_and_offset():
  info = np.array([[[100, 80], [50, 40], [0.5, 0.5], [2, 4]]], np.float32)
  boxes = np.array([[[8, 6, 18, 26], [40, 30, 80, 90]]], np.float32)
  out = coco.boxes_to_original_pixels(boxes, info)
  np.testing.assert_allclose(out[0, 0], [20, 20, 40, 60])
  np.testing.assert_allclose(out[0, 1], [84, 68, 100, 80])  # clipped
  with pytest.raises(ValueError, match='image_info'):
    coco.boxes_to_original_pixels(boxes, info[:, :3])


@pytest.mark.parametrize('use_annotation_file', [True, False])
def test_ap_matches_pycocotools(tmp_path, use_annotation_file):
  gts, dets = _scene()
  gt_path = str(tmp_path / 'gt.json')
  _gt_json(gts, gt_path)
  evaluator = coco.CocoDetectionEvaluator(
      gt_path if use_annotation_file else None, per_category_metrics=True)
  for rows in (_IMAGES[:2], _IMAGES[2:]):
    ids, info, detections, groundtruths = _batch(rows, gts, dets)
    evaluator.update_state(ids, info, detections, groundtruths)
  ours = evaluator.result()
  res_path = evaluator.write_results_json(str(tmp_path / 'dets.json'))

  results = json.load(open(res_path))
  assert len(results) == sum(len(d[0]) for d in dets.values())
  first = results[0]
  ymin, xmin, ymax, xmax = dets[11][0][0]
  np.testing.assert_allclose(first['bbox'], [xmin, ymin, xmax - xmin,
                                             ymax - ymin], atol=1e-3)
  assert first['image_id'] == 11 and first['category_id'] == dets[11][1][0]

  coco_gt = pycoco.COCO(gt_path)
  ref = cocoeval.COCOeval(coco_gt, coco_gt.loadRes(res_path), 'bbox')
  ref.evaluate()
  ref.accumulate()
  ref.summarize()
  names = ['AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'ARmax1', 'ARmax10',
           'ARmax100', 'ARs', 'ARm', 'ARl']
  for name, value in zip(names, ref.stats):
    assert ours[name] == pytest.approx(value, abs=1e-6), name
  assert 0.2 < ours['AP'] < 0.9
  assert min(ours['APs'], ours['APm'], ours['APl']) >= 0.0
  # Per category: pycocotools' AP restricted to that category.
  assert {k for k in ours if k.startswith('AP/')} == {'AP/1', 'AP/2'}
  for category_id in (1, 2):
    one = cocoeval.COCOeval(coco_gt, coco_gt.loadRes(res_path), 'bbox')
    one.params.catIds = [category_id]
    one.evaluate()
    one.accumulate()
    one.summarize()
    assert ours[f'AP/{category_id}'] == pytest.approx(one.stats[0], abs=1e-6)
  assert ours['AP/1'] != pytest.approx(ours['AP/2'])


def test_missing_annotation_file_and_empty_eval(tmp_path):
  with pytest.raises(FileNotFoundError, match='nope.json'):
    coco.CocoDetectionEvaluator(str(tmp_path / 'nope.json'))
  with pytest.raises(ValueError, match='empty'):
    coco.CocoDetectionEvaluator().result()


def test_evaluate_detection_tiny_retinanet(tmp_path):
  model = tiny_models.tiny_retinanet(num_classes=4, size=64)
  rng = np.random.RandomState(1)
  images = rng.randint(0, 255, [4, 64, 64, 3]).astype(np.uint8)
  # Originals of 128 x 96 scaled by 0.5 into the 64 x 64 frame.
  info = np.tile(np.array([[[128, 96], [64, 48], [0.5, 0.5], [0, 0]]],
                          np.float32), [4, 1, 1])
  gt_boxes = np.tile(np.array([[[10, 10, 60, 50], [70, 20, 120, 90]]],
                              np.float32), [4, 1, 1])
  labels = {
      'image_info': info,
      'groundtruths': {
          'source_id': np.array([1, 2, 3, 4], np.int64),
          'height': np.full([4], 128), 'width': np.full([4], 96),
          'num_detections': np.full([4], 2, np.int32), 'boxes': gt_boxes,
          'classes': np.array([[1, 2]] * 4, np.int64),
          'areas': np.full([4, 2], 2000.0, np.float32),
          'is_crowds': np.zeros([4, 2], np.int32)}}
  dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2)
  metrics = coco.evaluate_detection(model, dataset, output_dir=str(tmp_path))
  assert {'AP', 'AP50', 'AP75', 'APs', 'APm', 'APl'} <= set(metrics)
  # Per-category AP of the ground-truth categories (1, 2) only.
  assert {k for k in metrics if k.startswith('AP/')} == {'AP/1', 'AP/2'}
  assert all(0.0 <= metrics[k] <= 1.0 for k in ('AP/1', 'AP/2'))
  assert all(np.isfinite(v) for v in metrics.values())
  results = json.load(open(tmp_path / 'detections.json'))
  assert results and {r['image_id'] for r in results} == {1, 2, 3, 4}
  for r in results:
    x, y, w, h = r['bbox']
    assert 0 <= x and x + w <= 96 + 1e-3 and 0 <= y and y + h <= 128 + 1e-3
    assert 1 <= r['category_id'] <= 3


def test_unknown_image_id_names_annotation_file(tmp_path):
  gts, dets = _scene()
  gt_path = str(tmp_path / 'gt.json')
  _gt_json(gts, gt_path)
  evaluator = coco.CocoDetectionEvaluator(gt_path)
  ids, info, detections, groundtruths = _batch(_IMAGES[:1], gts, dets)
  evaluator.update_state(ids + 1000, info, detections, groundtruths)
  with pytest.raises(ValueError, match='gt.json'):
    evaluator.result()
