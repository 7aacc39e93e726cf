"""`pseudo_label`'s batch loop over a job's unfinished shards (resumable).

The job's pending units (those without a finished shard in the manifest)
are read as one pipeline (`inputs.batches`); each batch is inferred on the
main thread (network + NMS + selection in one `tf.function`) and its rows
are labeled and written, unit by unit, by a `BackgroundWorker` thread while
the next batch is inferred. Shards are opened and closed in unit order.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tqdm

from st_tf import tasks
from st_tf.pseudo_label import background
from st_tf.pseudo_label import inference
from st_tf.pseudo_label import inputs
from st_tf.pseudo_label import labeler as labeler_lib
from st_tf.pseudo_label import options as options_lib
from st_tf.pseudo_label import quality as quality_lib
from st_tf.pseudo_label import teacher as teacher_lib
from st_tf.pseudo_label import writer as writer_lib


class _Result:
  """One batch's numpy `outputs`."""

  def __init__(self, outputs: Dict[str, np.ndarray]):
    self.outputs = outputs

  def label(self, labeler, shard, rows: slice, image_info: np.ndarray,
            records: np.ndarray, source_ids: np.ndarray) -> None:
    labeler.label_batch(shard, labeler_lib.Batch(
        {k: v[rows] for k, v in self.outputs.items()}, image_info, records,
        source_ids))


class _ShardSequence:
  """Opens the pending units' shards in order and closes each one as soon
  as a later unit shows up, after the background worker wrote its rows."""

  def __init__(self, folder: writer_lib.OutputFolder,
               units: Sequence[inputs.WorkUnit], names: Sequence[str],
               worker: background.BackgroundWorker,
               labeler, on_event: Optional[Callable[[str, str], None]]):
    self.folder, self.units, self.worker = folder, units, worker
    self.names = list(names)  # Shard name of each unit.
    self.labeler, self.on_event = labeler, on_event
    self.index = -1  # The open unit.
    self.context = self.shard = None
    self.seg_counts: Dict[str, list] = {}

  def name(self, index: int) -> str:
    return self.names[index]

  def advance_to(self, index: int):
    """Closes the open shard(s) before `index`; returns shard `index`."""
    while self.index < index:
      if self.context is not None:
        self._close()
      self.index += 1
      if self.index < len(self.units):
        path, part, num_parts, _ = self.units[self.index]
        self.context = self.folder.shard(self.name(self.index), {
            'input_file': path, 'part': part, 'num_parts': num_parts})
        self.shard = self.context.__enter__()  # pylint: disable=unnecessary-dunder-call
    return self.shard

  def _close(self) -> None:
    self.worker.flush()
    counts = getattr(self.labeler, 'counts', None)
    if counts:
      self.shard.extra['quality'] = counts
      self.seg_counts = quality_lib.add_counts(self.seg_counts, counts)
      self.labeler.counts = {}
    context, self.context = self.context, None
    context.__exit__(None, None, None)
    if self.on_event:
      self.on_event('shard', self.name(self.index))

  def abort(self, error: BaseException) -> None:
    """Drops queued work and removes the open shard's temporary file."""
    self.worker.cancel()
    if self.context is not None:
      context, self.context = self.context, None
      try:
        context.__exit__(type(error), error, error.__traceback__)
      except BaseException:  # pylint: disable=broad-except
        pass  # The caller re-raises `error`.


def _pending_shards(folder: writer_lib.OutputFolder,
                    units: Sequence[inputs.WorkUnit], paths: Sequence[str],
                    with_quality: bool, task: str, output_dir: str
                    ) -> Tuple[List[inputs.WorkUnit], List[str],
                               Dict[str, list]]:
  """(units still to label, their shard names, the segmentation quality
  counts of the finished shards) of a (resumed) job.

  A finished shard counts as scored when its manifest entry holds quality
  counts (`Task.resumed_counts`) or its quality rows file is there
  (`Task.has_quality_rows`).
  """
  seg_counts: Dict[str, list] = {}
  task_obj = tasks.get(task)
  stems = writer_lib.shard_stems(paths)
  pending, pending_names, unscored = [], [], []
  for unit in units:
    name = writer_lib.shard_name(unit[0], unit[1], unit[2], stems[unit[0]])
    if folder.is_done(name):
      logging.info('Skipping finished shard %s', name)
      if with_quality:
        entry = folder.manifest['shards'][name]
        counts = task_obj.resumed_counts(entry)
        if counts is not None:
          seg_counts = quality_lib.add_counts(seg_counts, counts)
        elif entry['images_in'] and not task_obj.has_quality_rows(
            os.path.join(output_dir, name + writer_lib.QUALITY_SUFFIX)):
          unscored.append(name)  # Finished by a run with quality=False.
    else:
      pending.append(unit)
      pending_names.append(name)
  if unscored:
    logging.warning('Quality is computed without the %d finished shards that '
                    'were labeled with quality scoring off: %s',
                    len(unscored), unscored)
  return pending, pending_names, seg_counts


def _submit(batch: Dict[str, tf.Tensor], infer: inference.InferenceStages,
            labeler, shards: _ShardSequence,
            worker: background.BackgroundWorker) -> np.ndarray:
  """Infers `batch` and queues the labeling of its rows, unit by unit;
  returns the rows' unit ids [n]."""
  # Network + NMS + selection in one tf.function.
  result = _Result(infer(batch['image'], batch['image_info']))
  info = batch['image_info'].numpy()
  records = batch['record'].numpy()
  source_ids = batch['source_id'].numpy()
  unit_ids = batch['unit'].numpy()
  for index in np.unique(unit_ids):  # Rows of a unit are contiguous.
    rows = np.flatnonzero(unit_ids == index)
    rows = slice(rows[0], rows[-1] + 1)
    worker.submit(result.label, labeler, shards.advance_to(index), rows,
                  info[rows], records[rows], source_ids[rows])
  return unit_ids


def label_pending(folder: writer_lib.OutputFolder, plan: inputs.Plan,
                  job: options_lib.JobOptions, teacher: teacher_lib.Teacher,
                  infer: inference.InferenceStages, labeler,
                  with_quality: bool,
                  on_event: Optional[Callable[[str, str], None]] = None
                  ) -> Dict[str, list]:
  """Labels `plan`'s units that have no finished shard in `folder`.

  `labeler` is a `labeler.DetectionLabeler` / `SegmentationLabeler`;
  `on_event(kind, shard)` (a test hook) hears each 'batch' and 'shard'.
  Returns the segmentation quality counts of all the job's shards, the
  finished ones included ({} for detection or without quality).
  """
  pending, pending_names, seg_counts = _pending_shards(
      folder, plan.units, plan.paths, with_quality, teacher.task,
      job.output_dir)
  total = sum(u[3] for u in plan.units)
  with tqdm.tqdm(total=total, unit='img',
                 desc=f'pseudo_label {job.shard_index}/{job.num_shards}'
                 ) as bar, (background.BackgroundWorker(
                     2 * job.max_pending_batches)) as worker:
    bar.update(total - sum(u[3] for u in pending))
    shards = _ShardSequence(folder, pending, pending_names, worker, labeler,
                            on_event)
    try:
      for batch in inputs.batches(pending, teacher.input_size,
                                  job.batch_size, job.skip_corrupt,
                                  teacher.input_pad_value):
        unit_ids = _submit(batch, infer, labeler, shards, worker)
        bar.update(len(unit_ids))
        if on_event:
          on_event('batch', shards.name(int(unit_ids[-1])))
      shards.advance_to(len(pending))
    except BaseException as e:
      shards.abort(e)
      raise
  return quality_lib.add_counts(seg_counts, shards.seg_counts)
