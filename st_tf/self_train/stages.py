"""Self-training stages: folder layout, completion checks and wall times.

Layout of the pipeline's `model_dir`::

  round_<r>/teacher/         round 0 teacher: checkpoints, eval_metrics.json
  round_<r>/pseudo_labels/   pseudo-label shards + manifest
  round_<r>/student/         checkpoints, eval_metrics.json, export/<step>/
  baseline/                  optional supervised baseline (human labels only)
  stages.json                wall time of every stage
  summary.json, summary.md   the report

A stage is skipped when its output is complete (the checks below), so a
killed pipeline resumes at the first unfinished stage; an interrupted
training stage resumes from its last checkpoint (the trainer's own resume).
A finished stage is not invalidated when the gin config changes later (e.g.
more teacher steps): run a changed config in a new model_dir.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, List, Optional

from absl import logging
import tensorflow as tf
import tf_keras

from st_tf import atomic_io
from st_tf.evaluation import runner as eval_runner
from st_tf.export import saved_model
from st_tf.pseudo_label import writer as writer_lib
from st_tf.training import checkpoints

STATE_FILE = 'stages.json'
TRAIN_DONE_FILE = 'train_done.json'
EXPORT_SUBDIR = 'export'


def write_json(path: str, data: Any) -> None:
  """Writes JSON atomically and durably (`atomic_io`); makes the folder."""
  tf.io.gfile.makedirs(os.path.dirname(path) or '.')
  atomic_io.write_json(path, data, indent=2, sort_keys=True)


def read_json(path: str) -> Any:
  return atomic_io.read_json(path)


def _read_or_none(path: str) -> Optional[Any]:
  """The JSON at `path`; None when missing or torn (the stage reruns)."""
  if not tf.io.gfile.exists(path):
    return None
  try:
    return atomic_io.read_json(path)
  except atomic_io.TornFileError as e:
    logging.warning('%s; the stage is treated as not complete.', e)
    return None


def read_json_or_none(path: str) -> Optional[Any]:
  """The JSON at `path`, or None when it is missing or torn."""
  return _read_or_none(path)


def final_step(checkpoint_dir: str) -> Optional[int]:
  """Step of the latest checkpoint in `checkpoint_dir` (None: none)."""
  latest = tf.train.latest_checkpoint(checkpoint_dir)
  return None if latest is None else checkpoints.checkpoint_step(latest)


def mark_trained(train_dir: str) -> Dict[str, Any]:
  """Records that training in `train_dir` ran to its end."""
  record = {'step': final_step(train_dir),
            'checkpoint': tf.train.latest_checkpoint(train_dir)}
  write_json(os.path.join(train_dir, TRAIN_DONE_FILE), record)
  return record


def train_complete(train_dir: str) -> bool:
  """`train` returned (marker written) and its checkpoint is still there."""
  record = _read_or_none(os.path.join(train_dir, TRAIN_DONE_FILE))
  return record is not None and final_step(train_dir) == record.get('step')


def eval_complete(eval_dir: str, checkpoint_dir: str) -> bool:
  """`eval_metrics.json` in `eval_dir` is for the final checkpoint step."""
  record = _read_or_none(os.path.join(eval_dir, eval_runner.METRICS_FILE))
  if record is None:
    return False
  step = final_step(checkpoint_dir)
  return step is not None and record.get('step') == step


def read_metrics(eval_dir: str) -> Dict[str, Any]:
  """{'step', 'checkpoint', 'metrics'} written by the eval stage."""
  return read_json(os.path.join(eval_dir, eval_runner.METRICS_FILE))


def pseudo_labels_complete(output_dir: str) -> bool:
  """Every job's manifest is there and says complete, and the shards hold
  at least one image (else the student could not read them)."""
  manifests = writer_lib.read_manifests(output_dir, skip_torn=True)
  return bool(manifests) and all(m.get('complete') for m in manifests) and (
      len(manifests) == manifests[0].get('num_shards')) and sum(
          m.get('totals', {}).get('images_out', 0) for m in manifests) > 0


def pseudo_label_stats(output_dir: str) -> Dict[str, Any]:
  """Totals over the manifests: task, images in/out, labels kept, quality.

  `labels` counts boxes (detection) or labeled pixels (segmentation).
  """
  manifests = writer_lib.read_manifests(output_dir)
  if not manifests:
    raise ValueError(f'no pseudo-label manifest in {output_dir}')
  totals = [m['totals'] for m in manifests]
  images_out = sum(t['images_out'] for t in totals)
  labels = sum(int(round(t['labels_per_image'] * t['images_out']))
               for t in totals)
  return {'dir': output_dir, 'task': manifests[0]['task'],
          'teacher_id': manifests[0]['teacher_id'],
          'images_in': sum(t['images_in'] for t in totals),
          'images_out': images_out, 'labels': labels,
          'labels_per_image': labels / images_out if images_out else 0.0,
          'score_threshold': _score_threshold(manifests[0]),
          'quality': manifests[0].get('quality')}


def _score_threshold(manifest: Dict[str, Any]) -> Optional[float]:
  """The detection threshold a job used (its auto choice, if any)."""
  if 'auto_threshold' in manifest:
    return manifest['auto_threshold']['score_threshold']
  value = manifest.get('settings', {}).get('selection', {}).get(
      'score_threshold')
  return value if isinstance(value, (int, float)) else None


def export_dir_for(train_dir: str) -> Optional[str]:
  """`<train_dir>/export/<final step>` (None when there is no checkpoint)."""
  step = final_step(train_dir)
  return (None if step is None else
          os.path.join(train_dir, EXPORT_SUBDIR, str(step)))


def export_complete(train_dir: str) -> bool:
  """The final checkpoint's SavedModel is there, whole (every file of its
  `saved_model.FILE_LIST`, with its size)."""
  path = export_dir_for(train_dir)
  return path is not None and saved_model.is_complete(path)


class StageLog:
  """Runs stages in order, skipping complete ones; keeps their wall times.

  `model_dir/stages.json` maps a stage name to ``{'seconds': float}`` (the
  run that produced its output); `status` (this run) is 'ran' or 'skipped'.
  """

  def __init__(self, model_dir: str):
    self.path = os.path.join(model_dir, STATE_FILE)
    self.records: Dict[str, Dict[str, Any]] = {}
    if tf.io.gfile.exists(self.path):
      try:
        self.records = read_json(self.path)
      except atomic_io.TornFileError as e:
        # Only wall times live here: completion is read from the stage
        # folders, so the file is rebuilt from them as stages run or skip.
        logging.warning('%s Rebuilding it: stage completion is read from '
                        'the stage folders; earlier wall times are lost.', e)
    self.status: Dict[str, str] = {}

  def run(self, name: str, is_complete: Callable[[], bool],
          fn: Callable[[], Any]) -> bool:
    """Runs `fn` unless `is_complete()`; returns whether it ran."""
    if is_complete():
      logging.info('self_train: stage %s is complete, skipping.', name)
      self.status[name] = 'skipped'
      return False
    logging.info('self_train: running stage %s.', name)
    tf_keras.backend.clear_session()
    start = time.time()
    fn()
    if not is_complete():
      raise RuntimeError(f'self_train: stage {name} finished but its output '
                         'is not complete (see the log above)')
    self.records[name] = {'seconds': round(time.time() - start, 2)}
    self.status[name] = 'ran'
    write_json(self.path, self.records)
    return True

  def table(self) -> List[Dict[str, Any]]:
    """[{'name', 'seconds', 'status'}] for the stages of this run, in order."""
    return [dict(self.records.get(name, {}), name=name, status=status)
            for name, status in self.status.items()]
