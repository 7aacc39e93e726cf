"""The option groups of `runner.pseudo_label`, passed between its stages.

`pseudo_label(...)` keeps its flat gin signature (shipped .gin files bind
those names); its body groups the related arguments into these frozen
dataclasses (the argument docs are `pseudo_label`'s; no defaults here, the
gin signature holds them).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from st_tf.pseudo_label import auto_threshold as auto_lib
from st_tf.pseudo_label import detection

# (argument name, threshold value) pairs checked by `detection.check_threshold`.
NamedThresholds = List[Tuple[str, float]]


@dataclasses.dataclass(frozen=True)
class JobOptions:
  """Where this job writes, which part it labels, how it batches.

  Attributes:
    output_dir: the output folder shared by the jobs.
    shard_index: this job's index in the job array.
    num_shards: number of jobs.
    batch_size: global inference batch (images).
    skip_corrupt: label the readable records of a corrupt input file.
    max_pending_batches: batches inferred ahead of the background writer.
  """
  output_dir: str
  shard_index: int
  num_shards: int
  batch_size: int
  skip_corrupt: bool
  max_pending_batches: int


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
  """How the teacher infers: NMS and test-time augmentation.

  Attributes:
    nms_iou_threshold: NMS IoU (checkpoint teachers and flip merging).
    pre_nms_top_k: candidates per class before NMS ('v1'/'v2' only).
    nms_version: Model Garden NMS version of the pseudo-label generator.
    flip_tta: average the teacher over the image and its horizontal flip.
    scales: input scales of multi-scale inference; (1.0,) = single scale.
  """
  nms_iou_threshold: float
  pre_nms_top_k: int
  nms_version: str
  flip_tta: bool
  scales: Sequence[float]

  def generator(self, pre_nms_score_threshold: float, max_boxes: int) -> Any:
    """`detection.make_generator` with these NMS options."""
    return detection.make_generator(
        pre_nms_score_threshold, max_num_detections=max_boxes,
        nms_iou_threshold=self.nms_iou_threshold,
        pre_nms_top_k=self.pre_nms_top_k, nms_version=self.nms_version)


@dataclasses.dataclass(frozen=True)
class PixelOptions:
  """Which segmentation pixels become pseudo labels (the others: 255).

  Attributes:
    pixel_threshold: keep pixels whose top probability is >= this.
    class_pixel_thresholds: optional {class id: threshold} for the pixels
      whose argmax is that class.
  """
  pixel_threshold: float
  class_pixel_thresholds: Optional[Mapping[int, float]]

  def named_thresholds(self) -> NamedThresholds:
    """The thresholds to check, named as the gin arguments."""
    return [('pixel_threshold', self.pixel_threshold)] + [
        (f'class_pixel_thresholds[{c}]', t)
        for c, t in (self.class_pixel_thresholds or {}).items()]

  def settings(self) -> Dict[str, Any]:
    """The manifest settings' 'pixel_threshold', 'class_pixel_thresholds'."""
    return {'pixel_threshold': self.pixel_threshold,
            'class_pixel_thresholds': {str(k): float(v) for k, v in sorted(
                (self.class_pixel_thresholds or {}).items())}}


@dataclasses.dataclass(frozen=True)
class OutputOptions:
  """What the job writes besides the labels' thresholds.

  Attributes:
    keep_empty_images: write images without any pseudo label too.
    min_labels_per_image: refuse pseudo labels with fewer per image.
    gallery_size: images drawn into the job's gallery (0: none).
    category_names: {class id: name} given to `pseudo_label`, or None.
  """
  keep_empty_images: bool
  min_labels_per_image: float
  gallery_size: int
  category_names: Optional[Mapping[int, str]]


@dataclasses.dataclass(frozen=True)
class ThresholdOptions:
  """The requested box selection: values, or 'auto' (count matching).

  Attributes:
    score_threshold: keep boxes with score >= this, or 'auto'.
    class_thresholds: optional {class id: threshold}.
    band_low: the ignore band's lower bound, None (no band) or 'auto'.
    auto: the `AutoThreshold` options used for 'auto'.
    min_box_size: minimum box height and width (original pixels).
    max_boxes: boxes kept per image.
  """
  score_threshold: Union[float, str]
  class_thresholds: Optional[Mapping[int, float]]
  band_low: Union[None, float, str]
  auto: auto_lib.AutoThreshold
  min_box_size: float
  max_boxes: int

  @property
  def is_auto(self) -> Dict[str, bool]:
    """{'score_threshold', 'band_low'}: whether each one is 'auto'."""
    return {'score_threshold': self.score_threshold == 'auto',
            'band_low': self.band_low == 'auto'}

  def named_thresholds(self) -> NamedThresholds:
    """The given (not None, not 'auto') thresholds to check."""
    is_auto = self.is_auto
    return [(name, value) for name, value in (
        ('score_threshold', self.score_threshold),
        ('band_low', self.band_low))
            if value is not None and not is_auto[name]]

  def limits(self) -> detection.BoxSelection:
    """The size and count limits (thresholds at the defaults, no band)."""
    return detection.BoxSelection(0.5, None, self.min_box_size,
                                  self.max_boxes)
