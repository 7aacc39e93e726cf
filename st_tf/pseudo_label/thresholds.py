"""`pseudo_label`'s box selection: given thresholds, or 'auto' ones.

`resolve` turns the requested `options.ThresholdOptions` into the
`detection.BoxSelection` the job labels with, as the teacher's task says
(`Task.resolve_thresholds`): `resolve_boxes` (detection) or
`resolve_unused` (segmentation: no box selection). 'auto' values (score
threshold and / or the ignore band's lower bound, detection only) come from
an earlier job's manifest, else from a probe of the unlabeled images
(`auto_threshold.py`: count matching, no ground truth).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Sequence

from absl import logging
import tensorflow as tf

from st_tf import tasks
from st_tf.pseudo_label import auto_threshold as auto_lib
from st_tf.pseudo_label import detection
from st_tf.pseudo_label import inference
from st_tf.pseudo_label import inputs
from st_tf.pseudo_label import options as options_lib
from st_tf.pseudo_label import teacher as teacher_lib
from st_tf.pseudo_label import writer as writer_lib


@dataclasses.dataclass(frozen=True)
class Thresholds:
  """The resolved thresholds of a job.

  Attributes:
    selection: the boxes kept (thresholds in [0, 1]; sizes in original
      pixels).
    quality_thresholds: where quality vs ground truth is reported (with
      'auto', the chosen score threshold is added).
    chosen: `AutoThreshold.choose`'s dict when a value is 'auto', else None.
  """
  selection: detection.BoxSelection
  quality_thresholds: Sequence[float]
  chosen: Optional[Dict[str, Any]]


def auto_thresholds(request: options_lib.ThresholdOptions,
                    teacher: teacher_lib.Teacher,
                    strategy: tf.distribute.Strategy,
                    units: Sequence[inputs.WorkUnit],
                    nms: options_lib.InferenceOptions,
                    job: options_lib.JobOptions) -> Dict[str, Any]:
  """`request.auto`'s thresholds: from an earlier job's manifest, else a
  probe.

  The probe is the first `auto.num_images` images of `units` (the caller
  gives ALL input files, not this job's part, so every job of an array
  chooses the same values) at `request.limits()` (size and count limits),
  inferred with the labeling's NMS and test-time augmentation `nms`: the
  probe scores boxes exactly as the labeling will (at a given score, a
  multi-scale teacher keeps more boxes than a single-scale one).
  """
  auto, limits = request.auto, request.limits()
  for manifest in writer_lib.read_manifests(job.output_dir):
    if 'auto_threshold' in manifest:
      logging.info('Reusing the auto thresholds of %s: %s',
                   manifest['_path'], manifest['auto_threshold'])
      return manifest['auto_threshold']
  generator = nms.generator(auto.floor, limits.max_boxes)
  probe_selection = detection.BoxSelection(auto.floor, None,
                                           limits.min_box_size,
                                           limits.max_boxes)
  infer = inference.make_stages(teacher, strategy, job.batch_size, nms,
                                generator, probe_selection)
  scores = auto_lib.probe(
      infer, inputs.batches(units, teacher.input_size, job.batch_size,
                            job.skip_corrupt, teacher.input_pad_value),
      auto.num_images)
  chosen = auto.choose(scores, request.band_low is not None)
  logging.info('Auto thresholds (count matching, no ground truth): %s',
               chosen)
  print(f'pseudo_label: auto thresholds {chosen}')
  return chosen


def resolve(request: options_lib.ThresholdOptions,
            quality_thresholds: Sequence[float],
            teacher: teacher_lib.Teacher, strategy: tf.distribute.Strategy,
            all_units: Sequence[inputs.WorkUnit],
            nms: options_lib.InferenceOptions,
            job: options_lib.JobOptions) -> Thresholds:
  """The job's `Thresholds`, as the teacher's task resolves them
  (`Task.resolve_thresholds`: `resolve_boxes` or `resolve_unused`)."""
  return tasks.get(teacher.task).resolve_thresholds(
      request, quality_thresholds, teacher, strategy, all_units, nms, job)


def resolve_boxes(request: options_lib.ThresholdOptions,
                  quality_thresholds: Sequence[float],
                  teacher: teacher_lib.Teacher,
                  strategy: tf.distribute.Strategy,
                  all_units: Sequence[inputs.WorkUnit],
                  nms: options_lib.InferenceOptions,
                  job: options_lib.JobOptions) -> Thresholds:
  """A box-selecting (detection) job's `Thresholds`: given or 'auto' (see
  `auto_thresholds`) ones and the ignore band.

  ValueError when a given `band_low` exceeds the score threshold.
  """
  is_auto = request.is_auto
  score_threshold, band_low = request.score_threshold, request.band_low
  chosen = None
  if any(is_auto.values()):
    chosen = auto_thresholds(request, teacher, strategy, all_units, nms, job)
    score_threshold = (chosen['score_threshold']
                       if is_auto['score_threshold'] else score_threshold)
    band_low = chosen['band_low'] if is_auto['band_low'] else band_low
    # Quality is also reported at the chosen threshold itself.
    quality_thresholds = sorted(set(quality_thresholds) |
                                {round(float(score_threshold), 4)})
  elif band_low is not None and band_low > score_threshold:
    raise ValueError(f'band_low ({band_low}) must be <= score_threshold '
                     f'({score_threshold})')
  selection = detection.BoxSelection(
      score_threshold, dict(request.class_thresholds or {}),
      request.min_box_size, request.max_boxes, band_low)
  return Thresholds(selection, quality_thresholds, chosen)


def resolve_unused(request: options_lib.ThresholdOptions,
                   quality_thresholds: Sequence[float]) -> Thresholds:
  """The `Thresholds` of a task without box selection (segmentation): the
  selection is unused, 'auto' reads 0.5 and there is no band."""
  selection = detection.BoxSelection(
      0.5 if request.is_auto['score_threshold'] else request.score_threshold,
      dict(request.class_thresholds or {}), request.min_box_size,
      request.max_boxes, None)
  return Thresholds(selection, quality_thresholds, None)


def selection_settings(request: options_lib.ThresholdOptions,
                       thresholds: Thresholds) -> Dict[str, Any]:
  """The manifest settings' 'selection': 'auto' where the request says so
  (the manifest's 'auto_threshold' holds the chosen values)."""
  settings = thresholds.selection.as_dict()
  if thresholds.chosen is not None:
    settings.update({k: 'auto' for k, v in request.is_auto.items() if v},
                    auto_threshold=request.auto.settings())
  return settings
