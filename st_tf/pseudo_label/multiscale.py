"""Multi-scale teacher inference for pseudo labels (detection and segmentation).

The paper's segmentation pseudo labels come from multi-scale inference; this
module runs a checkpoint teacher on the batch resized by each of `scales`
(optionally also on the horizontal flips) and fuses the results in the
model input frame:

* segmentation: softmax probabilities of every view, resized back to the
  input size [H, W] and averaged (then top probability + argmax, as the
  single-scale path);
* detection: each view's NMSed detections (Model Garden's generator with
  anchors for that view's size) are mapped back to input-frame pixels and
  merged by one per-class NMS (`tf.image.combined_non_max_suppression`, as
  `detection.merge_flipped`).

Model Garden builds its backbones and decoders as Keras functional models
with a fixed input size in their `input_spec`; their layers are
size-agnostic, so `allow_any_input_size` relaxes the specs of the teacher's
backbone and decoder (height and width only) before other sizes are run.
A test checks that the relaxed network at another size equals the same
weights in a network built at that size.

A scaled size is `scale * (H, W)` rounded to a multiple of the network's
largest stride, so every level stays whole. The images are resized
bilinearly and rounded back to uint8 (the teachers' input contract).
`scales=(1.0,)` means single-scale inference: the runner then keeps its
original path, so the output is exactly the single-scale output.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Tuple

import tensorflow as tf
import tf_keras

from st_tf.pseudo_label import detection
from st_tf.pseudo_label import segmentation

SINGLE_SCALE = (1.0,)


def check_scales(scales: Sequence[float]) -> Tuple[float, ...]:
  """`scales` as a tuple of floats; ValueError unless non-empty and > 0."""
  scales = tuple(float(s) for s in scales)
  if not scales or any(not s > 0 for s in scales):
    raise ValueError(
        f'st_tf/pseudo_label/multiscale.py: pseudo_label.scales must be a '
        f'non-empty list of positive factors (e.g. (0.5, 1.0, 1.5)), got '
        f'{scales}.')
  return scales


def is_single_scale(scales: Sequence[float]) -> bool:
  return tuple(float(s) for s in scales) == SINGLE_SCALE


def _relaxed(spec: tf_keras.layers.InputSpec) -> tf_keras.layers.InputSpec:
  """The same spec with height and width free."""
  shape = spec.shape
  if shape is not None and len(shape) == 4:
    shape = (shape[0], None, None, shape[3])
  return tf_keras.layers.InputSpec(
      shape=shape, name=spec.name,
      allow_last_axis_squeeze=spec.allow_last_axis_squeeze)


def allow_any_input_size(network: tf_keras.Model) -> None:
  """Lets a Model Garden network's backbone/decoder take any H x W."""
  for part in (network.backbone, getattr(network, 'decoder', None)):
    if part is not None and part.input_spec is not None:
      part.input_spec = tf.nest.map_structure(_relaxed, part.input_spec)


def size_multiple(network: Any) -> int:
  """2**(largest feature level) of a Model Garden network (its stride)."""
  specs = getattr(getattr(network, 'decoder', None), 'output_specs', None)
  if not specs:
    specs = network.backbone.output_specs
  return 2**max(int(k) for k in specs)


def scaled_size(input_size: Sequence[int], scale: float,
                multiple: int) -> Tuple[int, int]:
  """(h, w) = scale * input_size rounded to a positive multiple."""
  return tuple(max(multiple, int(round(float(s) * scale / multiple)) * multiple)
               for s in input_size)


def resize_uint8(images: tf.Tensor, size: Sequence[int]) -> tf.Tensor:
  """uint8 [B, H, W, 3] -> uint8 [B, h, w, 3] (bilinear, rounded)."""
  if tuple(images.shape[1:3]) == tuple(size):
    return images
  resized = tf.image.resize(tf.cast(images, tf.float32), list(size),
                            method='bilinear')
  return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _views(input_size: Sequence[int], scales: Sequence[float], flip: bool,
           multiple: int) -> List[Tuple[Tuple[int, int], bool]]:
  """(size, flipped) of every view of the batch."""
  sizes = [scaled_size(input_size, s, multiple) for s in check_scales(scales)]
  return [(size, f) for size in sizes for f in ((False, True) if flip
                                                  else (False,))]


def segment(forward: Callable[[tf.Tensor], Dict[str, Any]],
            images: tf.Tensor, input_size: Sequence[int],
            scales: Sequence[float], flip: bool, multiple: int) -> tf.Tensor:
  """Averaged probabilities over the views -> [B, H, W, 2] (prob, class).

  Args:
    forward: uint8 images [B, h, w, 3] -> {'logits': [B, h', w', C]}.
    images: uint8 [B, H, W, 3], H x W = `input_size`.
    input_size: (H, W).
    scales: input scale factors.
    flip: also average the horizontally flipped views.
    multiple: scaled sizes are rounded to multiples of this (the stride).
  """
  total = None
  views = _views(input_size, scales, flip, multiple)
  for size, flipped in views:
    view = resize_uint8(images, size)
    if flipped:
      view = tf.image.flip_left_right(view)
    probs = segmentation.probabilities(forward(view)['logits'], input_size)
    if flipped:
      probs = tf.image.flip_left_right(probs)
    total = probs if total is None else total + probs
  return segmentation.confidence_and_class(total / float(len(views)))


def _to_input_frame(dets: detection.Detections, size: Sequence[int],
                    flipped: bool, input_size: Sequence[int]
                    ) -> detection.Detections:
  """Boxes of a (scaled, maybe flipped) view -> input-frame pixels."""
  boxes = dets['boxes']
  if flipped:
    w = float(size[1])
    boxes = tf.stack([boxes[..., 0], w - boxes[..., 3], boxes[..., 2],
                      w - boxes[..., 1]], axis=-1)
  sy = float(input_size[0]) / float(size[0])
  sx = float(input_size[1]) / float(size[1])
  return {**dets, 'boxes': boxes * tf.constant([sy, sx, sy, sx])}


def merge(dets: Sequence[detection.Detections], num_classes: int,
          nms_iou_threshold: float, max_num_detections: int
          ) -> detection.Detections:
  """Per-class NMS over the union of several detection sets (same frame)."""
  return detection.merge_detections(dets, num_classes, nms_iou_threshold,
                                    max_num_detections)


def detection_stages(forward: Callable[[tf.Tensor], Dict[str, Any]],
                     generator: Any, anchor_config: Dict[str, Any],
                     input_size: Sequence[int], scales: Sequence[float],
                     flip: bool, multiple: int, num_classes: int,
                     nms_iou_threshold: float, max_num_detections: int
                     ) -> Tuple[Callable[[tf.Tensor], Any],
                                Callable[[Any], detection.Detections]]:
  """`(network, post)` for multi-scale detection (see the module doc).

  `network(images uint8 [B, H, W, 3])` returns the raw head outputs of
  every view; `post(raw)` decodes + NMSes each view with anchors of its
  size, maps boxes to input-frame pixels and merges the views: 'boxes'
  [B, K, 4] pixel yxyx, 'scores', 'classes' int32 (>= 1), 'num' [B].
  """
  views = _views(input_size, scales, flip, multiple)

  def network(images):
    raw = []
    for size, flipped in views:
      view = resize_uint8(images, size)
      raw.append(forward(tf.image.flip_left_right(view) if flipped else view))
    return raw

  def post(raw):
    dets = [_to_input_frame(
        detection.generate(generator, r, anchor_config, size), size, flipped,
        input_size) for r, (size, flipped) in zip(raw, views)]
    return merge(dets, num_classes, nms_iou_threshold, max_num_detections)

  return network, post
