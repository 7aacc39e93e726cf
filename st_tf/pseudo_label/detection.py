"""Detection pseudo labels: a cheap NMS, flip TTA merging, box selection.

Pseudo-labeling keeps only boxes scoring >= a threshold (0.5 in the paper),
so it does not need the eval detection generator (Model Garden's default
``nms_version='v2'``, ``pre_nms_score_threshold=0.05``, ``pre_nms_top_k`` in
the thousands), which spends most of its time sorting and suppressing boxes
that are thrown away anyway. `make_generator` builds Model Garden's
`MultilevelDetectionGenerator` with ``nms_version='batched'`` and a pre-NMS
score threshold at the lowest threshold of interest; a test checks that the
kept boxes equal those of the default path filtered at the same threshold.

Box conventions: the generator and `merge_flipped` work on PIXEL
``[ymin, xmin, ymax, xmax]`` boxes of the model input frame;
`select_boxes` works on one image's pixel boxes in the ORIGINAL image
(after `st_tf.ops.image_info.boxes_to_original`); `select_in_graph`
is its batched TensorFlow twin, run in the inference `tf.function` right
after NMS so that the host only slices numpy arrays.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from official.vision.modeling.layers import detection_generator
from official.vision.ops import anchor

from st_tf.ops import image_info as image_info_ops

Detections = Dict[str, tf.Tensor]


def check_threshold(value: float, name: str) -> float:
  """Returns `value` as float; ValueError unless it lies in [0, 1]."""
  value = float(value)
  if not 0.0 <= value <= 1.0 or np.isnan(value):
    raise ValueError(f'{name} must be in [0, 1], got {value}')
  return value


@dataclasses.dataclass(frozen=True)
class BoxSelection:
  """Which teacher boxes become pseudo labels.

  Attributes:
    score_threshold: keep boxes with score >= this (paper: 0.5).
    class_thresholds: optional {class id: threshold} overriding it per class.
    min_box_size: minimum box height and width in original-image pixels.
    max_boxes: maximum boxes per image (highest scores first).
    band_low: the ignore band's lower bound, or None (no band, the paper).
      Boxes scoring in [band_low, their keep threshold) that pass the size
      limits are the "band": written as crowd boxes (``is_crowd = 1``, with
      their scores) after the pseudo labels, so the student's parser can
      ignore or down-weight the anchors on them instead of training them
      as background (`st_tf.data.parsers.DetectionParser`'s
      `crowd_handling`). At most `max_boxes` band boxes.
  """
  score_threshold: float = 0.5
  class_thresholds: Optional[Mapping[int, float]] = None
  min_box_size: float = 0.0
  max_boxes: int = 100
  band_low: Optional[float] = None

  def __post_init__(self):
    check_threshold(self.score_threshold, 'score_threshold')
    if self.band_low is not None:
      check_threshold(self.band_low, 'band_low')
    for cls, value in (self.class_thresholds or {}).items():
      if int(cls) < 1:
        raise ValueError(f'class_thresholds keys are class ids >= 1, got {cls}')
      check_threshold(value, f'class_thresholds[{cls}]')
    if self.min_box_size < 0:
      raise ValueError(f'min_box_size must be >= 0, got {self.min_box_size}')
    if self.max_boxes < 1:
      raise ValueError(f'max_boxes must be >= 1, got {self.max_boxes}')

  def lowest_threshold(self) -> float:
    """The smallest threshold over all classes (and the band)."""
    return min([self.score_threshold] +
               [float(v) for v in (self.class_thresholds or {}).values()] +
               ([] if self.band_low is None else [self.band_low]))

  def as_dict(self) -> dict:
    out = {'score_threshold': self.score_threshold,
           'class_thresholds': {str(k): float(v) for k, v in sorted(
               (self.class_thresholds or {}).items())},
           'min_box_size': self.min_box_size, 'max_boxes': self.max_boxes}
    if self.band_low is not None:
      out['band_low'] = self.band_low
    return out


def make_generator(pre_nms_score_threshold: float,
                   max_num_detections: int = 100,
                   nms_iou_threshold: float = 0.5,
                   pre_nms_top_k: int = 200,
                   nms_version: str = 'batched'
                   ) -> detection_generator.MultilevelDetectionGenerator:
  """Model Garden's multilevel generator configured for pseudo-labeling.

  Args:
    pre_nms_score_threshold: drop boxes below this score before NMS; set it
      to the lowest score of interest (pseudo or quality thresholds).
    max_num_detections: boxes kept per image after NMS.
    nms_iou_threshold: per-class NMS IoU threshold.
    pre_nms_top_k: candidates per class before NMS (v1/v2 only; 'batched'
      uses combined NMS over all candidates above the score threshold).
    nms_version: Model Garden NMS version ('batched', 'v1', 'v2').
  """
  check_threshold(pre_nms_score_threshold, 'pre_nms_score_threshold')
  return detection_generator.MultilevelDetectionGenerator(
      apply_nms=True, pre_nms_top_k=pre_nms_top_k,
      pre_nms_score_threshold=pre_nms_score_threshold,
      nms_iou_threshold=nms_iou_threshold,
      max_num_detections=max_num_detections, nms_version=nms_version)


def multilevel_anchors(anchor_config: Mapping[str, object],
                       image_size: Sequence[int],
                       batch_size: tf.Tensor) -> Dict[str, tf.Tensor]:
  """Model Garden anchors tiled over the batch.

  Args:
    anchor_config: `RetinaNetModel.get_config()` (min_level, max_level,
      num_scales, aspect_ratios, anchor_size).
    image_size: (H, W) of the model input in pixels.
    batch_size: scalar batch size.

  Returns:
    {level: float [B, H_l, W_l, 4 * num_anchors]} pixel yxyx anchors.
  """
  boxes = anchor.Anchor(
      min_level=anchor_config['min_level'],
      max_level=anchor_config['max_level'],
      num_scales=anchor_config['num_scales'],
      aspect_ratios=anchor_config['aspect_ratios'],
      anchor_size=anchor_config['anchor_size'],
      image_size=tuple(int(s) for s in image_size)).multilevel_boxes
  return {level: tf.tile(b[None], [batch_size, 1, 1, 1])
          for level, b in boxes.items()}


def generate(generator: detection_generator.MultilevelDetectionGenerator,
             raw: Mapping[str, Mapping[str, tf.Tensor]],
             anchor_config: Mapping[str, object],
             image_size: Sequence[int]) -> Detections:
  """Raw RetinaNet head outputs -> NMSed detections in the input frame.

  Args:
    generator: from `make_generator`.
    raw: {'cls_outputs', 'box_outputs'}: {level: [B, H_l, W_l, A * C]} logits
      and {level: [B, H_l, W_l, A * 4]} encoded boxes.
    anchor_config: see `multilevel_anchors`.
    image_size: (H, W) model input size.

  Returns:
    'boxes' float32 [B, K, 4] pixel yxyx, 'scores' [B, K], 'classes' int32
    [B, K] (>= 1), 'num' int32 [B].
  """
  box_outputs = {k: tf.cast(v, tf.float32) for k, v in raw['box_outputs'].items()}
  cls_outputs = {k: tf.cast(v, tf.float32) for k, v in raw['cls_outputs'].items()}
  batch = tf.shape(next(iter(box_outputs.values())))[0]
  anchors = multilevel_anchors(anchor_config, image_size, batch)
  image_shape = tf.tile(tf.constant([list(image_size)], tf.float32), [batch, 1])
  out = generator(box_outputs, cls_outputs, anchors, image_shape)
  return {'boxes': tf.cast(out['detection_boxes'], tf.float32),
          'scores': tf.cast(out['detection_scores'], tf.float32),
          'classes': tf.cast(out['detection_classes'], tf.int32),
          'num': tf.cast(out['num_detections'], tf.int32)}


def _valid_mask(dets: Detections) -> tf.Tensor:
  k = tf.shape(dets['scores'])[1]
  return tf.range(k)[None, :] < dets['num'][:, None]


def merge_flipped(dets: Detections, flipped: Detections, image_width: int,
                  num_classes: int, nms_iou_threshold: float = 0.5,
                  max_num_detections: int = 100) -> Detections:
  """Merges detections of images and of their horizontal flips.

  The flipped boxes are mapped back (``x -> W - x``), concatenated with the
  original ones, and per-class NMS (`tf.image.combined_non_max_suppression`,
  as Model Garden's 'batched' generator) removes the duplicates.

  Args:
    dets: detections of the images (see `generate`), pixel yxyx.
    flipped: detections of the horizontally flipped images.
    image_width: input width in pixels.
    num_classes: class count including background.
    nms_iou_threshold: IoU for NMS.
    max_num_detections: boxes kept per image.

  Returns:
    Detections in the same format.
  """
  fb = flipped['boxes']
  w = float(image_width)
  unflipped = tf.stack([fb[..., 0], w - fb[..., 3], fb[..., 2],
                        w - fb[..., 1]], axis=-1)
  return merge_detections([dets, {**flipped, 'boxes': unflipped}],
                          num_classes, nms_iou_threshold, max_num_detections)


def merge_detections(dets: Sequence[Detections], num_classes: int,
                     nms_iou_threshold: float, max_num_detections: int
                     ) -> Detections:
  """Per-class NMS (`tf.image.combined_non_max_suppression`, as Model
  Garden's 'batched' generator) over the union of detection sets that are
  in the same pixel frame; same format out."""
  valid = tf.concat([_valid_mask(d) for d in dets], axis=1)
  boxes = tf.concat([d['boxes'] for d in dets], axis=1)
  scores = tf.where(valid, tf.concat([d['scores'] for d in dets], 1), 0.0)
  classes = tf.concat([d['classes'] for d in dets], axis=1)
  # Class c (>= 1) -> column c - 1; invalid rows have score 0 everywhere.
  per_class = tf.one_hot(classes - 1, num_classes - 1) * scores[..., None]
  out_boxes, out_scores, out_classes, num = (
      tf.image.combined_non_max_suppression(
          boxes[:, :, None, :], per_class,
          max_output_size_per_class=max_num_detections,
          max_total_size=max_num_detections, iou_threshold=nms_iou_threshold,
          score_threshold=1e-6, pad_per_class=False, clip_boxes=False))
  return {'boxes': out_boxes, 'scores': out_scores,
          'classes': tf.cast(out_classes, tf.int32) + 1,
          'num': tf.cast(num, tf.int32)}


def select_boxes(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                 selection: BoxSelection, score_threshold: Optional[float] = None
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Keeps one image's boxes that pass the thresholds, size and count limits.

  Args:
    boxes: float [K, 4] pixel yxyx boxes in the original image (valid rows).
    scores: float [K].
    classes: int [K] class ids >= 1.
    selection: thresholds and limits.
    score_threshold: overrides `selection.score_threshold` (and ignores the
      per-class ones) when given; used to measure quality at other thresholds.

  Returns:
    (boxes [M, 4], scores [M], classes [M]) sorted by decreasing score.
  """
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  scores = np.asarray(scores, np.float32).reshape(-1)
  classes = np.asarray(classes, np.int64).reshape(-1)
  if score_threshold is None:
    per_class = selection.class_thresholds or {}
    thresholds = np.array([per_class.get(int(c), selection.score_threshold)
                           for c in classes], np.float32)
  else:
    thresholds = np.full(scores.shape, score_threshold, np.float32)
  keep = scores >= thresholds
  keep &= (boxes[:, 2] - boxes[:, 0]) >= selection.min_box_size
  keep &= (boxes[:, 3] - boxes[:, 1]) >= selection.min_box_size
  keep &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
  order = np.argsort(-scores[keep], kind='stable')[:selection.max_boxes]
  return boxes[keep][order], scores[keep][order], classes[keep][order]


def _class_threshold_table(selection: BoxSelection) -> np.ndarray:
  """float32 [max class id + 1]: threshold per class id (default elsewhere)."""
  per_class = {int(k): float(v)
               for k, v in (selection.class_thresholds or {}).items()}
  table = np.full([max(per_class, default=0) + 1], selection.score_threshold,
                  np.float32)
  for cls, value in per_class.items():
    table[cls] = value
  return table


def _keep_mask(boxes: tf.Tensor, scores: tf.Tensor, thresholds: tf.Tensor,
               valid: tf.Tensor, selection: BoxSelection) -> tf.Tensor:
  """[B, K] bool: rows (sorted by score) passing threshold, size and count."""
  height = boxes[..., 2] - boxes[..., 0]
  width = boxes[..., 3] - boxes[..., 1]
  keep = (valid & (scores >= thresholds) & (height > 0) & (width > 0) &
          (height >= selection.min_box_size) &
          (width >= selection.min_box_size))
  rank = tf.cumsum(tf.cast(keep, tf.int32), axis=1)
  return keep & (rank <= selection.max_boxes)


def select_in_graph(dets: Detections, image_info: tf.Tensor,
                    selection: BoxSelection,
                    quality_threshold: Optional[float] = None
                    ) -> Dict[str, tf.Tensor]:
  """Batched `select_boxes` in TensorFlow (same thresholds, order and caps).

  Args:
    dets: NMS output in the model input frame (see `generate`): 'boxes'
      [B, K, 4] pixel yxyx, 'scores' [B, K], 'classes' int32 [B, K], 'num'
      int32 [B].
    image_info: float [B, 4, 2] Model Garden image info of the inputs.
    selection: thresholds and limits of the pseudo labels.
    quality_threshold: when given, also mark the rows that `select_boxes`
      keeps with `score_threshold=quality_threshold` (quality vs GT).

  Returns:
    Rows sorted by decreasing score, the pseudo labels first:
    'boxes' float32 [B, K, 4] pixel yxyx in the original image (clipped to
    it), 'normalized' [B, K, 4] the same boxes divided by the image size,
    'area' [B, K] pixels, 'scores' [B, K], 'classes' int32 [B, K],
    'num_kept' int32 [B] (pseudo labels = rows [:num_kept]), 'num_band'
    int32 [B] (band boxes = the next num_band rows; 0 without a band),
    'valid' bool [B, K] (NMS output rows) and, with `quality_threshold`,
    'quality' bool [B, K].
  """
  boxes = image_info_ops.boxes_to_original(dets['boxes'], image_info)
  size = tf.tile(tf.cast(image_info, tf.float32)[:, 0:1, :], [1, 1, 2])
  scores = tf.cast(dets['scores'], tf.float32)
  classes = tf.cast(dets['classes'], tf.int32)
  valid = _valid_mask(dets)
  # Rows by decreasing score (stable), padding last: `select_boxes` order.
  order = tf.argsort(tf.where(valid, scores, -1.0), axis=1,
                     direction='DESCENDING', stable=True)
  take = lambda t: tf.gather(t, order, batch_dims=1)
  boxes, scores, classes, valid = (take(boxes), take(scores), take(classes),
                                   take(valid))
  table = tf.constant(_class_threshold_table(selection))
  in_table = (classes >= 0) & (classes < table.shape[0])
  thresholds = tf.where(
      in_table, tf.gather(table, tf.clip_by_value(classes, 0,
                                                  table.shape[0] - 1)),
      selection.score_threshold)
  masks = {'keep': _keep_mask(boxes, scores, thresholds, valid, selection),
           'valid': valid}
  band = tf.zeros_like(valid)
  if selection.band_low is not None:
    band = _keep_mask(boxes, scores,
                      tf.fill(tf.shape(scores), float(selection.band_low)),
                      valid & ~masks['keep'] & (scores < thresholds),
                      selection)
  masks['band'] = band
  if quality_threshold is not None:
    masks['quality'] = _keep_mask(
        boxes, scores, tf.fill(tf.shape(scores), float(quality_threshold)),
        valid, selection)
  # Pseudo labels first, then the band, keeping the score order inside each.
  group = 2 * tf.cast(masks['keep'], tf.int32) + tf.cast(band, tf.int32)
  order = tf.argsort(group, axis=1, direction='DESCENDING', stable=True)
  boxes, scores, classes = take(boxes), take(scores), take(classes)
  masks = {k: take(v) for k, v in masks.items()}
  out = {
      'boxes': boxes,
      'normalized': tf.clip_by_value(boxes / tf.maximum(size, 1e-6), 0.0,
                                     1.0),
      'area': (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]),
      'scores': scores, 'classes': classes, 'valid': masks['valid'],
      'num_kept': tf.reduce_sum(tf.cast(masks['keep'], tf.int32), axis=1),
      'num_band': tf.reduce_sum(tf.cast(masks['band'], tf.int32), axis=1)}
  if quality_threshold is not None:
    out['quality'] = masks['quality']
  return out
