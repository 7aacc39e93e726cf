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

Code: `pseudo_label` groups its arguments (`options.py`), plans the units
(`inputs.plan`), resolves the thresholds (`thresholds.resolve`: 'auto' and
the ignore band), creates the `OutputFolder` and the labeler, labels the
pending units (`batch_loop.label_pending`) and finishes the job here.
"""
from __future__ import annotations

from typing import (Any, Callable, Dict, Mapping, Optional, Sequence, Tuple,
                    Union)

from absl import logging
import gin
import tensorflow as tf

from st_tf import tasks
from st_tf.data import metadata as metadata_lib
from st_tf.pseudo_label import auto_threshold as auto_lib
from st_tf.pseudo_label import batch_loop
from st_tf.pseudo_label import detection
from st_tf.pseudo_label import gallery
from st_tf.pseudo_label import inference
from st_tf.pseudo_label import inputs
from st_tf.pseudo_label import labeler as labeler_lib
from st_tf.pseudo_label import options as options_lib
from st_tf.pseudo_label import quality as quality_lib
from st_tf.pseudo_label import teacher as teacher_lib
from st_tf.pseudo_label import thresholds as thresholds_lib
from st_tf.pseudo_label import writer as writer_lib
from st_tf.training import strategy as strategy_lib


def has_ground_truth(path: str, task: str) -> bool:
  """Whether the first record of `path` holds labels for `task` (its
  `Task.ground_truth_key`)."""
  key = tasks.get(task).ground_truth_key
  for raw in tf.data.TFRecordDataset(path).take(1):
    f = tf.train.Example.FromString(raw.numpy()).features.feature
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


def _check_args(job: options_lib.JobOptions,
                pixels: options_lib.PixelOptions,
                quality_thresholds: Sequence[float],
                request: options_lib.ThresholdOptions) -> None:
  """ValueError for a bad job split, batch size or threshold value."""
  thresholds = pixels.named_thresholds() + [
      (f'quality_thresholds[{i}]', t)
      for i, t in enumerate(quality_thresholds)] + request.named_thresholds()
  if job.num_shards < 1 or not 0 <= job.shard_index < job.num_shards:
    raise ValueError(f'need 0 <= shard_index < num_shards, got shard_index='
                     f'{job.shard_index}, num_shards={job.num_shards}')
  if job.batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {job.batch_size}')
  for name, value in thresholds:
    detection.check_threshold(value, name)


def _load_teacher(teacher: Union[teacher_lib.Teacher,
                                 teacher_lib.TeacherFactory],
                  strategy: Union[Callable[[], tf.distribute.Strategy],
                                  tf.distribute.Strategy],
                  num_classes: Optional[int], flip_tta: bool
                  ) -> Tuple[teacher_lib.Teacher, tf.distribute.Strategy]:
  """(the teacher, built in the strategy's scope, checked; the strategy)."""
  strategy = strategy() if callable(strategy) else strategy
  with strategy.scope():
    if not isinstance(teacher, teacher_lib.Teacher):
      teacher = teacher()
  teacher.check_num_classes(num_classes)
  tasks.get(teacher.task).check_flip_tta(teacher, flip_tta)
  return teacher, strategy


def _settings(teacher: teacher_lib.Teacher, paths: Sequence[str],
              request: options_lib.ThresholdOptions,
              thresholds: thresholds_lib.Thresholds,
              pixels: options_lib.PixelOptions,
              nms: options_lib.InferenceOptions,
              output: options_lib.OutputOptions) -> Dict[str, Any]:
  """The manifest's settings: what must match when a job resumes."""
  settings = {
      'selection': thresholds_lib.selection_settings(request, thresholds),
      **pixels.settings(),
      'flip_tta': nms.flip_tta, 'input_size': list(teacher.input_size),
      'keep_empty_images': output.keep_empty_images,
      'nms_version': nms.nms_version,
      'nms_iou_threshold': nms.nms_iou_threshold, 'input_files': paths}
  if tuple(float(s) for s in nms.scales) != (1.0,):  # Old manifests stay valid.
    settings['scales'] = [float(s) for s in nms.scales]
  return settings


def _output_folder(job: options_lib.JobOptions, teacher: teacher_lib.Teacher,
                   settings: Dict[str, Any],
                   chosen: Optional[Dict[str, Any]]
                   ) -> writer_lib.OutputFolder:
  """The job's `OutputFolder` (+ the manifest's 'auto_threshold')."""
  folder = writer_lib.OutputFolder(
      job.output_dir, teacher_id=teacher.teacher_id, task=teacher.task,
      settings=settings, shard_index=job.shard_index,
      num_shards=job.num_shards)
  if chosen is not None:
    folder.manifest['auto_threshold'] = chosen
  return folder


def _inference(teacher: teacher_lib.Teacher,
               strategy: tf.distribute.Strategy, job: options_lib.JobOptions,
               nms: options_lib.InferenceOptions,
               thresholds: thresholds_lib.Thresholds,
               num_classes: Optional[int], with_quality: bool
               ) -> inference.InferenceStages:
  """The labeling's inference; NMS keeps the boxes above the lowest
  selection (or, when scored, quality) threshold."""
  selection = thresholds.selection
  lowest = selection.lowest_threshold()
  quality_threshold = (min(thresholds.quality_thresholds) if with_quality
                       else None)
  if with_quality:
    lowest = min(lowest, quality_threshold)
  generator = nms.generator(lowest, selection.max_boxes)
  return inference.make_stages(teacher, strategy, job.batch_size, nms,
                               generator, selection, num_classes,
                               quality_threshold)


def _category_names(output: options_lib.OutputOptions,
                    teacher: teacher_lib.Teacher,
                    folder: writer_lib.OutputFolder) -> Dict[int, str]:
  """{class id: name} (see `pseudo_label`'s `category_names`), also put in
  the manifest."""
  names = (metadata_lib.normalize_names(output.category_names,
                                        'pseudo_label.category_names') or
           metadata_lib.configured_category_names() or
           dict(teacher.category_names or {}))
  if names:  # Not a setting: naming classes does not change the labels.
    folder.manifest['category_names'] = {str(k): v for k, v in
                                         sorted(names.items())}
  return names


def _labeler(teacher: teacher_lib.Teacher, num_classes: Optional[int],
             with_quality: bool, output: options_lib.OutputOptions,
             names: Mapping[int, str], pixels: options_lib.PixelOptions,
             quality_thresholds: Sequence[float]
             ) -> Union[labeler_lib.DetectionLabeler,
                        labeler_lib.SegmentationLabeler]:
  """The teacher task's labeler (`Task.make_labeler`, `labeler.py`)."""
  options = dict(teacher_id=teacher.teacher_id,
                 num_classes=num_classes or teacher.num_classes,
                 with_quality=with_quality,
                 keep_empty_images=output.keep_empty_images,
                 gallery_size=output.gallery_size, category_names=names)
  return tasks.get(teacher.task).make_labeler(options, pixels,
                                              quality_thresholds)


def _quality(folder: writer_lib.OutputFolder, with_quality: bool, task: str,
             seg_counts: Dict[str, list],
             quality_thresholds: Sequence[float]) -> Optional[dict]:
  """The job's pseudo-label quality (`Task.job_quality`; None when not
  scored)."""
  if not with_quality:
    return None
  return tasks.get(task).job_quality(folder, seg_counts, quality_thresholds)


def _finish(folder: writer_lib.OutputFolder, job: options_lib.JobOptions,
            teacher: teacher_lib.Teacher, labeler, with_quality: bool,
            seg_counts: Dict[str, list], quality_thresholds: Sequence[float],
            min_labels_per_image: float) -> Dict[str, Any]:
  """Quality, gallery, usability check; marks the job complete and returns
  its manifest."""
  result = _quality(folder, with_quality, teacher.task, seg_counts,
                    quality_thresholds)
  if labeler.tiles:
    path = gallery.save_gallery(
        f'{job.output_dir}/gallery-{job.shard_index:05d}.png', labeler.tiles)
    logging.info('Gallery: %s', path)
  writer_lib.check_usable(folder.totals(), job.output_dir, teacher.teacher_id,
                          min_labels_per_image)
  manifest = folder.finish(result)
  logging.info('Pseudo-labeled %d images (%s); quality: %s',
               manifest['totals']['images_out'], job.output_dir, result)
  return manifest


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
  job = options_lib.JobOptions(output_dir, shard_index, num_shards,
                               batch_size, skip_corrupt, max_pending_batches)
  request = options_lib.ThresholdOptions(
      score_threshold, class_thresholds, band_low,
      auto or auto_lib.AutoThreshold(), min_box_size, max_boxes)
  pixels = options_lib.PixelOptions(pixel_threshold, class_pixel_thresholds)
  nms = options_lib.InferenceOptions(nms_iou_threshold, pre_nms_top_k,
                                     nms_version, flip_tta, scales)
  output = options_lib.OutputOptions(keep_empty_images, min_labels_per_image,
                                     gallery_size, category_names)
  _check_args(job, pixels, quality_thresholds, request)
  plan = inputs.plan(input_pattern, shard_index, num_shards, skip_corrupt)
  teacher, strategy = _load_teacher(teacher, strategy, num_classes, flip_tta)
  with_quality = resolve_quality(quality, plan.paths[0], teacher.task)
  thresholds = thresholds_lib.resolve(request, quality_thresholds, teacher,
                                      strategy, plan.all_units(), nms, job)
  folder = _output_folder(job, teacher, _settings(
      teacher, plan.paths, request, thresholds, pixels, nms, output),
                          thresholds.chosen)
  infer = _inference(teacher, strategy, job, nms, thresholds, num_classes,
                     with_quality)
  labeler = _labeler(teacher, num_classes, with_quality, output,
                     _category_names(output, teacher, folder), pixels,
                     thresholds.quality_thresholds)
  seg_counts = batch_loop.label_pending(folder, plan, job, teacher, infer,
                                        labeler, with_quality, on_event)
  return _finish(folder, job, teacher, labeler, with_quality, seg_counts,
                 thresholds.quality_thresholds, min_labels_per_image)
