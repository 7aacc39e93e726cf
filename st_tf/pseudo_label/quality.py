"""Quality of pseudo labels against ground truth (when the records hold it).

Detection: at each score threshold t, the teacher boxes with score >= t are
matched greedily (by decreasing score) to unmatched ground-truth boxes of the
same class with IoU >= 0.5: precision = TP / kept, recall = TP / GT; AP and
AP50 come from pycocotools' COCOeval over the same boxes.

Segmentation: at each pixel threshold t, pixels with top probability >= t
are labeled; over pixels whose ground truth is not 255: coverage (fraction
labeled), pixel accuracy and mean IoU of the labeled pixels, from confusion
matrices that are summed over shards.

Boxes here are PIXEL ``[ymin, xmin, ymax, xmax]`` of the original image.
"""
from __future__ import annotations

import contextlib
import io
from typing import Dict, List, Mapping, Sequence

import numpy as np

DEFAULT_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MATCH_IOU = 0.5


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU matrix [N, M] of pixel yxyx boxes a [N, 4] and b [M, 4]."""
  a = np.asarray(a, np.float64).reshape(-1, 4)
  b = np.asarray(b, np.float64).reshape(-1, 4)
  ih = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) -
               np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
  iw = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) -
               np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
  inter = ih * iw
  area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
  union = area(a)[:, None] + area(b)[None, :] - inter
  return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match(image: Mapping[str, Sequence], threshold: float,
          iou: float = MATCH_IOU) -> Dict[str, int]:
  """TP / kept / GT counts of one image's detections at `threshold`.

  Args:
    image: 'gt_boxes' [G, 4], 'gt_classes' [G], 'boxes' [K, 4], 'scores'
      [K], 'classes' [K] (pixel yxyx, class ids >= 1).
    threshold: keep detections with score >= threshold.
    iou: minimum IoU of a match.
  """
  scores = np.asarray(image['scores'], np.float64).reshape(-1)
  keep = np.flatnonzero(scores >= threshold)
  keep = keep[np.argsort(-scores[keep], kind='stable')]
  boxes = np.asarray(image['boxes'], np.float64).reshape(-1, 4)[keep]
  classes = np.asarray(image['classes']).reshape(-1)[keep]
  gt_boxes = np.asarray(image['gt_boxes'], np.float64).reshape(-1, 4)
  gt_classes = np.asarray(image['gt_classes']).reshape(-1)
  ious = box_iou(boxes, gt_boxes)
  used = np.zeros(len(gt_boxes), bool)
  tp = 0
  for i in range(len(boxes)):
    cand = np.where((gt_classes == classes[i]) & ~used, ious[i], -1.0)
    if cand.size and cand.max() >= iou:
      used[int(np.argmax(cand))] = True
      tp += 1
  return {'tp': tp, 'kept': len(boxes), 'gt': len(gt_boxes)}


def coco_ap(images: Sequence[Mapping[str, Sequence]],
            threshold: float) -> Dict[str, float]:
  """COCO AP and AP50 of the detections with score >= threshold."""
  from pycocotools import coco  # pylint: disable=g-import-not-at-top
  from pycocotools import cocoeval  # pylint: disable=g-import-not-at-top
  gt = {'images': [], 'annotations': [], 'categories': []}
  dets, cats = [], set()
  for image_id, image in enumerate(images, start=1):
    gt['images'].append({'id': image_id})
    for box, cls in zip(np.reshape(image['gt_boxes'], (-1, 4)),
                        np.reshape(image['gt_classes'], -1)):
      y0, x0, y1, x1 = (float(v) for v in box)
      gt['annotations'].append({
          'id': len(gt['annotations']) + 1, 'image_id': image_id,
          'category_id': int(cls), 'bbox': [x0, y0, x1 - x0, y1 - y0],
          'area': (x1 - x0) * (y1 - y0), 'iscrowd': 0})
      cats.add(int(cls))
    for box, score, cls in zip(np.reshape(image['boxes'], (-1, 4)),
                               np.reshape(image['scores'], -1),
                               np.reshape(image['classes'], -1)):
      if score >= threshold:
        y0, x0, y1, x1 = (float(v) for v in box)
        dets.append({'image_id': image_id, 'category_id': int(cls),
                     'bbox': [x0, y0, x1 - x0, y1 - y0],
                     'score': float(score)})
        cats.add(int(cls))
  if not gt['annotations'] or not dets:
    return {'ap': 0.0, 'ap50': 0.0}
  gt['categories'] = [{'id': c} for c in sorted(cats)]
  with contextlib.redirect_stdout(io.StringIO()):
    ground_truth = coco.COCO()
    ground_truth.dataset = gt
    ground_truth.createIndex()
    evaluator = cocoeval.COCOeval(ground_truth, ground_truth.loadRes(dets),
                                  'bbox')
    # AP and AP50 are over all areas: skip the small / medium / large
    # matching (3 of COCOeval's 4 passes; same AP, ~3x faster).
    evaluator.params.areaRng = evaluator.params.areaRng[:1]
    evaluator.params.areaRngLbl = evaluator.params.areaRngLbl[:1]
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
  return {'ap': max(float(evaluator.stats[0]), 0.0),
          'ap50': max(float(evaluator.stats[1]), 0.0)}


def detection_quality(images: Sequence[Mapping[str, Sequence]],
                      thresholds: Sequence[float] = DEFAULT_THRESHOLDS
                      ) -> Dict[str, Dict[str, float]]:
  """{str(threshold): precision, recall, ap, ap50, boxes_per_image}."""
  out = {}
  for t in thresholds:
    counts = [match(image, t) for image in images]
    tp = sum(c['tp'] for c in counts)
    kept = sum(c['kept'] for c in counts)
    num_gt = sum(c['gt'] for c in counts)
    out[f'{t:g}'] = dict(
        precision=tp / kept if kept else 0.0,
        recall=tp / num_gt if num_gt else 0.0,
        boxes_per_image=kept / max(len(images), 1),
        **coco_ap(images, t))
  return out


def segmentation_counts(gt: np.ndarray, confidence: np.ndarray,
                        classes: np.ndarray, num_classes: int,
                        thresholds: Sequence[float] = DEFAULT_THRESHOLDS
                        ) -> Dict[str, List[List[int]]]:
  """Per threshold, the confusion matrix [C, C] (rows GT, cols pseudo) of
  labeled pixels plus, in an extra last row, [valid GT pixels, 0, ...].

  Args:
    gt: uint8 [H, W] ground-truth class map (255 = ignore).
    confidence: float [H, W] top probability; classes: int [H, W] argmax.
    num_classes: C.
    thresholds: pixel thresholds.
  """
  gt = np.asarray(gt).reshape(-1).astype(np.int64)
  cls = np.asarray(classes).reshape(-1).astype(np.int64)
  conf = np.asarray(confidence).reshape(-1)
  valid = (gt < num_classes) & (cls < num_classes)
  out = {}
  for t in thresholds:
    sel = valid & (conf >= t)
    matrix = np.bincount(gt[sel] * num_classes + cls[sel],
                         minlength=num_classes**2).reshape(
                             num_classes, num_classes)
    extra = np.zeros([1, num_classes], np.int64)
    extra[0, 0] = int((gt < num_classes).sum())
    out[f'{t:g}'] = np.concatenate([matrix, extra]).tolist()
  return out


def add_counts(a: Mapping[str, list], b: Mapping[str, list]) -> Dict[str, list]:
  """Sums two `segmentation_counts` results."""
  if not a:
    return dict(b)
  return {k: (np.asarray(a[k]) + np.asarray(b[k])).tolist() for k in a}


def segmentation_quality(counts: Mapping[str, list]
                         ) -> Dict[str, Dict[str, float]]:
  """{str(threshold): coverage, pixel_accuracy, miou} from summed counts."""
  out = {}
  for t, value in counts.items():
    value = np.asarray(value, np.float64)
    matrix, num_valid = value[:-1], value[-1, 0]
    labeled = matrix.sum()
    tp = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - tp
    present = union > 0
    out[t] = {
        'coverage': labeled / num_valid if num_valid else 0.0,
        'pixel_accuracy': tp.sum() / labeled if labeled else 0.0,
        'miou': float(np.mean(tp[present] / union[present]))
                if present.any() else 0.0}
  return out
