"""Parsers: one decoded example -> fixed-shape ``(images, labels)``.

Both parsers follow Model Garden's `retinanet_input.Parser` /
`segmentation_input.Parser` (same anchors, labeler, resize/crop ops) with
three differences:

* images stay **uint8** (the model normalizes; resized pixels are rounded);
* augmentation is an `augment.AugmentPolicy` (S1..S4, eval) chosen by name
  or gin reference;
* labels carry ``is_pseudo`` (float32 scalar, 1.0 iff the decoded
  ``teacher_id`` is non-empty) so human and pseudo examples can share a batch.

`mode` is 'train' (policy applied) or 'eval' (no augmentation; detection
adds Model Garden's eval ``groundtruths`` so its COCOEvaluator can be used).
Both run eagerly and inside `tf.data.Dataset.map`.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import gin
import tensorflow as tf
from official.vision.dataloaders import parser as mg_parser
from official.vision.dataloaders import utils as mg_utils
from official.vision.ops import anchor
from official.vision.ops import box_ops
from official.vision.ops import preprocess_ops

from st_tf.data import augment
from st_tf.modeling import anchors as anchor_lib

MODES = ('train', 'eval')
CROWD_HANDLING = ('drop', 'ignore', 'soft')
PolicyArg = Union[str, augment.AugmentPolicy]


def is_pseudo(data: dict) -> tf.Tensor:
  """1.0 (float32 scalar) iff the decoded example has a non-empty teacher id."""
  teacher_id = data.get('teacher_id', tf.constant(''))
  return tf.cast(tf.strings.length(teacher_id) > 0, tf.float32)


def _check_mode(mode: str) -> str:
  if mode not in MODES:
    raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
  return mode


class _Parser(mg_parser.Parser):
  """Dispatches on `mode`; callable as a `Dataset.map` function.

  In graph mode (inside `Dataset.map`) the parse is traced once per graph
  seed into a `tf.function` (no autograph: the ops use explicit tf.cond;
  autograph would spend seconds converting Model Garden) and reused, so the human and pseudo sources of
  the student pipeline (and repeated builds) share one trace: tracing the
  RandAugment graph costs seconds. Eagerly it runs op by op.
  """

  def __call__(self, data: dict) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    """Parses one decoded example (see the subclass for the outputs)."""
    parse = self.parse_fn(self._mode == 'train')
    if tf.executing_eagerly():
      return parse(data)
    seed = tf.compat.v1.get_default_graph().seed
    traced = self.__dict__.setdefault('_traced', {})
    if seed not in traced:
      traced[seed] = tf.function(parse, reduce_retracing=True,
                                  autograph=False)
    return traced[seed](data)


def _crowd_flags(data: dict) -> tf.Tensor:
  """bool [N] crowd flag per box (all False when the record has none)."""
  classes = data['groundtruth_classes']
  flags = tf.cast(data['groundtruth_is_crowd'], tf.bool)
  return tf.cond(tf.equal(tf.size(flags), tf.shape(classes)[0]),
                 lambda: flags, lambda: tf.zeros_like(classes, tf.bool))


def crowd_background_weights(anchor_boxes: Dict[str, tf.Tensor],
                             cls_targets: Dict[str, tf.Tensor],
                             crowd_boxes: tf.Tensor, crowd_weights: tf.Tensor,
                             iou_threshold: float) -> tf.Tensor:
  """Classification weight factor per anchor from crowd boxes.

  Args:
    anchor_boxes: {level: [h, w, 4A]} pixel yxyx anchors (the labeler's).
    cls_targets: {level: [h, w, A]} the labeler's class targets (> 0
      positive; Model Garden gives -1 to background and ignored anchors).
    crowd_boxes: float [C, 4] pixel yxyx crowd boxes (zero-area rows, e.g.
      cropped away, affect nothing).
    crowd_weights: float [C] weight of the background anchors on each box.
    iou_threshold: an anchor is on a box when IoU >= this.

  Returns:
    float32 [num_anchors] (flattened like the labeler's `cls_weights`): the
    smallest weight of the crowd boxes a non-positive anchor is on, else 1.
  """
  anchors = tf.concat([tf.reshape(a, [-1, 4]) for a in anchor_boxes.values()],
                      0)
  targets = tf.concat([tf.reshape(t, [-1]) for t in cls_targets.values()], 0)
  crowd_boxes = tf.reshape(tf.cast(crowd_boxes, tf.float32), [-1, 4])
  area = ((crowd_boxes[:, 2] - crowd_boxes[:, 0]) *
          (crowd_boxes[:, 3] - crowd_boxes[:, 1]))
  iou = box_ops.bbox_overlap(anchors[None], crowd_boxes[None])[0]  # [A, C]
  on = (iou >= iou_threshold) & (area > 0)[None, :]
  weights = tf.where(on, tf.cast(crowd_weights, tf.float32)[None, :], 1.0)
  # The ones column keeps the minimum finite (1) when there is no crowd box.
  factor = tf.reduce_min(
      tf.concat([weights, tf.ones([tf.shape(iou)[0], 1], tf.float32)], 1),
      axis=1)
  return tf.where(targets > 0, 1.0, factor)


@gin.configurable
class DetectionParser(_Parser):
  """Decoded detection dict -> (uint8 image, RetinaNet labels)."""

  def __init__(self,
               output_size: Sequence[int] = (128, 128),
               policy: PolicyArg = 'S1',
               anchors: Optional[anchor_lib.AnchorSpec] = None,
               match_threshold: float = 0.5,
               unmatched_threshold: float = 0.5,
               box_coder_weights: Optional[Sequence[float]] = None,
               max_num_instances: int = 100,
               skip_crowd_during_training: bool = True,
               pad: bool = True,
               mode: str = 'train',
               crowd_handling: str = 'drop',
               crowd_iou: float = 0.4):
    """Initializes the parser.

    Args:
      output_size: [height, width] of the image after resize/crop.
      policy: augmentation policy (name or `AugmentPolicy`) used in 'train'
        mode; 'eval' mode never augments.
      anchors: the anchors targets are encoded against (`AnchorSpec`, as
        Model Garden's `anchor.build_anchor_generator`); None = the
        gin-configured `Anchors()`, the ones `build_retinanet` uses by
        default.
      match_threshold, unmatched_threshold, box_coder_weights: Model Garden's
        `anchor.AnchorLabeler`.
      max_num_instances: eval groundtruths are padded to this many boxes.
      skip_crowd_during_training: drop crowd boxes in 'train' mode (with
        `crowd_handling='drop'`).
      pad: pad the image to a multiple of 2**anchors.max_level pixels (as
        Model Garden).
      mode: 'train' or 'eval'.
      crowd_handling: what crowd boxes (COCO crowds; the ignore band of
        pseudo labels, see `pseudo_label.detection.BoxSelection.band_low`)
        do to the background anchors on them in 'train' mode: 'drop' (Model
        Garden's: removed, their anchors train as background), 'ignore'
        (those anchors get no classification loss) or 'soft' (their loss is
        weighted by 1 - the box's score, the teacher's own background
        confidence, as Soft Teacher weights background by the teacher).
        Anchors matched to a non-crowd box are never changed.
      crowd_iou: an anchor is "on" a crowd box when their IoU >= this.
    """
    if crowd_handling not in CROWD_HANDLING:
      raise ValueError(f'DetectionParser.crowd_handling must be one of '
                       f'{CROWD_HANDLING}, got {crowd_handling!r}')
    self._crowd_handling = crowd_handling
    self._crowd_iou = float(crowd_iou)
    self._output_size = list(output_size)
    self._mode = _check_mode(mode)
    self._policy = augment.get_policy(policy, 'DetectionParser.policy')
    self._eval_policy = augment.eval_policy()
    self._anchors = anchor_lib.resolve(anchors, 'DetectionParser.anchors')
    self._padded_size = (
        preprocess_ops.compute_padded_size(self._output_size,
                                           2**self._anchors.max_level)
        if pad else self._output_size)
    self._padded_size = [int(s) for s in self._padded_size]
    self._max_num_instances = max_num_instances
    self._skip_crowd = skip_crowd_during_training
    self._anchor_generator = anchor.build_anchor_generator(
        **self._anchors.model_garden_kwargs())
    self._labeler = anchor.AnchorLabeler(
        match_threshold=match_threshold,
        unmatched_threshold=unmatched_threshold,
        box_coder_weights=box_coder_weights)

  @property
  def padded_size(self) -> Sequence[int]:
    """[height, width] of the parsed images."""
    return list(self._padded_size)

  @property
  def anchors(self) -> anchor_lib.AnchorSpec:
    """The anchors the targets are encoded against."""
    return self._anchors

  @property
  def labeler(self) -> anchor.AnchorLabeler:
    """Model Garden's anchor labeler of the targets (shared by in-graph
    pseudo targets, `st_tf.mean_teacher.targets`)."""
    return self._labeler

  def anchor_boxes(self) -> Dict[str, tf.Tensor]:
    """{level: [h_l, w_l, 4A]} pixel yxyx anchors of the padded image."""
    return self._anchor_generator(image_size=self._padded_size)

  @property
  def crowd_handling(self) -> str:
    return self._crowd_handling

  @property
  def crowd_iou(self) -> float:
    return self._crowd_iou

  def crowd_weights(self, scores: tf.Tensor) -> tf.Tensor:
    """Background weight on each crowd box of score `scores` (float [C]):
    0 ('ignore'), 1 - score ('soft'); 'drop' never uses it."""
    scores = tf.cast(scores, tf.float32)
    return (tf.zeros_like(scores) if self._crowd_handling == 'ignore'
            else 1.0 - scores)

  def _labels(self, boxes: tf.Tensor, classes: tf.Tensor,
              image_info: tf.Tensor, data: dict,
              crowd: Optional[Tuple[tf.Tensor, tf.Tensor]] = None
              ) -> Dict[str, tf.Tensor]:
    """RetinaNet targets for pixel boxes [N, 4] in the padded image.

    `crowd`: optional (pixel boxes [C, 4], background weights [C]) that
    scale the classification weight of the background anchors on them.
    """
    keep = box_ops.get_non_empty_box_indices(boxes)
    boxes = tf.gather(boxes, keep)
    classes = tf.gather(classes, keep)
    anchor_boxes = self._anchor_generator(image_size=self._padded_size)
    cls_targets, box_targets, _, cls_weights, box_weights = (
        self._labeler.label_anchors(anchor_boxes, boxes,
                                    tf.expand_dims(classes, axis=1)))
    if crowd is not None:
      cls_weights = cls_weights * crowd_background_weights(
          anchor_boxes, cls_targets, crowd[0], crowd[1], self._crowd_iou)
    return {
        'cls_targets': cls_targets,
        'box_targets': box_targets,
        'anchor_boxes': anchor_boxes,
        'cls_weights': cls_weights,
        'box_weights': box_weights,
        'image_info': image_info,
        'is_pseudo': is_pseudo(data),
        'num_boxes': tf.shape(boxes)[0],
    }

  def _parse_train_data(self, data: dict):
    """Augments and labels one example.

    Returns:
      images: uint8 [padded_h, padded_w, 3].
      labels: dict of `cls_targets` / `box_targets` / `anchor_boxes`
        ({level: [h_l, w_l, A] / [h_l, w_l, 4A]}), `cls_weights`,
        `box_weights` [num_anchors], `image_info` [4, 2], `is_pseudo` float32
        scalar, `num_boxes` int32 scalar (boxes kept after crop).
    """
    boxes = data['groundtruth_boxes']
    classes = data['groundtruth_classes']
    if self._crowd_handling != 'drop':
      return self._parse_train_with_crowd(data)
    if self._skip_crowd:
      not_crowd = tf.logical_not(_crowd_flags(data))
      boxes = tf.boolean_mask(boxes, not_crowd)
      classes = tf.boolean_mask(classes, not_crowd)
    image, boxes, image_info = self._policy.augment_detection(
        data['image'], boxes, self._output_size, self._padded_size)
    return image, self._labels(boxes, classes, image_info, data)

  def _parse_train_with_crowd(self, data: dict):
    """`_parse_train_data` keeping crowd boxes as weighted background."""
    is_crowd = _crowd_flags(data)
    scores = data.get('groundtruth_scores')
    if scores is None:
      scores = tf.ones_like(data['groundtruth_classes'], tf.float32)
    weight = self.crowd_weights(scores)
    # Crowd boxes travel through the same augmentation as the others.
    order = tf.argsort(tf.cast(is_crowd, tf.int32), stable=True)
    boxes = tf.gather(data['groundtruth_boxes'], order)
    classes = tf.gather(data['groundtruth_classes'], order)
    weight = tf.gather(weight, order)
    num_hard = tf.reduce_sum(1 - tf.cast(is_crowd, tf.int32))
    image, boxes, image_info = self._policy.augment_detection(
        data['image'], boxes, self._output_size, self._padded_size)
    n = tf.shape(classes)[0]
    boxes = boxes[:n]  # Model Garden's dummy row for zero boxes goes.
    crowd = (boxes[num_hard:], weight[num_hard:])
    return image, self._labels(boxes[:num_hard], classes[:num_hard],
                               image_info, data, crowd)

  def _parse_eval_data(self, data: dict):
    """Resizes (no augmentation) and labels one example.

    Returns:
      As `_parse_train_data`, plus labels['groundtruths'] as Model Garden's
      RetinaNet eval parser: `source_id` int64, `height`, `width`,
      `num_detections`, `image_info`, `boxes` [max_num_instances, 4] pixel
      yxyx in the original image (-1 padded), `classes`, `areas`,
      `is_crowds`.
    """
    boxes = data['groundtruth_boxes']
    classes = data['groundtruth_classes']
    image, pixel_boxes, image_info = self._eval_policy.augment_detection(
        data['image'], boxes, self._output_size, self._padded_size)
    labels = self._labels(pixel_boxes, classes, image_info, data)
    groundtruths = {
        'source_id': mg_utils.process_source_id(data['source_id']),
        'height': data['height'],
        'width': data['width'],
        'num_detections': tf.shape(classes),
        'image_info': image_info,
        'boxes': box_ops.denormalize_boxes(boxes, tf.shape(data['image'])[:2]),
        'classes': classes,
        'areas': data['groundtruth_area'],
        'is_crowds': tf.cast(data['groundtruth_is_crowd'], tf.int32),
    }
    labels['groundtruths'] = mg_utils.pad_groundtruths_to_fixed_size(
        groundtruths, self._max_num_instances)
    return image, labels


@gin.configurable
class SegmentationParser(_Parser):
  """Decoded segmentation dict -> (uint8 image, mask labels)."""

  def __init__(self,
               output_size: Sequence[int] = (128, 128),
               policy: PolicyArg = 'S1',
               ignore_label: int = augment.IGNORE_LABEL,
               mode: str = 'train'):
    """Initializes the parser.

    Args:
      output_size: [height, width] of the parsed image and mask.
      policy: augmentation policy used in 'train' mode (colour ops on the
        image only, flip + scale jitter on image and mask; see augment.py).
      ignore_label: mask value of ignored pixels (also given to padding).
      mode: 'train' or 'eval' (resize only).
    """
    self._output_size = [int(s) for s in output_size]
    self._mode = _check_mode(mode)
    self._policy = augment.get_policy(policy,
                                      'SegmentationParser.policy')
    self._eval_policy = augment.eval_policy()
    self._ignore_label = ignore_label

  def _parse(self, data: dict, policy: augment.AugmentPolicy):
    """Returns images uint8 [H, W, 3] and labels: `masks` int32 [H, W, 1]
    (`ignore_label` on ignored and padded pixels), `image_info` [4, 2],
    `is_pseudo` float32 scalar."""
    image, mask, image_info = policy.augment_segmentation(
        data['image'], data['label'], self._output_size,
        ignore_label=self._ignore_label)
    return image, {'masks': mask, 'image_info': image_info,
                   'is_pseudo': is_pseudo(data)}

  def _parse_train_data(self, data: dict):
    return self._parse(data, self._policy)

  def _parse_eval_data(self, data: dict):
    return self._parse(data, self._eval_policy)
