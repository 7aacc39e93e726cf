"""COCO box AP for detection models, through Model Garden's COCOEvaluator.

The model sees images resized (and possibly cropped/padded) by the parser, so
its detections are pixel ``[ymin, xmin, ymax, xmax]`` boxes in that padded
input frame. Before scoring they are mapped back to original-image pixels with
the parser's `image_info` ``[B, 4, 2]`` =
``[[orig_h, orig_w], [desired_h, desired_w], [y_scale, x_scale],
[y_offset, x_offset]]``: ``original = (box + offset) / scale``, clipped to the
original image. (Model Garden's RetinaNetTask divides by the scale only; the
offset is 0 in eval, and the clip only trims boxes spilling into padding.)

Ground truth comes from a COCO annotation JSON when one is given (DigitScenes
writes one per split; image ids = the records' integer `source_id`), else from
the `groundtruths` dict the Model Garden eval parser puts in the labels.

Per class: `evaluate_detection` also returns ``'AP/<category id>'``, each
category's COCO AP@[.5:.95] (in [0, 1]; all areas, at most
`max_num_eval_detections` detections per image), read from the same
pycocotools run's ``eval['precision']`` (`per_category_ap`). Categories
without a ground-truth box in the evaluated images have no entry.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Mapping, Optional

from absl import logging
import gin
import numpy as np
import tensorflow as tf
import tf_keras
from official.vision.evaluation import coco_evaluator

from st_tf import atomic_io
from st_tf.ops import image_info as image_info_ops

DETECTION_KEYS = ('detection_boxes', 'detection_scores', 'detection_classes',
                  'num_detections')
# Class id given to padded detections (k >= num_detections): no COCO category
# has it, so COCOeval never matches or counts them.
_INVALID_CLASS = -1
# Key prefix of the per-category APs: 'AP/<category id>'.
PER_CLASS_PREFIX = 'AP/'


def boxes_to_original_pixels(boxes: np.ndarray,
                             image_info: np.ndarray) -> np.ndarray:
  """Maps boxes from the parser's padded input frame to original pixels.

  Args:
    boxes: float ``[B, K, 4]`` pixel yxyx boxes in the model input frame.
    image_info: float ``[B, 4, 2]`` Model Garden image info (see module doc).

  Returns:
    float32 ``[B, K, 4]`` pixel yxyx boxes in the original image, clipped to
    ``[0, orig_h] x [0, orig_w]``.
  """
  boxes = np.asarray(boxes, np.float32)
  image_info = np.asarray(image_info, np.float32)
  if boxes.ndim != 3 or boxes.shape[-1] != 4:
    raise ValueError(f'boxes must be [B, K, 4], got shape {boxes.shape}')
  if image_info.shape != (boxes.shape[0], 4, 2):
    raise ValueError(f'image_info must be [{boxes.shape[0]}, 4, 2], got '
                     f'shape {image_info.shape}')
  return image_info_ops.boxes_to_original(boxes, image_info).numpy()


def _to_numpy(tree: Any) -> Any:
  return tf.nest.map_structure(
      lambda x: x.numpy() if hasattr(x, 'numpy') else np.asarray(x), tree)


def per_category_ap(coco_eval: Any) -> Dict[str, np.float32]:
  """Per-category COCO AP of an accumulated pycocotools `COCOeval`.

  Averages ``eval['precision']`` ``[T IoUs, R recalls, K categories, A
  areas, M maxDets]`` over IoUs 0.5:0.95 and recalls for area 'all' and the
  largest maxDets (as `summarize()` does for 'AP', one category at a time),
  skipping the -1 entries (no ground truth).

  Returns:
    {'AP/<category id>': AP in [0, 1]} for every category with ground truth.
  """
  precision = coco_eval.eval['precision']
  area = list(coco_eval.params.areaRngLbl).index('all')
  out = {}
  for k, category_id in enumerate(coco_eval.params.catIds):
    values = precision[:, :, k, area, -1]  # -1: maxDets[2], the largest.
    values = values[values > -1]
    if values.size:
      out[f'{PER_CLASS_PREFIX}{int(category_id)}'] = np.float32(values.mean())
  return out


class _PerCategoryCOCOEvaluator(coco_evaluator.COCOEvaluator):
  """Model Garden's COCOEvaluator with per-category APs that stock
  pycocotools gives (MG reads `COCOeval.category_stats`, which only a
  patched COCOeval has, and returns nothing per category without it)."""

  def _retrieve_per_category_metrics(self, coco_eval, prefix=''):
    del prefix  # Boxes only: no mask or keypoint eval here.
    return per_category_ap(coco_eval)


class CocoDetectionEvaluator:
  """Accumulates detections and ground truth; computes COCO box metrics.

  Also keeps the valid detections as a standard COCO results list
  (`{image_id, category_id, bbox: [x, y, w, h] original pixels, score}`),
  written by `write_results_json`.
  """

  def __init__(self,
               annotation_file: Optional[str] = None,
               max_num_eval_detections: int = 100,
               per_category_metrics: bool = False):
    """Sets up an empty evaluation.

    Args:
      annotation_file: COCO GT JSON, or None to use label groundtruths.
      max_num_eval_detections: COCOeval's maxDets[2] (detections per image).
      per_category_metrics: `result()` also holds 'AP/<category id>'
        (`per_category_ap`).
    """
    if annotation_file and not tf.io.gfile.exists(annotation_file):
      raise FileNotFoundError(
          f'COCO annotation file {annotation_file} does not exist')
    self._annotation_file = annotation_file or None
    self._max_dets = max_num_eval_detections
    self._per_category = per_category_metrics
    self.reset_states()

  def reset_states(self) -> None:
    self._evaluator = _PerCategoryCOCOEvaluator(
        annotation_file=self._annotation_file,
        include_mask=False,
        need_rescale_bboxes=False,
        per_category_metrics=self._per_category,
        max_num_eval_detections=self._max_dets)
    self._results: List[Dict[str, Any]] = []
    self._num_images = 0

  @property
  def results(self) -> List[Dict[str, Any]]:
    """The COCO results list accumulated so far."""
    return self._results

  def update_state(self,
                   source_ids: Any,
                   image_info: Any,
                   detections: Mapping[str, Any],
                   groundtruths: Optional[Mapping[str, Any]] = None) -> None:
    """Adds one batch.

    Args:
      source_ids: int ``[B]`` COCO image ids.
      image_info: float ``[B, 4, 2]`` parser image info.
      detections: model outputs: `detection_boxes` ``[B, K, 4]`` pixel yxyx in
        the input frame, `detection_scores` ``[B, K]``, `detection_classes`
        ``[B, K]`` (ids >= 1), `num_detections` ``[B]``.
      groundtruths: Model Garden eval-parser `groundtruths` dict (boxes in
        original pixels); required when no annotation file was given.
    """
    missing = [k for k in DETECTION_KEYS if k not in detections]
    if missing:
      raise ValueError(f'detections lack keys {missing}; got '
                       f'{sorted(detections)}')
    if self._annotation_file is None and groundtruths is None:
      raise ValueError('groundtruths are required without an annotation file')
    det = _to_numpy(dict((k, detections[k]) for k in DETECTION_KEYS))
    source_ids = np.asarray(_to_numpy(source_ids)).astype(np.int64)
    boxes = boxes_to_original_pixels(det['detection_boxes'],
                                     _to_numpy(image_info))
    scores = det['detection_scores'].astype(np.float32)
    classes = det['detection_classes'].astype(np.int64)
    num = det['num_detections'].astype(np.int64)
    valid = np.arange(classes.shape[1])[None, :] < num[:, None]
    classes = np.where(valid, classes, _INVALID_CLASS)
    # COCOEvaluator.update_state calls `.numpy()`: hand it tensors.
    gt = None
    if self._annotation_file is None:
      gt = tf.nest.map_structure(tf.convert_to_tensor, dict(groundtruths))
    self._evaluator.update_state(gt, tf.nest.map_structure(
        tf.convert_to_tensor, {
            'source_id': source_ids,
            'detection_boxes': boxes,
            'detection_scores': scores,
            'detection_classes': classes,
            'num_detections': num,
        }))
    for b in range(boxes.shape[0]):
      for k in range(int(min(num[b], boxes.shape[1]))):
        ymin, xmin, ymax, xmax = (float(v) for v in boxes[b, k])
        self._results.append({
            'image_id': int(source_ids[b]),
            'category_id': int(classes[b, k]),
            'bbox': [xmin, ymin, xmax - xmin, ymax - ymin],
            'score': float(scores[b, k]),
        })
    self._num_images += int(boxes.shape[0])

  def result(self) -> Dict[str, float]:
    """COCO metrics ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'ARmax1', ...;
    APs and ARs in [0, 1]) and, with `per_category_metrics`, 'AP/<id>'."""
    if not self._num_images:
      raise ValueError('CocoDetectionEvaluator.result() called before any '
                       'update_state(): the eval dataset was empty')
    try:
      metrics = self._evaluator.evaluate()
    except ValueError as e:
      if self._annotation_file is None:
        raise
      raise ValueError(f'detections do not match {self._annotation_file}: '
                       f'are the records\' source ids its image ids? ({e})'
                      ) from e
    return {k: float(v) for k, v in metrics.items()}

  def write_results_json(self, path: str) -> str:
    """Writes the COCO results list to `path` (JSON); returns `path`."""
    tf.io.gfile.makedirs(os.path.dirname(path) or '.')
    atomic_io.write_json(path, self._results)
    return path


def predict_detections(model: tf_keras.Model):
  """Returns a tf.function: uint8 images ``[B,H,W,3]`` -> detection dict."""

  @tf.function
  def predict(images):
    outputs = model(images, training=False)
    missing = [k for k in DETECTION_KEYS if k not in outputs]
    if missing:
      raise ValueError(f'model outputs lack {missing}: is it a detection '
                       f'model? Got keys {sorted(outputs)}')
    return {k: outputs[k] for k in DETECTION_KEYS}

  return predict


@gin.configurable
def evaluate_detection(model: tf_keras.Model,
                       dataset: Iterable,
                       *,
                       output_dir: Optional[str] = None,
                       annotation_file: Optional[str] = None,
                       max_num_eval_detections: int = 100,
                       num_batches: Optional[int] = None,
                       per_category_metrics: bool = True) -> Dict[str, float]:
  """Runs `model` over `dataset` and returns COCO box metrics.

  Args:
    model: uint8-input detection model (`SelfTrainingModel` or alike) whose
      eval call returns `DETECTION_KEYS`.
    dataset: yields `(images uint8 [B,H,W,3], labels)` with `labels` holding
      `image_info` ``[B,4,2]`` and Model Garden's `groundtruths` dict.
    output_dir: when set, the COCO results JSON is written to
      `output_dir/detections.json`.
    annotation_file: COCO GT JSON; None -> ground truth from the labels.
    max_num_eval_detections: COCOeval's maxDets[2].
    num_batches: stop after this many batches (None: whole dataset).
    per_category_metrics: also return 'AP/<category id>' (see the module
      docstring).

  Returns:
    Dict of float metrics in [0, 1]: AP, AP50, AP75, APs, APm, APl, the ARs
    and the per-category 'AP/<category id>'.
  """
  evaluator = CocoDetectionEvaluator(annotation_file, max_num_eval_detections,
                                     per_category_metrics)
  predict = predict_detections(model)
  for i, (images, labels) in enumerate(dataset):
    if num_batches is not None and i >= num_batches:
      break
    if 'groundtruths' not in labels or 'image_info' not in labels:
      raise ValueError('detection eval labels need `groundtruths` and '
                       f'`image_info` (eval-mode parser); got {sorted(labels)}')
    evaluator.update_state(labels['groundtruths']['source_id'],
                           labels['image_info'], predict(images),
                           labels['groundtruths'])
  metrics = evaluator.result()
  if output_dir:
    path = evaluator.write_results_json(
        os.path.join(output_dir, 'detections.json'))
    logging.info('Wrote %d COCO detections to %s', len(evaluator.results),
                 path)
  return metrics
