"""Pseudo-label output folder: atomic shards, per-job manifests, resume.

Layout of ``output_dir`` (one folder shared by all jobs of a job array)::

  pseudo-<input file stem>-<part>-of-<parts>.tfrecord   pseudo-label shards
                            (stems unique: see `shard_stems`)
  <shard>.quality.json      per-image detections + GT (only with GT)
  manifest-<job>-of-<jobs>.json                          one per job

A shard is written to ``<name>.tmp`` and renamed when complete (fsynced
first on local disks, `atomic_io`); then the job's manifest (also atomic)
records it. A restarted job skips the shards its manifest lists (and that
exist) and rewrites any other one under the same deterministic name, so an
input image is never lost nor duplicated. A folder whose manifests name
another teacher, or other settings (thresholds, job count, ...), is refused
before anything is written. A torn manifest of this job is rebuilt (its
shards relabeled under the same names); another job's torn manifest is
refused with the file to delete.
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence

from absl import logging
import tensorflow as tf

from st_tf import atomic_io

SHARD_PREFIX = 'pseudo'
MANIFEST_GLOB = 'manifest-*-of-*.json'
QUALITY_SUFFIX = '.quality.json'
VERSION = 1


def file_pattern(output_dir: str) -> str:
  """Glob of the pseudo-label TFRecord shards in `output_dir`."""
  return os.path.join(output_dir, f'{SHARD_PREFIX}-*.tfrecord')


def _stem(input_file: str) -> str:
  stem = input_file.rstrip('/').rsplit('/', 1)[-1]
  return stem[:-len('.tfrecord')] if stem.endswith('.tfrecord') else stem


def shard_stems(input_files: Sequence[str]) -> Dict[str, str]:
  """Input file -> the stem of its shard names, unique among `input_files`.

  The stem is the base name without `.tfrecord`. Files that share a base
  name (`a/x-00000.tfrecord`, `b/x-00000.tfrecord`) get `-<8 hex>` added:
  a hash of the path relative to the files' common folder, so the names
  stay the same when the whole input tree moves (or is spelled relative).
  Pass ALL the input files (every job's), so that jobs agree.
  """
  files = sorted(set(input_files))
  by_stem: Dict[str, List[str]] = collections.defaultdict(list)
  for path in files:
    by_stem[_stem(path)].append(path)
  dirs = [p.split('/')[:-1] for p in files]
  common = 0
  while dirs and all(len(d) > common and d[common] == dirs[0][common]
                     for d in dirs):
    common += 1
  out = {}
  for stem, paths in by_stem.items():
    for path in paths:
      relative = '/'.join(path.split('/')[common:])
      out[path] = stem if len(paths) == 1 else (
          f'{stem}-{hashlib.sha1(relative.encode()).hexdigest()[:8]}')
  return out


def shard_name(input_file: str, part: int, num_parts: int,
               stem: Optional[str] = None) -> str:
  """Deterministic output shard name for (input file, part).

  `stem`: from `shard_stems` (default: the base name without `.tfrecord`,
  which two input folders can share: use `shard_stems`).
  """
  stem = _stem(input_file) if stem is None else stem
  return f'{SHARD_PREFIX}-{stem}-{part:05d}-of-{num_parts:05d}.tfrecord'


def manifest_path(output_dir: str, shard_index: int, num_shards: int) -> str:
  return os.path.join(output_dir,
                      f'manifest-{shard_index:05d}-of-{num_shards:05d}.json')


def write_json(path: str, data: Any, indent: Optional[int] = 1) -> None:
  """Writes JSON atomically and durably (`atomic_io.write_json`, sorted keys).

  `indent=None` writes one line through json's C encoder (several times
  faster than an indented dump, which is pure Python): per-image data.
  """
  atomic_io.write_json(path, data, indent=indent, sort_keys=True)


def read_json(path: str) -> Any:
  return atomic_io.read_json(path)


def _job_of(path: str) -> str:
  return os.path.basename(path)[len('manifest-'):-len('.json')]


def read_manifests(output_dir: str, skip_torn: bool = False) -> List[dict]:
  """All job manifests in `output_dir` (sorted by name).

  A manifest that does not parse (torn) raises `atomic_io.TornFileError`
  naming it and the fix, or is left out with a warning (`skip_torn`).
  """
  paths = sorted(tf.io.gfile.glob(os.path.join(output_dir, MANIFEST_GLOB)))
  out = []
  for path in paths:
    try:
      out.append(dict(atomic_io.read_json(path, fix=(
          f'Delete it and rerun pseudo-label job {_job_of(path)}: it relabels '
          'its shards under the same names (nothing is duplicated).')),
                      _path=path))
    except atomic_io.TornFileError as e:
      if not skip_torn:
        raise
      logging.warning('Ignoring a torn pseudo-label manifest: %s', e)
  return out


class OutputFolder:
  """One job's view of the output folder (see the module docstring)."""

  def __init__(self, output_dir: str, *, teacher_id: str, task: str,
               settings: Dict[str, Any], shard_index: int, num_shards: int):
    """Checks the folder; writes nothing.

    Args:
      output_dir: the shared output folder.
      teacher_id: provenance id of the teacher.
      task: 'detection' or 'segmentation'.
      settings: JSON-able settings that must match on resume (thresholds...).
      shard_index: this job's index in [0, num_shards).
      num_shards: number of jobs.
    """
    self.output_dir = output_dir
    self.path = manifest_path(output_dir, shard_index, num_shards)
    settings = json.loads(json.dumps(settings))  # Normalize (tuples...).
    others = read_manifests(output_dir, skip_torn=True)
    torn = {m['_path'] for m in others} ^ set(tf.io.gfile.glob(
        os.path.join(output_dir, MANIFEST_GLOB)))
    if torn - {self.path}:  # Another job's state: only that job can redo it.
      read_manifests(output_dir)  # Raises, naming the file and the fix.
    for other in others:
      if other.get('teacher_id') != teacher_id:
        raise ValueError(
            f'{output_dir} holds pseudo labels from another teacher '
            f'({other.get("teacher_id")!r} in {other["_path"]}), not '
            f'{teacher_id!r}: use a new output folder')
      if (other.get('task') != task or other.get('settings') != settings or
          other.get('num_shards') != num_shards):
        raise ValueError(
            f'{output_dir} holds pseudo labels written with other settings '
            f'({other["_path"]}: task={other.get("task")}, num_shards='
            f'{other.get("num_shards")}, settings={other.get("settings")}); '
            f'this job has task={task}, num_shards={num_shards}, settings='
            f'{settings}: use a new output folder')
    previous = {}
    if self.path in torn:  # Rebuilt: its shards are relabeled (same names).
      logging.warning('Manifest %s is torn: relabeling this job\'s shards '
                      'under the same names.', self.path)
    elif tf.io.gfile.exists(self.path):
      previous = read_json(self.path)
    self.manifest = {
        'version': VERSION, 'teacher_id': teacher_id, 'task': task,
        'settings': settings, 'shard_index': shard_index,
        'num_shards': num_shards, 'complete': False,
        'shards': previous.get('shards', {})}

  def is_done(self, name: str) -> bool:
    """Whether shard `name` was finished by an earlier run of this job."""
    return (name in self.manifest['shards'] and
            tf.io.gfile.exists(os.path.join(self.output_dir, name)))

  @contextlib.contextmanager
  def shard(self, name: str, info: Dict[str, Any]) -> Iterator['_Shard']:
    """Writes shard `name` atomically; records it when the block succeeds.

    Yields a `_Shard` with `write(example, stats)`; `info` (input file,
    part...) is stored in the manifest entry.
    """
    tf.io.gfile.makedirs(self.output_dir)
    path = os.path.join(self.output_dir, name)
    tmp = path + '.tmp'
    shard = _Shard(tf.io.TFRecordWriter(tmp))
    try:
      yield shard
      shard.writer.close()
    except BaseException:
      shard.writer.close()
      if tf.io.gfile.exists(tmp):
        tf.io.gfile.remove(tmp)
      raise
    if shard.quality_images is not None:
      write_json(path + QUALITY_SUFFIX, shard.quality_images, indent=None)
    atomic_io.rename(tmp, path)
    self.manifest['shards'][name] = dict(info, **shard.summary())
    self._update_totals()
    write_json(self.path, self.manifest)

  def totals(self) -> Dict[str, Any]:
    """Totals over the job's finished shards (this run's and earlier)."""
    self._update_totals()
    return self.manifest['totals']

  def finish(self, quality: Optional[dict]) -> dict:
    """Marks the job complete, stores `quality`; returns the manifest."""
    self._update_totals()
    self.manifest['complete'] = True
    if quality is not None:
      self.manifest['quality'] = quality
    tf.io.gfile.makedirs(self.output_dir)
    write_json(self.path, self.manifest)
    return self.manifest

  def quality_images(self) -> List[dict]:
    """Per-image detection quality records of this job's finished shards."""
    out = []
    for name in sorted(self.manifest['shards']):
      path = os.path.join(self.output_dir, name + QUALITY_SUFFIX)
      if tf.io.gfile.exists(path):
        out.extend(read_json(path))
    return out

  def _update_totals(self) -> None:
    shards = self.manifest['shards'].values()
    hist = collections.Counter()
    for s in shards:
      hist.update({k: int(v) for k, v in s['class_histogram'].items()})
    images_out = sum(s['images_out'] for s in shards)
    labels = sum(s['num_labels'] for s in shards)
    self.manifest['totals'] = {
        'images_in': sum(s['images_in'] for s in shards),
        'images_out': images_out,
        'labels_per_image': labels / images_out if images_out else 0.0,
        'class_histogram': dict(sorted(hist.items(), key=lambda x: int(x[0]))),
    }


class EmptyPseudoLabelsError(ValueError):
  """The pseudo labels are empty, or sparser than the configured minimum."""


def check_usable(totals: Dict[str, Any], output_dir: str, teacher_id: str,
                 min_labels_per_image: float) -> None:
  """Refuses (or warns about) pseudo labels the student cannot learn from.

  Args:
    totals: `OutputFolder.totals()` of the job.
    output_dir: the output folder (for the messages).
    teacher_id: the teacher (for the messages).
    min_labels_per_image: refuse when fewer labels per written image: boxes
      (detection) or labeled pixels (segmentation). 0: only warn when the
      teacher found nothing at all.

  Raises:
    EmptyPseudoLabelsError: no image was written (the student's input
      pattern would match only empty shards), or too few labels. The job's
      manifest is then left incomplete, so no stage is marked done.
  """
  fix = ('lower score_threshold / pixel_threshold (or check the teacher) and '
         'write to a new output folder')
  if not totals['images_out']:
    raise EmptyPseudoLabelsError(
        f'pseudo_label wrote no image to {output_dir}: teacher {teacher_id} '
        f'labeled nothing in the {totals["images_in"]} input images and '
        'keep_empty_images=False, so the student would have no pseudo '
        f'input. Fix: {fix}, or set keep_empty_images=True.')
  per_image = totals['labels_per_image']
  if per_image < min_labels_per_image:
    raise EmptyPseudoLabelsError(
        f'pseudo labels in {output_dir} have {per_image:.4g} labels per '
        f'image, below pseudo_label.min_labels_per_image='
        f'{min_labels_per_image} (teacher {teacher_id}). Fix: {fix}, or '
        'lower min_labels_per_image.')
  if not per_image:
    logging.warning(
        'Teacher %s found no pseudo label in the %d images of %s: every pseudo '
        'image will train as background. To refuse such a set, set '
        'pseudo_label.min_labels_per_image > 0.', teacher_id,
        totals['images_out'], output_dir)


class _Shard:
  """Accumulates one shard's records and statistics."""

  def __init__(self, writer: tf.io.TFRecordWriter):
    self.writer = writer
    self.images_in = 0
    self.images_out = 0
    self.num_labels = 0  # boxes (detection) or labeled pixels (segmentation)
    self.histogram = collections.Counter()
    self.extra: Dict[str, Any] = {}
    self.quality_images: Optional[List[dict]] = None

  def write(self, example: tf.train.Example, histogram: Dict[int, int]
            ) -> None:
    """Writes one pseudo record; `histogram`: {class id: count} of it."""
    self.writer.write(example.SerializeToString())
    self.images_in += 1
    self.images_out += 1
    self.histogram.update({str(k): int(v) for k, v in histogram.items()})
    self.num_labels += int(sum(histogram.values()))

  def write_batch(self, serialized: List[bytes], images_in: int,
                  histogram: Dict[int, int]) -> None:
    """Writes serialized pseudo records of `images_in` input images.

    `histogram`: {class id: count} over the written records (boxes for
    detection, labeled pixels for segmentation).
    """
    for data in serialized:
      self.writer.write(data)
    self.images_in += images_in
    self.images_out += len(serialized)
    self.histogram.update({str(k): int(v) for k, v in histogram.items()})
    self.num_labels += int(sum(histogram.values()))

  def skip(self) -> None:
    """Counts an input image that produced no record."""
    self.images_in += 1

  def add_quality_image(self, record: dict) -> None:
    if self.quality_images is None:
      self.quality_images = []
    self.quality_images.append(record)

  def summary(self) -> Dict[str, Any]:
    return dict(self.extra, images_in=self.images_in,
                images_out=self.images_out, num_labels=self.num_labels,
                class_histogram=dict(self.histogram))
