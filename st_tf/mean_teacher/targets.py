"""In-graph pseudo targets from the EMA teacher's outputs on the weak view.

Detection (`DetectionTargets`): the teacher's raw RetinaNet outputs go
through Model Garden's detection generator (`pseudo_label.detection.
make_generator` / `generate`, as offline pseudo-labeling) and the SAME
selection rules (`detection.select_in_graph`: thresholds, size and count
limits, the ignore band `band_low`); the kept boxes are encoded by the
student parser's Model Garden `AnchorLabeler` against its anchors, and the
band boxes down-weight the background anchors on them as the parser's
`crowd_handling` does ('drop': nothing, 'ignore', 'soft'). For the same
images and weights the targets equal those of the offline path (records ->
`DetectionParser`), see tests/mean_teacher/test_targets.py.

Differences to offline, by construction: boxes live in the weak view's
pixel frame (the teacher sees the weak view), so `min_box_size` is in those
pixels; shapes are static (`max_num_detections` rows per image; unused rows
are copies of the first kept box, which change no anchor's target).

Segmentation (`SegmentationTargets`): the teacher's per-pixel argmax of the
bilinearly upsampled softmax; pixels whose top probability is below
`pixel_threshold`, and the padding of the weak view, get `ignore_label`.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import gin
import tensorflow as tf
import tf_keras
from official.vision.ops import box_ops
from official.vision.ops import preprocess_ops

from st_tf import tasks
from st_tf.data import augment
from st_tf.data import parsers
from st_tf.pseudo_label import detection
from st_tf.pseudo_label import segmentation
from st_tf.pseudo_label import teacher as teacher_lib

TARGET_KEYS = ('cls_targets', 'box_targets', 'cls_weights', 'box_weights')


def identity_image_info(size) -> tf.Tensor:
  """float32 [4, 2] image info of an image that IS the input frame."""
  h, w = float(size[0]), float(size[1])
  return tf.constant([[h, w], [h, w], [1.0, 1.0], [0.0, 0.0]], tf.float32)


@gin.configurable
class DetectionTargets:
  """EMA teacher outputs -> RetinaNet targets of the unlabeled batch."""

  def __init__(self,
               parser: parsers.DetectionParser = gin.REQUIRED,
               score_threshold: float = 0.5,
               band_low: Optional[float] = None,
               min_box_size: float = 0.0,
               max_boxes: int = 100,
               nms_iou_threshold: float = 0.5,
               max_num_detections: Optional[int] = None,
               quality_iou: float = 0.5):
    """Creates the target maker.

    Args:
      parser: the student's (human) `DetectionParser`: its anchors, labeler,
        padded size and `crowd_handling` / `crowd_iou` are used.
      score_threshold, band_low, min_box_size, max_boxes: the selection
        rules of offline pseudo-labeling (`detection.BoxSelection`).
      nms_iou_threshold, max_num_detections: Model Garden's generator
        (default `max_boxes` detections, as offline pseudo-labeling).
      quality_iou: IoU at which a pseudo box matches a ground-truth box of
        the same class (pseudo-label precision / recall).
    """
    self.parser = parser
    self.selection = detection.BoxSelection(
        score_threshold=score_threshold, min_box_size=min_box_size,
        max_boxes=max_boxes, band_low=band_low)
    self.generator = detection.make_generator(
        self.selection.lowest_threshold(),
        max_num_detections=max_num_detections or max_boxes,
        nms_iou_threshold=nms_iou_threshold)
    self.size = [int(s) for s in parser.padded_size]
    self.quality_iou = float(quality_iou)

  def settings(self) -> Dict[str, Any]:
    """The task and selection rules, for reports (JSON-serializable)."""
    return {'task': tasks.DETECTION.name,
            'score_threshold': self.selection.score_threshold,
            'band_low': self.selection.band_low,
            'max_boxes': self.selection.max_boxes,
            'crowd_handling': self.parser.crowd_handling}

  def teacher_outputs(self, teacher: tf_keras.Model,
                      weak: tf.Tensor) -> Dict[str, Any]:
    """Raw head outputs of the teacher network on uint8 [B, H, W, 3]."""
    raw = teacher_lib.retinanet_raw_outputs(teacher, weak)
    return tf.nest.map_structure(tf.stop_gradient, raw)

  def select(self, teacher: tf_keras.Model,
             weak: tf.Tensor) -> Dict[str, tf.Tensor]:
    """`detection.select_in_graph` rows in the weak view's pixel frame."""
    raw = self.teacher_outputs(teacher, weak)
    dets = detection.generate(self.generator, raw, teacher.get_config(),
                              self.size)
    batch = tf.shape(weak)[0]
    info = tf.tile(identity_image_info(self.size)[None], [batch, 1, 1])
    return detection.select_in_graph(dets, info, self.selection)

  def _label_one(self, anchors: Mapping[str, tf.Tensor], boxes: tf.Tensor,
                 classes: tf.Tensor, scores: tf.Tensor, num_kept: tf.Tensor,
                 num_band: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Targets of one image: rows [:num_kept] hard, the next num_band band.

    `anchors`: the parser's {level: [h_l, w_l, 4A]} pixel yxyx anchors.
    """
    labeler = self.parser.labeler
    rows = tf.range(tf.shape(boxes)[0])
    first = tf.where(rows < num_kept, rows, 0)  # padding = copies of row 0
    hard = tf.gather(boxes, first)
    hard_classes = tf.cast(tf.gather(classes, first), tf.int64)[:, None]

    def label(b, c):
      out = labeler.label_anchors(anchors, b, c)
      return out[0], out[1], out[3], out[4]

    cls_t, box_t, cls_w, box_w = tf.cond(
        num_kept > 0, lambda: label(hard, hard_classes),
        lambda: label(hard[:0], hard_classes[:0]))
    if self.parser.crowd_handling != 'drop' and (
        self.selection.band_low is not None):
      in_band = (rows >= num_kept) & (rows < num_kept + num_band)
      crowd = tf.where(in_band[:, None], boxes, 0.0)  # zero area: no effect
      cls_w = cls_w * parsers.crowd_background_weights(
          anchors, cls_t, crowd, self.parser.crowd_weights(scores),
          self.parser.crowd_iou)
    return {'cls_targets': cls_t, 'box_targets': box_t, 'cls_weights': cls_w,
            'box_weights': box_w}

  @staticmethod
  def _spec(anchors: Mapping[str, tf.Tensor]) -> Dict[str, Any]:
    """Per-image output signature of `_label_one`."""
    num = sum(int(a.shape[0] * a.shape[1] * a.shape[2]) // 4
              for a in anchors.values())
    level = lambda a, d, dtype: tf.TensorSpec(  # pylint: disable=g-long-lambda
        [a.shape[0], a.shape[1], int(a.shape[2]) // 4 * d], dtype)
    return {'cls_targets': {k: level(a, 1, tf.int64)
                            for k, a in anchors.items()},
            'box_targets': {k: level(a, 4, tf.float32)
                            for k, a in anchors.items()},
            'cls_weights': tf.TensorSpec([num], tf.float32),
            'box_weights': tf.TensorSpec([num], tf.float32)}

  def encode(self, rows: Mapping[str, tf.Tensor]) -> Dict[str, Any]:
    """`select`'s rows -> the batch's RetinaNet targets (static shapes).

    Returns:
      `cls_targets` {level: int [B, h, w, A]}, `box_targets` {level: [B, h,
      w, 4A]}, `cls_weights`, `box_weights` float [B, num_anchors] (the
      parser's label format) and `num_boxes` int32 [B] (hard boxes).
    """
    elems = (rows['boxes'], rows['classes'], rows['scores'],
             rows['num_kept'], rows['num_band'])
    anchors = self.parser.anchor_boxes()  # once per batch, not per image
    out = tf.map_fn(lambda e: self._label_one(anchors, *e), elems,
                    fn_output_signature=self._spec(anchors))
    out['num_boxes'] = rows['num_kept']
    return out

  def __call__(self, teacher: tf_keras.Model,
               views: Mapping[str, tf.Tensor]) -> Dict[str, Any]:
    """Pseudo targets of the strong view from the teacher on the weak one.

    Args:
      teacher: the EMA teacher network (Model Garden RetinaNetModel).
      views: `st_tf.data.views` batch: 'weak' uint8 [B, H, W, 3] and, with
        ground truth, 'groundtruth_boxes' [B, G, 4] pixel yxyx of the weak
        view (zero rows = padding), 'groundtruth_classes' int [B, G].

    Returns:
      `encode`'s dict; with ground truth also 'pseudo_precision',
      'pseudo_recall' float32 scalars (this replica's batch).
    """
    rows = self.select(teacher, views['weak'])
    out = self.encode(rows)
    if 'groundtruth_boxes' in views:
      out.update(self.quality(rows, views['groundtruth_boxes'],
                              views['groundtruth_classes']))
    return out

  def quality(self, rows: Mapping[str, tf.Tensor], gt_boxes: tf.Tensor,
              gt_classes: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Precision / recall of the hard pseudo boxes against ground truth
    (a match: same class and IoU >= `quality_iou`; not one-to-one)."""
    k = tf.shape(rows['boxes'])[1]
    kept = tf.range(k)[None, :] < rows['num_kept'][:, None]  # [B, K]
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    gt_valid = ((gt_boxes[..., 2] > gt_boxes[..., 0]) &
                (gt_boxes[..., 3] > gt_boxes[..., 1]))  # [B, G]
    iou = box_ops.bbox_overlap(rows['boxes'], gt_boxes)  # [B, K, G]
    same = tf.equal(rows['classes'][:, :, None],
                    tf.cast(gt_classes, tf.int32)[:, None, :])
    match = (iou >= self.quality_iou) & same & kept[:, :, None] & (
        gt_valid[:, None, :])
    count = lambda m: tf.reduce_sum(tf.cast(m, tf.float32))
    return {
        'pseudo_precision': tf.math.divide_no_nan(
            count(tf.reduce_any(match, 2)), count(kept)),
        'pseudo_recall': tf.math.divide_no_nan(
            count(tf.reduce_any(match, 1)), count(gt_valid))}


@gin.configurable
class SegmentationTargets:
  """EMA teacher logits -> pseudo masks (argmax, low confidence ignored)."""

  def __init__(self, pixel_threshold: float = 0.5,
               ignore_label: int = augment.IGNORE_LABEL):
    """`pixel_threshold`: pixels with top probability below it are ignored
    (the offline `pseudo_label.pixel_threshold`)."""
    self.pixel_threshold = detection.check_threshold(pixel_threshold,
                                                     'pixel_threshold')
    self.ignore_label = int(ignore_label)

  def settings(self) -> Dict[str, Any]:
    """The task and selection rule, for reports (JSON-serializable)."""
    return {'task': tasks.SEGMENTATION.name,
            'pixel_threshold': self.pixel_threshold}

  def __call__(self, teacher: tf_keras.Model,
               views: Mapping[str, tf.Tensor]) -> Dict[str, Any]:
    """Pseudo masks of the strong view from the teacher on the weak one.

    Args:
      teacher: the EMA teacher (Model Garden SegmentationModel, normalized
        float input).
      views: 'weak' uint8 [B, H, W, 3], 'valid' bool [B, H, W, 1] (the
        image, not its padding) and optionally 'groundtruth_masks' int32
        [B, H, W, 1] (`ignore_label` = unknown).

    Returns:
      'masks' int32 [B, H, W, 1] and 'num_boxes' int32 [B] (labeled pixels
      per image); with ground truth 'pseudo_precision' (labeled pixels that
      are right) and 'pseudo_recall' (ground-truth pixels labeled right).
    """
    weak = views['weak']
    size = weak.shape[1:3]
    images = preprocess_ops.normalize_image(weak)
    logits = teacher(images, training=False)['logits']
    maps = segmentation.confidence_and_class(
        segmentation.probabilities(tf.stop_gradient(logits), size))
    keep = (maps[..., :1] >= self.pixel_threshold) & views['valid']
    masks = tf.where(keep, tf.cast(maps[..., 1:], tf.int32),
                     self.ignore_label)
    out = {'masks': masks,
           'num_boxes': tf.reduce_sum(tf.cast(keep, tf.int32), [1, 2, 3])}
    if 'groundtruth_masks' in views:
      gt = tf.cast(views['groundtruth_masks'], tf.int32)
      known = gt != self.ignore_label
      right = keep & known & tf.equal(masks, gt)
      count = lambda m: tf.reduce_sum(tf.cast(m, tf.float32))
      out['pseudo_precision'] = tf.math.divide_no_nan(count(right),
                                                      count(keep & known))
      out['pseudo_recall'] = tf.math.divide_no_nan(count(right), count(known))
    return out
