"""`--mode=pseudo_label`: a teacher labels unlabeled records, sharded, resumable.

    python -m st_tf.main --mode=pseudo_label --gin_file=my_pseudo.gin \
        --gin_bindings="pseudo_label.shard_index = 3" \
        --gin_bindings="pseudo_label.num_shards = 16"

Gin::

    pseudo_label.output_dir = '/data/pseudo'      # or --model_dir
    pseudo_label.input_pattern = '/data/digitscenes/unlabeled-*.tfrecord'
    pseudo_label.teacher = @saved_model_teacher   # or @checkpoint_teacher
    saved_model_teacher.export_dir = '/tmp/teacher/export/1500'
    pseudo_label.num_classes = 11                 # the student's; checked

Work split (`inputs.work_units`): the sorted input files are dealt to the
`num_shards` jobs; with fewer files than jobs every job takes its slice of
each file's records. Each (input file, part) becomes one output shard
(`writer.shard_name`), written atomically and recorded in the job's
manifest; a rerun skips finished shards.

Throughput: one tf.data pipeline over all the job's unfinished units
(`inputs.job_dataset`) feeds the teacher network and NMS + box selection
(`detection.select_in_graph`, in TensorFlow; padded tensors + counts), run
as ONE `tf.function` per batch on the main thread (`inference`). A
`BackgroundWorker` thread does the host work (records built from the input
record, `records.py`; writing; quality rows; gallery) while the next batch
is inferred.

Quality scoring (`quality`): with ground truth in the input records (e.g.
DigitScenes' unlabeled split) the job also scores its pseudo labels against
it (per-image rows, then precision / recall / COCO AP per threshold in the
manifest). 'auto' (default) does so whenever the first input record holds
ground truth; `quality=False` skips it (faster: no ground-truth parsing, no
quality rows, no COCO evaluation at the end).
"""
from __future__ import annotations

import os
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple, Union)

from absl import logging
import gin
import numpy as np
import tensorflow as tf
import tqdm

from st_tf import paths as paths_lib
from st_tf.data import files as files_lib
from st_tf.data import metadata as metadata_lib
from st_tf.data import schema
from st_tf.pseudo_label import auto_threshold as auto_lib
from st_tf.pseudo_label import background
from st_tf.pseudo_label import detection
from st_tf.pseudo_label import gallery
from st_tf.pseudo_label import inference
from st_tf.pseudo_label import inputs
from st_tf.pseudo_label import labeler as labeler_lib
from st_tf.pseudo_label import quality as quality_lib
from st_tf.pseudo_label import teacher as teacher_lib
from st_tf.pseudo_label import writer as writer_lib
from st_tf.training import strategy as strategy_lib

def has_ground_truth(path: str, task: str) -> bool:
  """Whether the first record of `path` holds labels for `task`."""
  for raw in tf.data.TFRecordDataset(path).take(1):
    f = tf.train.Example.FromString(raw.numpy()).features.feature
    key = schema.BOX_YMIN if task == 'detection' else schema.SEGMENTATION_MASK
    return key in f
  return False


QUALITY_MODES = ('auto', True, False)


def resolve_quality(quality: Union[str, bool], path: str, task: str) -> bool:
  """Whether to score quality: `quality` in `QUALITY_MODES` (see module).

  ValueError for another value, or for `quality=True` when the first input
  file `path` holds no ground truth for `task`.
  """
  if not any(quality is m or (isinstance(m, str) and quality == m)
             for m in QUALITY_MODES):
    raise ValueError(f"quality must be 'auto', True or False, got {quality!r}")
  if quality is False:
    return False
  found = has_ground_truth(path, task)
  if quality is True and not found:
    raise ValueError(f'quality=True needs {task} ground truth in the input '
                     f'records, but {path} holds none: use quality=False or '
                     "'auto'")
  return found


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


def _auto_thresholds(output_dir: str, auto: auto_lib.AutoThreshold,
                     teacher: teacher_lib.Teacher,
                     strategy: tf.distribute.Strategy,
                     units: Sequence[inputs.WorkUnit], batch_size: int,
                     limits: detection.BoxSelection, nms: Mapping[str, Any],
                     with_band: bool, skip_corrupt: bool = False
                     ) -> Dict[str, Any]:
  """`auto`'s thresholds: from an earlier job's manifest, else a probe.

  The probe is the first `auto.num_images` images of `units` (the caller
  gives ALL input files, not this job's part, so every job of an array
  chooses the same values); `limits` gives the size and count limits,
  `nms` the generator's `nms_iou_threshold`, `pre_nms_top_k`,
  `nms_version`, plus the labeling's test-time augmentation `flip_tta` and
  `scales`: the probe scores boxes exactly as the labeling will (at a given
  score, a multi-scale teacher keeps more boxes than a single-scale one).
  """
  for manifest in writer_lib.read_manifests(output_dir):
    if 'auto_threshold' in manifest:
      logging.info('Reusing the auto thresholds of %s: %s',
                   manifest['_path'], manifest['auto_threshold'])
      return manifest['auto_threshold']
  nms = dict(nms)
  flip, scales = nms.pop('flip_tta'), nms.pop('scales')
  generator = detection.make_generator(
      auto.floor, max_num_detections=limits.max_boxes, **nms)
  probe_selection = detection.BoxSelection(auto.floor, None,
                                           limits.min_box_size,
                                           limits.max_boxes)
  infer = inference.InferenceStages(
      teacher, strategy, batch_size, generator, flip,
      nms['nms_iou_threshold'], limits.max_boxes, selection=probe_selection,
      scales=scales)
  scores = auto_lib.probe(
      infer, inputs.batches(units, teacher.input_size, batch_size,
                            skip_corrupt, teacher.input_pad_value),
      auto.num_images)
  chosen = auto.choose(scores, with_band)
  logging.info('Auto thresholds (count matching, no ground truth): %s',
               chosen)
  print(f'pseudo_label: auto thresholds {chosen}')
  return chosen


def _check_args(shard_index, num_shards, batch_size, thresholds) -> None:
  if num_shards < 1 or not 0 <= shard_index < num_shards:
    raise ValueError(f'need 0 <= shard_index < num_shards, got shard_index='
                     f'{shard_index}, num_shards={num_shards}')
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  for name, value in thresholds:
    detection.check_threshold(value, name)


def _pending_shards(folder: writer_lib.OutputFolder,
                    units: Sequence[inputs.WorkUnit], paths: Sequence[str],
                    with_quality: bool, task: str, output_dir: str
                    ) -> Tuple[List[inputs.WorkUnit], List[str],
                               Dict[str, list]]:
  """(units still to label, their shard names, the segmentation quality
  counts of the finished shards) of a (resumed) job."""
  seg_counts: Dict[str, list] = {}
  stems = writer_lib.shard_stems(paths)
  pending, pending_names, unscored = [], [], []
  for unit in units:
    name = writer_lib.shard_name(unit[0], unit[1], unit[2], stems[unit[0]])
    if folder.is_done(name):
      logging.info('Skipping finished shard %s', name)
      if with_quality:
        entry = folder.manifest['shards'][name]
        if task == 'segmentation' and 'quality' in entry:
          seg_counts = quality_lib.add_counts(seg_counts, entry['quality'])
        elif entry['images_in'] and (
            task == 'segmentation' or not tf.io.gfile.exists(
                os.path.join(output_dir, name + writer_lib.QUALITY_SUFFIX))):
          unscored.append(name)  # Finished by a run with quality=False.
    else:
      pending.append(unit)
      pending_names.append(name)
  if unscored:
    logging.warning('Quality is computed without the %d finished shards that '
                    'were labeled with quality scoring off: %s',
                    len(unscored), unscored)
  return pending, pending_names, seg_counts


def _quality(folder: writer_lib.OutputFolder, with_quality: bool, task: str,
             seg_counts: Dict[str, list],
             quality_thresholds: Sequence[float]) -> Optional[dict]:
  """The job's pseudo-label quality (None when not scored)."""
  if with_quality and task == 'detection':
    scored = folder.quality_images()
    if scored:  # None when every shard was labeled with quality off.
      return quality_lib.detection_quality(scored, quality_thresholds)
  elif with_quality and seg_counts:
    return quality_lib.segmentation_quality(seg_counts)
  return None


@gin.configurable(denylist=['on_event'])
def pseudo_label(
    output_dir: Optional[str] = None,
    input_pattern: Union[str, Sequence[str]] = gin.REQUIRED,
    teacher: Union[teacher_lib.Teacher,
                   teacher_lib.TeacherFactory] = gin.REQUIRED,
    num_classes: Optional[int] = None,
    score_threshold: Union[float, str] = 0.5,
    class_thresholds: Optional[Mapping[int, float]] = None,
    band_low: Union[None, float, str] = None,
    auto: Optional[auto_lib.AutoThreshold] = None,
    min_box_size: float = 0.0,
    max_boxes: int = 100,
    pixel_threshold: float = 0.5,
    class_pixel_thresholds: Optional[Mapping[int, float]] = None,
    flip_tta: bool = False,
    scales: Sequence[float] = (1.0,),
    batch_size: int = 16,
    shard_index: int = 0,
    num_shards: int = 1,
    quality_thresholds: Sequence[float] = quality_lib.DEFAULT_THRESHOLDS,
    nms_iou_threshold: float = 0.5,
    pre_nms_top_k: int = 200,
    nms_version: str = 'batched',
    keep_empty_images: bool = True,
    min_labels_per_image: float = 0.0,
    gallery_size: int = 8,
    category_names: Optional[Mapping[int, str]] = None,
    strategy: Union[Callable[[], tf.distribute.Strategy],
                    tf.distribute.Strategy] = strategy_lib.get_strategy,
    model_dir: Optional[str] = None,
    max_pending_batches: int = 4,
    quality: Union[str, bool] = 'auto',
    skip_corrupt: bool = False,
    on_event: Optional[Callable[[str, str], None]] = None,
) -> Dict[str, Any]:
  """Pseudo-labels this job's part of `input_pattern` into `output_dir`.

  Args:
    output_dir: output folder (shared by the jobs); default `model_dir`.
    input_pattern: unlabeled TFRecords (glob / list; any of our records).
    teacher: a `Teacher`, or a factory called inside the strategy scope
      (gin `@checkpoint_teacher` / `@saved_model_teacher`).
    num_classes: the student's class count (background included); the
      teacher must agree (checkpoint teachers: at load; SavedModels: class
      ids are checked per image).
    score_threshold: detection boxes kept with score >= this, or 'auto':
      count matching without ground truth (`auto_threshold.py`; the choice
      is in the manifest's `auto_threshold`).
    class_thresholds: optional {class id: threshold}.
    band_low: the ignore band's lower bound (`detection.BoxSelection`):
      boxes in [band_low, threshold) are written as crowd boxes; None = no
      band (the paper); 'auto' = count matching at `auto.band_factor` x the
      human boxes per image.
    auto: `AutoThreshold` options for 'auto' (default `AutoThreshold()`).
    min_box_size: minimum box height and width (original pixels).
    max_boxes: boxes kept per image.
    pixel_threshold: segmentation pixels with top probability below it -> 255.
    class_pixel_thresholds: optional {class id: threshold} for the pixels
      whose argmax is that class (class-balanced pseudo pixels, e.g. {0: 0.9}
      keeps only confident background while digits use `pixel_threshold`).
    flip_tta: average the teacher over the image and its horizontal flip.
    scales: input scales of multi-scale teacher inference (checkpoint
      teachers; `multiscale.py`); (1.0,) = single scale, unchanged output.
    batch_size: global inference batch (a multiple of the replicas).
    shard_index: this job's index in a job array.
    num_shards: number of jobs.
    quality_thresholds: thresholds at which quality vs ground truth is
      reported (when quality is scored, see `quality`).
    nms_iou_threshold: NMS IoU (checkpoint teachers and flip merging).
    pre_nms_top_k: candidates per class before NMS ('v1'/'v2' only).
    nms_version: Model Garden NMS version of the pseudo-label generator.
    keep_empty_images: write images without any pseudo label too.
    min_labels_per_image: refuse (`writer.EmptyPseudoLabelsError`, job not
      marked complete) pseudo labels with fewer boxes (detection) or labeled
      pixels (segmentation) per written image; 0 only warns when there is
      none. Writing no image at all is always refused.
    gallery_size: images drawn into `gallery-<job>.png` (0: none).
    category_names: {class id: name} for the gallery and the manifest;
      default: gin `category_names` (the labeled records' metadata,
      `st_tf/data/metadata.py`), else the teacher's (an export's), else
      bare ids.
    strategy: strategy or factory (`get_strategy`).
    model_dir: alias of `output_dir` (set by `--model_dir`).
    max_pending_batches: batches inferred ahead of the background writer
      (bounds memory).
    quality: score the pseudo labels against the input records' ground
      truth: 'auto' (when the first input record holds ground truth), True
      (required: ValueError without ground truth) or False (skip; faster).
    skip_corrupt: label the readable records of a corrupt or truncated
      input file and skip the rest of it (logged); else a ValueError names
      the file.
    on_event: test hook `fn(kind, shard)`, kind in {'batch', 'shard'}.

  Returns:
    The job's manifest (also written to `manifest-<job>-of-<jobs>.json`).
  """
  output_dir = output_dir or model_dir
  if not output_dir:
    raise ValueError('pseudo_label needs output_dir (or --model_dir)')
  auto = auto or auto_lib.AutoThreshold()
  is_auto = {'score_threshold': score_threshold == 'auto',
             'band_low': band_low == 'auto'}
  _check_args(shard_index, num_shards, batch_size, [
      ('pixel_threshold', pixel_threshold)] + [
          (f'class_pixel_thresholds[{c}]', t)
          for c, t in (class_pixel_thresholds or {}).items()] + [
          (f'quality_thresholds[{i}]', t)
          for i, t in enumerate(quality_thresholds)] + [
              (name, value) for name, value in (
                  ('score_threshold', score_threshold),
                  ('band_low', band_low))
              if value is not None and not is_auto[name]])
  # One spelling of each file (relative / absolute), so resume compares them.
  paths = sorted(paths_lib.normalize(p)
                 for p in files_lib.match_files(input_pattern))
  counts = [inputs.count_records(p, skip_corrupt) for p in paths]
  if not sum(counts):
    raise ValueError(f'the unlabeled set {input_pattern!r} is empty: its '
                     f'{len(paths)} files hold no record')
  units = inputs.work_units(paths, counts, shard_index, num_shards)

  strategy = strategy() if callable(strategy) else strategy
  with strategy.scope():
    if not isinstance(teacher, teacher_lib.Teacher):
      teacher = teacher()
  teacher.check_num_classes(num_classes)
  if flip_tta and teacher.task == 'segmentation' and (
      not teacher.supports_segmentation_flip):
    raise ValueError('flip_tta for segmentation needs a checkpoint teacher')
  with_quality = resolve_quality(quality, paths[0], teacher.task)
  chosen = None
  if any(is_auto.values()) and teacher.task == 'detection':
    chosen = _auto_thresholds(
        output_dir, auto, teacher, strategy,
        inputs.work_units(paths, counts, 0, 1),
        batch_size, detection.BoxSelection(
            0.5, None, min_box_size, max_boxes),
        {'nms_iou_threshold': nms_iou_threshold,
         'pre_nms_top_k': pre_nms_top_k, 'nms_version': nms_version,
         'flip_tta': flip_tta, 'scales': scales},
        with_band=band_low is not None, skip_corrupt=skip_corrupt)
    score_threshold = (chosen['score_threshold']
                       if is_auto['score_threshold'] else score_threshold)
    band_low = chosen['band_low'] if is_auto['band_low'] else band_low
    # Quality is also reported at the chosen threshold itself.
    quality_thresholds = sorted(set(quality_thresholds) |
                                {round(float(score_threshold), 4)})
  elif teacher.task == 'detection' and band_low is not None and (
      band_low > score_threshold):
    raise ValueError(f'band_low ({band_low}) must be <= score_threshold '
                     f'({score_threshold})')
  selection = detection.BoxSelection(
      0.5 if teacher.task != 'detection' and is_auto['score_threshold']
      else score_threshold, dict(class_thresholds or {}), min_box_size,
      max_boxes, None if teacher.task != 'detection' else band_low)
  selection_settings = selection.as_dict()
  if chosen is not None:  # The settings say 'auto'; the manifest the value.
    selection_settings.update(
        {k: 'auto' for k, v in is_auto.items() if v},
        auto_threshold=auto.settings())
  settings = {
      'selection': selection_settings, 'pixel_threshold': pixel_threshold,
      'class_pixel_thresholds': {str(k): float(v) for k, v in sorted(
          (class_pixel_thresholds or {}).items())},
      'flip_tta': flip_tta, 'input_size': list(teacher.input_size),
      'keep_empty_images': keep_empty_images, 'nms_version': nms_version,
      'nms_iou_threshold': nms_iou_threshold, 'input_files': paths}
  if tuple(float(s) for s in scales) != (1.0,):  # Old manifests stay valid.
    settings['scales'] = [float(s) for s in scales]
  folder = writer_lib.OutputFolder(
      output_dir, teacher_id=teacher.teacher_id, task=teacher.task,
      settings=settings, shard_index=shard_index, num_shards=num_shards)
  if chosen is not None:
    folder.manifest['auto_threshold'] = chosen

  lowest = selection.lowest_threshold()
  quality_threshold = min(quality_thresholds) if with_quality else None
  if with_quality:
    lowest = min(lowest, quality_threshold)
  generator = detection.make_generator(
      lowest, max_num_detections=max_boxes,
      nms_iou_threshold=nms_iou_threshold, pre_nms_top_k=pre_nms_top_k,
      nms_version=nms_version)
  infer = inference.InferenceStages(
      teacher, strategy, batch_size, generator, flip_tta, nms_iou_threshold,
      max_boxes, num_classes, selection=selection,
      quality_threshold=quality_threshold, scales=scales)
  names = (metadata_lib.normalize_names(category_names,
                                        'pseudo_label.category_names') or
           metadata_lib.configured_category_names() or
           dict(teacher.category_names or {}))
  if names:  # Not a setting: naming classes does not change the labels.
    folder.manifest['category_names'] = {str(k): v for k, v in
                                         sorted(names.items())}
  options = dict(teacher_id=teacher.teacher_id,
                 num_classes=num_classes or teacher.num_classes,
                 with_quality=with_quality,
                 keep_empty_images=keep_empty_images,
                 gallery_size=gallery_size, category_names=names)
  if teacher.task == 'detection':
    labeler = labeler_lib.DetectionLabeler(**options)
  else:
    labeler = labeler_lib.SegmentationLabeler(
        pixel_threshold=pixel_threshold,
        class_pixel_thresholds=class_pixel_thresholds,
        quality_thresholds=quality_thresholds, **options)
  pending, pending_names, seg_counts = _pending_shards(
      folder, units, paths, with_quality, teacher.task, output_dir)
  total = sum(u[3] for u in units)
  with tqdm.tqdm(total=total, unit='img',
                 desc=f'pseudo_label {shard_index}/{num_shards}') as bar, (
                     background.BackgroundWorker(2 * max_pending_batches)
                 ) as worker:
    bar.update(total - sum(u[3] for u in pending))
    shards = _ShardSequence(folder, pending, pending_names, worker, labeler,
                            on_event)
    try:
      for batch in inputs.batches(pending, teacher.input_size, batch_size,
                                  skip_corrupt, teacher.input_pad_value):
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
        bar.update(len(unit_ids))
        if on_event:
          on_event('batch', shards.name(int(unit_ids[-1])))
      shards.advance_to(len(pending))
    except BaseException as e:
      shards.abort(e)
      raise
  seg_counts = quality_lib.add_counts(seg_counts, shards.seg_counts)

  result = _quality(folder, with_quality, teacher.task, seg_counts,
                    quality_thresholds)
  if labeler.tiles:
    path = gallery.save_gallery(
        f'{output_dir}/gallery-{shard_index:05d}.png', labeler.tiles)
    logging.info('Gallery: %s', path)
  writer_lib.check_usable(folder.totals(), output_dir, teacher.teacher_id,
                          min_labels_per_image)
  manifest = folder.finish(result)
  logging.info('Pseudo-labeled %d images (%s); quality: %s',
               manifest['totals']['images_out'], output_dir, result)
  return manifest
