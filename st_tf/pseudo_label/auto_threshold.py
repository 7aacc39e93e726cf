"""Pseudo-label thresholds chosen without ground truth, by count matching.

A teacher's scores are not calibrated like a 50-AP COCO teacher's: a tiny
teacher may keep 0.85 boxes per image at the paper's 0.5 where images hold
3. `AutoThreshold` picks the score threshold at which the teacher keeps, on
a probe of unlabeled images, as many boxes per image as the HUMAN labels
have (read from the labeled records, or given), and optionally the ignore
band's lower bound at `band_factor` times that count. No ground truth of
the unlabeled images is used. The choice is written to the pseudo-label
manifest (`auto_threshold`) and reused when the job resumes.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterable, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf

from st_tf.data import files as files_lib
from st_tf.data import schema


def human_boxes_per_image(file_pattern: Any) -> float:
  """Mean number of non-crowd boxes per record of `file_pattern`.

  ValueError naming the pattern when it holds no record.
  """
  images = boxes = 0
  for raw in tf.data.TFRecordDataset(files_lib.match_files(file_pattern)):
    f = tf.train.Example.FromString(raw.numpy()).features.feature
    crowd = list(f[schema.IS_CROWD].int64_list.value) if (
        schema.IS_CROWD in f) else []
    n = len(f[schema.BOX_YMIN].float_list.value) if schema.BOX_YMIN in f else 0
    boxes += n - sum(1 for c in crowd[:n] if c)
    images += 1
  if not images:
    raise ValueError(f'AutoThreshold.reference_pattern {file_pattern!r} holds '
                     'no record: give the labeled records or '
                     'target_boxes_per_image')
  return boxes / images


def count_matching(scores: np.ndarray, num_images: int, per_image: float,
                   floor: float) -> float:
  """The threshold that keeps `per_image` boxes per image on average.

  Args:
    scores: float [M] scores of all candidate boxes of the probe (>= floor).
    num_images: images of the probe (> 0).
    per_image: wanted boxes per image (>= 0).
    floor: lowest threshold returned (the candidates' own floor).

  Returns:
    The score of the k-th best box, k = round(per_image * num_images),
    clipped to [floor, 1]; 1.0 when k is 0, `floor` when fewer than k
    candidates exist.
  """
  if num_images <= 0:
    raise ValueError(f'num_images must be > 0, got {num_images}')
  k = int(round(per_image * num_images))
  ranked = np.sort(np.asarray(scores, np.float32).reshape(-1))[::-1]
  if k <= 0:
    return 1.0
  if k > len(ranked):
    return float(floor)
  return float(np.clip(ranked[k - 1], floor, 1.0))


@gin.configurable
@dataclasses.dataclass(frozen=True)
class AutoThreshold:
  """How `pseudo_label(score_threshold='auto')` chooses its thresholds.

  Attributes:
    reference_pattern: human-labeled records whose boxes per image are the
      target (e.g. the labeled split).
    target_boxes_per_image: the target itself (instead of the records).
    num_images: unlabeled images probed (the first ones of the job).
    floor: the lowest threshold considered (pre-NMS score floor).
    band_factor: if set and `band_low='auto'`, the band's lower bound keeps
      `band_factor` x the target boxes per image.
  """
  reference_pattern: Optional[Any] = None
  target_boxes_per_image: Optional[float] = None
  num_images: int = 1000
  floor: float = 0.05
  band_factor: float = 2.0

  def target(self) -> float:
    """The boxes per image to match."""
    if self.target_boxes_per_image is not None:
      return float(self.target_boxes_per_image)
    if self.reference_pattern is None:
      raise ValueError("score_threshold='auto' needs AutoThreshold."
                       'reference_pattern (the labeled records) or '
                       'AutoThreshold.target_boxes_per_image')
    return human_boxes_per_image(self.reference_pattern)

  def settings(self) -> Dict[str, Any]:
    """JSON-able settings (what must match when a job resumes)."""
    pattern = self.reference_pattern
    if pattern is not None and not isinstance(pattern, str):
      pattern = list(pattern)
    return {'reference_pattern': pattern,
            'target_boxes_per_image': self.target_boxes_per_image,
            'num_images': self.num_images, 'floor': self.floor,
            'band_factor': self.band_factor}

  def choose(self, probe_scores: Sequence[np.ndarray], with_band: bool
             ) -> Dict[str, Any]:
    """Thresholds from the probe's per-image candidate scores.

    Args:
      probe_scores: one float array per probed image: the scores of its
        boxes passing `floor` and the size limits.
      with_band: also choose the band's lower bound.

    Returns:
      {'score_threshold', 'band_low' (or None), 'target_boxes_per_image',
      'probe_images', 'probe_boxes_per_image' (kept at the threshold)}.
    """
    n = len(probe_scores)
    if not n:
      raise ValueError("score_threshold='auto': the probe saw no image")
    scores = (np.concatenate([np.asarray(s, np.float32).reshape(-1)
                              for s in probe_scores]))
    target = self.target()
    threshold = count_matching(scores, n, target, self.floor)
    band = (min(threshold, count_matching(scores, n, self.band_factor *
                                          target, self.floor))
            if with_band else None)
    return {'score_threshold': threshold, 'band_low': band,
            'target_boxes_per_image': target, 'probe_images': n,
            'probe_boxes_per_image': float(np.sum(scores >= threshold)) / n}


def probe(infer: Callable[..., Dict[str, np.ndarray]],
          batches: Iterable[Dict[str, tf.Tensor]], num_images: int
          ) -> list:
  """Per-image scores of the rows `infer` keeps, over `num_images` images.

  `infer(images, image_info)` is an `inference.InferenceStages` whose
  selection threshold is the probe's floor; `batches` yields the job's
  input batches ('image', 'image_info').
  """
  scores = []
  for batch in batches:
    out = infer(batch['image'], batch['image_info'])
    for i, k in enumerate(out['num_kept']):
      scores.append(out['scores'][i, :int(k)])
    if len(scores) >= num_images:
      break
  return scores[:num_images]
