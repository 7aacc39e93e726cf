"""Batched teacher inference for pseudo-labeling, in two overlappable stages.

Stage 1 (`InferenceStages.network`) runs the teacher network; stage 2
(`InferenceStages.post`) runs decoding + NMS (checkpoint teachers; a
SavedModel does its own) and `detection.select_in_graph` (thresholds, sizes,
caps, boxes mapped back to the original image) and hands numpy arrays to
the host. Both are `tf.function`s under the distribution strategy. Calling
the `InferenceStages` runs both stages in ONE `tf.function` (one dispatch,
no on-device intermediate handed back to Python): the runner's default.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from st_tf import tasks
from st_tf.pseudo_label import detection
from st_tf.pseudo_label import multiscale
from st_tf.pseudo_label import options as options_lib
from st_tf.pseudo_label import teacher as teacher_lib

# Class-count bound for flip merging when neither teacher nor caller gives one.
_UNKNOWN_NUM_CLASSES = 1024


@dataclasses.dataclass(frozen=True)
class StageSpec:
  """What a task's stage functions need (`Task.stage_fns`; see
  `InferenceStages`); `multi`: `scales` is not single-scale."""
  generator: Any
  flip: bool
  scales: Sequence[float]
  multi: bool
  num_classes: int
  nms_iou_threshold: float
  max_num_detections: int
  selection: detection.BoxSelection
  quality_threshold: Optional[float]


StageFns = Tuple[Callable[..., Any], Callable[[Any], Any]]


def detection_fns(teacher: teacher_lib.Teacher, spec: StageSpec) -> StageFns:
  """Detection `(network_fn, post_fn)`: the network (and its flip), then
  decoding + NMS (+ flip merging) + `select_in_graph`."""
  # Multi-scale: flips are views of its stages.
  network, post = (teacher.multiscale_detection_stages(
      spec.generator, spec.scales, spec.flip, spec.num_classes,
      spec.nms_iou_threshold, spec.max_num_detections) if spec.multi else
                   teacher.detection_stages(spec.generator))
  flip, multi = spec.flip, spec.multi

  def network_fn(images, image_info):
    out = {'raw': network(images), 'image_info': image_info}
    if flip and not multi:
      out['flipped'] = network(tf.image.flip_left_right(images))
    return out

  def post_fn(out):
    dets = post(out['raw'])
    if flip and not multi:
      dets = detection.merge_flipped(
          dets, post(out['flipped']), teacher.input_size[1], spec.num_classes,
          spec.nms_iou_threshold, spec.max_num_detections)
    return detection.select_in_graph(dets, out['image_info'], spec.selection,
                                     spec.quality_threshold)

  return network_fn, post_fn


def segmentation_fns(teacher: teacher_lib.Teacher,
                     spec: StageSpec) -> StageFns:
  """Segmentation `(network_fn, post_fn)`: `teacher.segment` -> 'maps';
  nothing after it."""
  flip, scales, multi = spec.flip, spec.scales, spec.multi

  def network_fn(images, image_info):
    del image_info
    return {'maps': (teacher.segment(images, flip, scales) if multi
                     else teacher.segment(images, flip))}

  def post_fn(out):
    return out

  return network_fn, post_fn


class InferenceStages:
  """Batched inference in two `tf.function`s, so they can overlap.

  `network(images, image_info)` runs the teacher network; `post(result)`
  runs decoding + NMS + `select_in_graph` and returns numpy outputs for the
  batch's n images (the runner may call it on another thread while the
  network runs on the next batch). `stages(images, image_info)` does both
  in one fused `tf.function` (same ops, same outputs).
  Batches are zero-padded to `batch_size` (one trace) and split evenly over
  the replicas.

  images: uint8 [n <= batch_size, H, W, 3]; image_info: float [n, 4, 2].
  Detection outputs: `detection.select_in_graph`'s; segmentation: 'maps'
  [n, H, W, 2] (top probability, class id).

  `scales` other than (1.0,) run multi-scale inference (`multiscale.py`,
  checkpoint teachers only), each scale also flipped when `flip`; (1.0,)
  keeps the single-scale path unchanged.
  """

  def __init__(self, teacher: teacher_lib.Teacher,
               strategy: tf.distribute.Strategy, batch_size: int,
               generator: Any, flip: bool, nms_iou_threshold: float,
               max_num_detections: int, num_classes: Optional[int] = None,
               selection: Optional[detection.BoxSelection] = None,
               quality_threshold: Optional[float] = None,
               scales: Sequence[float] = multiscale.SINGLE_SCALE):
    self.replicas = strategy.num_replicas_in_sync
    if batch_size % self.replicas:
      raise ValueError(f'batch_size {batch_size} must be a multiple of the '
                       f'{self.replicas} replicas')
    self.strategy, self.batch_size = strategy, batch_size
    selection = selection or detection.BoxSelection(
        0.0, max_boxes=max_num_detections)
    num_classes = num_classes or teacher.num_classes or _UNKNOWN_NUM_CLASSES
    multi = not multiscale.is_single_scale(multiscale.check_scales(scales))
    if multi and not getattr(teacher, 'supports_multiscale', False):
      raise ValueError(
          f'pseudo_label.scales = {tuple(scales)} needs a checkpoint teacher '
          f'(teacher {teacher.teacher_id} cannot run at other input sizes); '
          'use @checkpoint_teacher or scales = (1.0,).')
    network_fn, post_fn = tasks.get(teacher.task).stage_fns(
        teacher, StageSpec(generator, flip, scales, multi, num_classes,
                           nms_iou_threshold, max_num_detections, selection,
                           quality_threshold))

    def fused_fn(images, image_info):
      return post_fn(network_fn(images, image_info))

    self._network = tf.function(
        lambda *args: strategy.run(network_fn, args=args))
    self._post = tf.function(lambda out: strategy.run(post_fn, args=(out,)))
    self._fused = tf.function(lambda *args: strategy.run(fused_fn, args=args))

  def _pad(self, t, n):
    t = tf.convert_to_tensor(t)
    if n == self.batch_size:
      return t
    return tf.concat([t, tf.repeat(t[:1], self.batch_size - n, axis=0)], 0)

  def _inputs(self, images, image_info):
    """Padded (and, with several replicas, split) inputs; n real images."""
    n = int(images.shape[0])
    args = [self._pad(images, n), self._pad(tf.cast(image_info, tf.float32),
                                            n)]
    if self.replicas > 1:
      per_replica = self.batch_size // self.replicas
      args = [self.strategy.experimental_distribute_values_from_function(
          lambda ctx, t=t: t[  # pylint: disable=g-long-lambda
              ctx.replica_id_in_sync_group * per_replica:
              (ctx.replica_id_in_sync_group + 1) * per_replica])
              for t in args]
    return args, n

  def _to_numpy(self, outputs: Any, n: int) -> Dict[str, np.ndarray]:
    """Per-replica outputs -> numpy arrays of the n real images."""
    out = self.strategy.experimental_local_results(outputs)
    if len(out) == 1:
      return {k: v.numpy()[:n] for k, v in out[0].items()}
    return {k: np.concatenate([np.asarray(o[k]) for o in out])[:n]
            for k in out[0]}

  def network(self, images, image_info) -> Any:
    """Runs the network; returns on-device outputs for `post`."""
    args, n = self._inputs(images, image_info)
    return self._network(*args), n

  def post(self, outputs: Any) -> Dict[str, np.ndarray]:
    """`network`'s result -> numpy outputs of its n images."""
    outputs, n = outputs
    return self._to_numpy(self._post(outputs), n)

  def __call__(self, images, image_info) -> Dict[str, np.ndarray]:
    """Both stages in one `tf.function` -> numpy outputs of the n images."""
    args, n = self._inputs(images, image_info)
    return self._to_numpy(self._fused(*args), n)


def make_stages(teacher: teacher_lib.Teacher,
                strategy: tf.distribute.Strategy, batch_size: int,
                options: options_lib.InferenceOptions, generator: Any,
                selection: detection.BoxSelection,
                num_classes: Optional[int] = None,
                quality_threshold: Optional[float] = None
                ) -> InferenceStages:
  """`InferenceStages` with `options`' flip TTA, NMS IoU and scales.

  `generator`: `options.generator(...)`; at most `selection.max_boxes`
  boxes per image.
  """
  return InferenceStages(
      teacher, strategy, batch_size, generator, options.flip_tta,
      options.nms_iou_threshold, selection.max_boxes, num_classes,
      selection=selection, quality_threshold=quality_threshold,
      scales=options.scales)
