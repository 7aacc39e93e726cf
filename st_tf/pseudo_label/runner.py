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

Work split: the sorted input files are dealt to the `num_shards` jobs
(file i -> job i % num_shards); with fewer files than jobs every job takes
its slice of each file's records (record r -> job r % num_shards). Each
(input file, part) becomes one output shard (`writer.shard_name`), written
atomically and recorded in the job's manifest; a rerun skips finished shards.

Per image: decode (`UnlabeledDecoder`), resize + zero-pad to the teacher
input size (Model Garden `resize_and_crop_image`, as the export's
`serve_encoded`), batched inference under the distribution strategy, then on
the host boxes/maps are mapped back to the original image, filtered
(`detection.select_boxes` / `segmentation.label_map`) and written with the
original encoded image bytes via `schema.detection_example` /
`schema.segmentation_example` (teacher id + scores).
"""
from __future__ import annotations

import io
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from absl import logging
import gin
import numpy as np
from PIL import Image
import tensorflow as tf
import tqdm
from official.vision.ops import preprocess_ops

from st_tf.data import decoders
from st_tf.data import files as files_lib
from st_tf.data import schema
from st_tf.evaluation import coco
from st_tf.pseudo_label import detection
from st_tf.pseudo_label import gallery
from st_tf.pseudo_label import quality
from st_tf.pseudo_label import segmentation
from st_tf.pseudo_label import teacher as teacher_lib
from st_tf.pseudo_label import writer as writer_lib
from st_tf.training import strategy as strategy_lib

# (input file, part, num_parts, number of records in the part).
WorkUnit = Tuple[str, int, int, int]


def count_records(path: str) -> int:
  """Number of records in a TFRecord file (read in the graph)."""
  return int(tf.data.TFRecordDataset(path).reduce(
      tf.constant(0, tf.int64), lambda n, _: n + 1))


def work_units(paths: Sequence[str], counts: Sequence[int], shard_index: int,
               num_shards: int) -> List[WorkUnit]:
  """This job's (file, part, num_parts, count) units (see module doc)."""
  if len(paths) >= num_shards:
    return [(p, 0, 1, n) for i, (p, n) in enumerate(zip(paths, counts))
            if i % num_shards == shard_index]
  return [(p, shard_index, num_shards, len(range(shard_index, n, num_shards)))
          for p, n in zip(paths, counts)]


def unit_dataset(unit: WorkUnit, input_size: Sequence[int],
                 batch_size: int) -> tf.data.Dataset:
  """Batches of {'image' uint8 [B,H,W,3], 'image_info' [B,4,2], 'record'}."""
  path, part, num_parts, _ = unit
  ds = files_lib.tfrecord_dataset_with_filename([path])
  if num_parts > 1:
    ds = ds.enumerate().filter(
        lambda i, _: tf.equal(i % num_parts, part)).map(lambda _, d: d)
  decoder = decoders.UnlabeledDecoder()
  size = [int(s) for s in input_size]

  def prepare(item):
    decoded = decoder.decode(item)
    image, info = preprocess_ops.resize_and_crop_image(
        decoded['image'], size, padded_size=size)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return {'image': tf.ensure_shape(image, size + [3]), 'image_info': info,
            'record': item['record']}

  return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(
      batch_size).prefetch(tf.data.AUTOTUNE)


def make_infer_fn(teacher: teacher_lib.Teacher,
                  strategy: tf.distribute.Strategy, batch_size: int,
                  generator: Any, flip: bool, nms_iou_threshold: float,
                  max_num_detections: int, num_classes: Optional[int] = None
                  ) -> Callable[[np.ndarray], Dict[str, np.ndarray]]:
  """uint8 [n <= batch_size, H, W, 3] numpy -> numpy outputs for n images.

  The batch is zero-padded to `batch_size` (one trace), split evenly over the
  replicas and run with `strategy.run`.
  """
  replicas = strategy.num_replicas_in_sync
  if batch_size % replicas:
    raise ValueError(f'batch_size {batch_size} must be a multiple of the '
                     f'{replicas} replicas')
  per_replica = batch_size // replicas

  def replica_fn(images):
    if teacher.task == 'segmentation':
      return {'maps': teacher.segment(images, flip)}
    dets = teacher.detections(images, generator)
    if flip:
      flipped = teacher.detections(tf.image.flip_left_right(images),
                                   generator)
      dets = detection.merge_flipped(
          dets, flipped, teacher.input_size[1],
          num_classes or teacher.num_classes or _UNKNOWN_NUM_CLASSES,
          nms_iou_threshold, max_num_detections)
    return dets

  @tf.function
  def step(images):
    return strategy.run(replica_fn, args=(images,))

  def infer(images: np.ndarray) -> Dict[str, np.ndarray]:
    n = len(images)
    padded = np.zeros((batch_size,) + images.shape[1:], np.uint8)
    padded[:n] = images
    values = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(padded[  # pylint: disable=g-long-lambda
            ctx.replica_id_in_sync_group * per_replica:
            (ctx.replica_id_in_sync_group + 1) * per_replica]))
    out = strategy.experimental_local_results(step(values))
    return {k: np.concatenate([np.asarray(o[k]) for o in out])[:n]
            for k in out[0]}

  return infer


# Class-count bound for flip merging when neither teacher nor caller gives one.
_UNKNOWN_NUM_CLASSES = 1024


def _features(example: tf.train.Example):
  return example.features.feature


def _floats(f, key) -> np.ndarray:
  return np.asarray(f[key].float_list.value, np.float32)


def _ground_truth_boxes(f, height: int, width: int):
  """Pixel yxyx GT boxes [G, 4] and classes [G] of a record."""
  boxes = np.stack([_floats(f, schema.BOX_YMIN) * height,
                    _floats(f, schema.BOX_XMIN) * width,
                    _floats(f, schema.BOX_YMAX) * height,
                    _floats(f, schema.BOX_XMAX) * width], -1).reshape(-1, 4)
  return boxes, np.asarray(f[schema.CLASS_LABEL].int64_list.value, np.int64)


def has_ground_truth(path: str, task: str) -> bool:
  """Whether the first record of `path` holds labels for `task`."""
  for raw in tf.data.TFRecordDataset(path).take(1):
    f = _features(tf.train.Example.FromString(raw.numpy()))
    key = schema.BOX_YMIN if task == 'detection' else schema.SEGMENTATION_MASK
    return key in f
  return False


class _Labeler:
  """Host-side per-image work: filter, build records, quality, gallery."""

  def __init__(self, teacher, selection: detection.BoxSelection,
               pixel_threshold: float, num_classes: Optional[int],
               quality_thresholds: Sequence[float], with_quality: bool,
               keep_empty_images: bool, gallery_size: int):
    self.teacher = teacher
    self.selection = selection
    self.pixel_threshold = pixel_threshold
    self.num_classes = num_classes or teacher.num_classes
    self.quality_thresholds = tuple(quality_thresholds)
    self.with_quality = with_quality
    self.keep_empty_images = keep_empty_images
    self.gallery_size = gallery_size
    self.tiles: List[Image.Image] = []
    self.seg_counts: Dict[str, list] = {}

  def _check_classes(self, classes: np.ndarray, source_id: str) -> None:
    if self.num_classes is not None and classes.size and (
        classes.max() >= self.num_classes or classes.min() < 0):
      raise ValueError(
          f'teacher {self.teacher.teacher_id} predicted class id '
          f'{int(classes.max())} for image {source_id}, outside the '
          f'student\'s num_classes={self.num_classes}')

  def label(self, shard, outputs: Mapping[str, np.ndarray], i: int,
            info: np.ndarray, record: bytes) -> None:
    f = _features(tf.train.Example.FromString(record))
    encoded = f[schema.IMAGE_ENCODED].bytes_list.value[0]
    source_id = f[schema.IMAGE_SOURCE_ID].bytes_list.value[0].decode()
    height, width = (int(round(v)) for v in info[0])
    if self.teacher.task == 'detection':
      example, histogram = self._detection(shard, outputs, i, info, f,
                                           encoded, source_id, height, width)
    else:
      example, histogram = self._segmentation(outputs, i, info, f, encoded,
                                              source_id)
    if example is None:
      shard.skip()
    else:
      shard.write(example, histogram)

  def _detection(self, shard, outputs, i, info, f, encoded, source_id,
                 height, width):
    num = int(outputs['num'][i])
    boxes = coco.boxes_to_original_pixels(outputs['boxes'][i:i + 1, :num],
                                          info[None])[0]
    scores = outputs['scores'][i, :num]
    classes = outputs['classes'][i, :num]
    self._check_classes(classes, source_id)
    kept = detection.select_boxes(boxes, scores, classes, self.selection)
    if self.with_quality:
      low = detection.select_boxes(boxes, scores, classes, self.selection,
                                   score_threshold=min(self.quality_thresholds))
      gt_boxes, gt_classes = _ground_truth_boxes(f, height, width)
      shard.add_quality_image({
          'source_id': source_id,
          'gt_boxes': np.round(gt_boxes, 2).tolist(),
          'gt_classes': gt_classes.tolist(),
          'boxes': np.round(low[0], 2).tolist(),
          'scores': np.round(low[1], 4).tolist(),
          'classes': low[2].tolist()})
    if len(self.tiles) < self.gallery_size:
      self.tiles.append(gallery.draw_detections(
          schema.png_bytes_to_array(encoded), *kept[::2], kept[1]))
    if not len(kept[0]) and not self.keep_empty_images:
      return None, {}
    scale = np.array([height, width, height, width], np.float32)
    normalized = np.clip(kept[0] / scale, 0.0, 1.0)
    area = (kept[0][:, 2] - kept[0][:, 0]) * (kept[0][:, 3] - kept[0][:, 1])
    example = schema.detection_example(
        encoded, normalized, kept[2], source_id, area=area, scores=kept[1],
        teacher_id=self.teacher.teacher_id)
    classes, counts = np.unique(kept[2], return_counts=True)
    return example, dict(zip(classes.tolist(), counts.tolist()))

  def _segmentation(self, outputs, i, info, f, encoded, source_id):
    maps = segmentation.to_original(outputs['maps'][i], info)
    confidence, classes = maps[..., 0], np.rint(maps[..., 1]).astype(np.int64)
    self._check_classes(classes, source_id)
    label = segmentation.label_map(confidence, classes, self.pixel_threshold)
    if self.with_quality:
      gt = schema.png_bytes_to_array(
          f[schema.SEGMENTATION_MASK].bytes_list.value[0])
      self.seg_counts = quality.add_counts(self.seg_counts, (
          quality.segmentation_counts(gt.reshape(label.shape), confidence,
                                      classes, self.num_classes,
                                      self.quality_thresholds)))
    if len(self.tiles) < self.gallery_size:
      self.tiles.append(gallery.draw_segmentation(
          schema.png_bytes_to_array(encoded), label))
    valid = label[label != schema.IGNORE_LABEL]
    if not valid.size and not self.keep_empty_images:
      return None, {}
    example = schema.segmentation_example(
        encoded, label, source_id, teacher_id=self.teacher.teacher_id)
    classes, counts = np.unique(valid, return_counts=True)
    return example, dict(zip(classes.tolist(), counts.tolist()))


def _check_args(shard_index, num_shards, batch_size, thresholds) -> None:
  if num_shards < 1 or not 0 <= shard_index < num_shards:
    raise ValueError(f'need 0 <= shard_index < num_shards, got shard_index='
                     f'{shard_index}, num_shards={num_shards}')
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  for name, value in thresholds:
    detection.check_threshold(value, name)


@gin.configurable(denylist=['on_event'])
def pseudo_label(
    output_dir: Optional[str] = None,
    input_pattern: Union[str, Sequence[str]] = gin.REQUIRED,
    teacher: Union[teacher_lib.Teacher,
                   teacher_lib.TeacherFactory] = gin.REQUIRED,
    num_classes: Optional[int] = None,
    score_threshold: float = 0.5,
    class_thresholds: Optional[Mapping[int, float]] = None,
    min_box_size: float = 0.0,
    max_boxes: int = 100,
    pixel_threshold: float = 0.5,
    flip_tta: bool = False,
    batch_size: int = 16,
    shard_index: int = 0,
    num_shards: int = 1,
    quality_thresholds: Sequence[float] = quality.DEFAULT_THRESHOLDS,
    nms_iou_threshold: float = 0.5,
    pre_nms_top_k: int = 200,
    nms_version: str = 'batched',
    keep_empty_images: bool = True,
    gallery_size: int = 8,
    strategy: Union[Callable[[], tf.distribute.Strategy],
                    tf.distribute.Strategy] = strategy_lib.get_strategy,
    model_dir: Optional[str] = None,
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
    score_threshold: detection boxes kept with score >= this.
    class_thresholds: optional {class id: threshold}.
    min_box_size: minimum box height and width (original pixels).
    max_boxes: boxes kept per image.
    pixel_threshold: segmentation pixels with top probability below it -> 255.
    flip_tta: average the teacher over the image and its horizontal flip.
    batch_size: global inference batch (a multiple of the replicas).
    shard_index: this job's index in a job array.
    num_shards: number of jobs.
    quality_thresholds: thresholds at which quality vs ground truth is
      reported (when the records hold ground truth).
    nms_iou_threshold: NMS IoU (checkpoint teachers and flip merging).
    pre_nms_top_k: candidates per class before NMS ('v1'/'v2' only).
    nms_version: Model Garden NMS version of the pseudo-label generator.
    keep_empty_images: write images without any pseudo label too.
    gallery_size: images drawn into `gallery-<job>.png` (0: none).
    strategy: strategy or factory (`get_strategy`).
    model_dir: alias of `output_dir` (set by `--model_dir`).
    on_event: test hook `fn(kind, shard)`, kind in {'batch', 'shard'}.

  Returns:
    The job's manifest (also written to `manifest-<job>-of-<jobs>.json`).
  """
  output_dir = output_dir or model_dir
  if not output_dir:
    raise ValueError('pseudo_label needs output_dir (or --model_dir)')
  _check_args(shard_index, num_shards, batch_size, [
      ('score_threshold', score_threshold),
      ('pixel_threshold', pixel_threshold)] + [
          (f'quality_thresholds[{i}]', t)
          for i, t in enumerate(quality_thresholds)])
  selection = detection.BoxSelection(
      score_threshold, dict(class_thresholds or {}), min_box_size, max_boxes)
  paths = files_lib.match_files(input_pattern)
  counts = [count_records(p) for p in paths]
  if not sum(counts):
    raise ValueError(f'the unlabeled set {input_pattern!r} is empty: its '
                     f'{len(paths)} files hold no record')
  units = work_units(paths, counts, shard_index, num_shards)

  strategy = strategy() if callable(strategy) else strategy
  with strategy.scope():
    if not isinstance(teacher, teacher_lib.Teacher):
      teacher = teacher()
  teacher.check_num_classes(num_classes)
  if flip_tta and teacher.task == 'segmentation' and (
      not teacher.supports_segmentation_flip):
    raise ValueError('flip_tta for segmentation needs a checkpoint teacher')
  with_quality = has_ground_truth(paths[0], teacher.task)
  settings = {
      'selection': selection.as_dict(), 'pixel_threshold': pixel_threshold,
      'flip_tta': flip_tta, 'input_size': list(teacher.input_size),
      'keep_empty_images': keep_empty_images, 'nms_version': nms_version,
      'nms_iou_threshold': nms_iou_threshold, 'input_files': paths}
  folder = writer_lib.OutputFolder(
      output_dir, teacher_id=teacher.teacher_id, task=teacher.task,
      settings=settings, shard_index=shard_index, num_shards=num_shards)

  lowest = selection.lowest_threshold()
  if with_quality:
    lowest = min([lowest] + list(quality_thresholds))
  generator = detection.make_generator(
      lowest, max_num_detections=max_boxes,
      nms_iou_threshold=nms_iou_threshold, pre_nms_top_k=pre_nms_top_k,
      nms_version=nms_version)
  infer = make_infer_fn(teacher, strategy, batch_size, generator, flip_tta,
                        nms_iou_threshold, max_boxes, num_classes)
  labeler = _Labeler(teacher, selection, pixel_threshold, num_classes,
                     quality_thresholds, with_quality, keep_empty_images,
                     gallery_size)
  total = sum(u[3] for u in units)
  with tqdm.tqdm(total=total, unit='img',
                 desc=f'pseudo_label {shard_index}/{num_shards}') as bar:
    for unit in units:
      name = writer_lib.shard_name(unit[0], unit[1], unit[2])
      if folder.is_done(name):
        logging.info('Skipping finished shard %s', name)
        if with_quality and teacher.task == 'segmentation':
          labeler.seg_counts = quality.add_counts(
              labeler.seg_counts, folder.manifest['shards'][name]['quality'])
        bar.update(unit[3])
        continue
      info = {'input_file': unit[0], 'part': unit[1], 'num_parts': unit[2]}
      counts_before = labeler.seg_counts
      labeler.seg_counts = {}
      with folder.shard(name, info) as shard:
        for batch in unit_dataset(unit, teacher.input_size, batch_size):
          outputs = infer(batch['image'].numpy())
          image_info = batch['image_info'].numpy()
          for i, record in enumerate(batch['record'].numpy()):
            labeler.label(shard, outputs, i, image_info[i], record)
          bar.update(len(image_info))
          if on_event:
            on_event('batch', name)
        if labeler.seg_counts:
          shard.extra['quality'] = labeler.seg_counts
      labeler.seg_counts = quality.add_counts(counts_before,
                                              labeler.seg_counts)
      if on_event:
        on_event('shard', name)

  result = None
  if with_quality:
    result = (quality.detection_quality(folder.quality_images(),
                                        quality_thresholds)
              if teacher.task == 'detection' else
              quality.segmentation_quality(labeler.seg_counts))
  manifest = folder.finish(result)
  if labeler.tiles:
    path = gallery.save_gallery(
        f'{output_dir}/gallery-{shard_index:05d}.png', labeler.tiles)
    logging.info('Gallery: %s', path)
  logging.info('Pseudo-labeled %d images (%s); quality: %s',
               manifest['totals']['images_out'], output_dir, result)
  return manifest
