"""Host side of pseudo-labeling: one batch of teacher outputs -> records.

Runs on the `BackgroundWorker` thread while the next batch is inferred. The
heavy lifting (thresholds, sizes, caps, mapping boxes to the original image)
already happened in the inference `tf.function`
(`detection.select_in_graph`); here each image's rows are sliced, its
record is built from the input record (`records.py`), and quality
bookkeeping / gallery tiles are collected.

Detection outputs (numpy, batch of n images): see `select_in_graph`.
Segmentation outputs: 'maps' float32 [n, H, W, 2] (top probability, class
id) in the model input frame.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
from PIL import Image

from st_tf.data import schema
from st_tf.pseudo_label import gallery
from st_tf.pseudo_label import quality
from st_tf.pseudo_label import records as records_lib
from st_tf.pseudo_label import segmentation


def _floats(f, key) -> np.ndarray:
  return np.asarray(f[key].float_list.value, np.float32)


def ground_truth_boxes(f, height: int, width: int):
  """Pixel yxyx GT boxes [G, 4] and classes [G] of a record's features."""
  boxes = np.stack([_floats(f, schema.BOX_YMIN) * height,
                    _floats(f, schema.BOX_XMIN) * width,
                    _floats(f, schema.BOX_YMAX) * height,
                    _floats(f, schema.BOX_XMAX) * width], -1).reshape(-1, 4)
  return boxes, np.asarray(f[schema.CLASS_LABEL].int64_list.value, np.int64)


class Batch:
  """One inferred batch on the host (numpy)."""

  def __init__(self, outputs: Mapping[str, np.ndarray], image_info: np.ndarray,
               records: Sequence[bytes], source_ids: Sequence[bytes]):
    """outputs: per-image teacher outputs; image_info [n, 4, 2]; records and
    source ids: the n serialized input records and their source ids."""
    self.outputs = outputs
    self.image_info = image_info
    self.records = records
    self.source_ids = source_ids

  def size(self, i: int):
    return tuple(int(round(v)) for v in self.image_info[i, 0])


class _Labeler:
  """Shared state: teacher id, class check, gallery tiles, options."""

  def __init__(self, teacher_id: str, num_classes: Optional[int],
               with_quality: bool, keep_empty_images: bool, gallery_size: int,
               category_names: Optional[Mapping[int, str]] = None):
    self.teacher_id = teacher_id
    self.category_names = dict(category_names or {})  # For the gallery.
    self.num_classes = num_classes
    self.with_quality = with_quality
    self.keep_empty_images = keep_empty_images
    self.gallery_size = gallery_size
    self.tiles: List[Image.Image] = []

  def _check_classes(self, classes: np.ndarray, valid: np.ndarray,
                     source_ids: Sequence[bytes]) -> None:
    """ValueError naming the image if a class id is outside num_classes.

    classes, valid: [n, ...] per image of `source_ids`.
    """
    if self.num_classes is None:
      return
    bad = valid & ((classes >= self.num_classes) | (classes < 0))
    if bad.any():
      index = np.argwhere(bad)[0]
      raise ValueError(
          f'teacher {self.teacher_id} predicted class id '
          f'{int(classes[tuple(index)])} for image '
          f'{source_ids[index[0]].decode()}, outside the student\'s '
          f'num_classes={self.num_classes}')


class DetectionLabeler(_Labeler):
  """Writes detection pseudo records; keeps per-image quality rows."""

  def label_batch(self, shard, batch: Batch) -> None:
    out = batch.outputs
    self._check_classes(out['classes'], out['valid'], batch.source_ids)
    serialized, kept_classes = [], []
    for i, record in enumerate(batch.records):
      k = int(out['num_kept'][i])
      height, width = batch.size(i)
      example = records_lib.parse(record)
      if self.with_quality:
        self._add_quality(shard, out, i, example, batch.source_ids[i],
                          height, width)
      if len(self.tiles) < self.gallery_size:
        self.tiles.append(gallery.draw_detections(
            schema.image_bytes_to_array(example.features.feature[
                schema.IMAGE_ENCODED].bytes_list.value[0]),
            out['boxes'][i, :k], out['classes'][i, :k], out['scores'][i, :k],
            self.category_names))
      if not k and not self.keep_empty_images:
        continue
      # Pseudo labels, then the ignore band's boxes (written as crowd).
      n = k + int(out['num_band'][i]) if 'num_band' in out else k
      serialized.append(records_lib.pseudo_detection_record(
          example, out['normalized'][i, :n], out['classes'][i, :n],
          out['scores'][i, :n], out['area'][i, :n], self.teacher_id,
          source_id=batch.source_ids[i], height=height, width=width,
          is_crowd=np.arange(n) >= k))
      kept_classes.append(out['classes'][i, :k])
    labels = (np.concatenate(kept_classes) if kept_classes else
              np.zeros([0], np.int64))
    ids, counts = np.unique(labels, return_counts=True)
    shard.write_batch(serialized, len(batch.records),
                      dict(zip(ids.tolist(), counts.tolist())))

  def _add_quality(self, shard, out, i, example, source_id, height, width
                   ) -> None:
    rows = out['quality'][i]
    gt_boxes, gt_classes = ground_truth_boxes(example.features.feature,
                                              height, width)
    shard.add_quality_image({
        'source_id': source_id.decode(),
        'gt_boxes': np.round(gt_boxes, 2).tolist(),
        'gt_classes': gt_classes.tolist(),
        'boxes': np.round(out['boxes'][i][rows], 2).tolist(),
        'scores': np.round(out['scores'][i][rows], 4).tolist(),
        'classes': out['classes'][i][rows].tolist()})


class SegmentationLabeler(_Labeler):
  """Writes segmentation pseudo records; sums quality confusion counts."""

  def __init__(self, *args, pixel_threshold: float,
               quality_thresholds: Sequence[float],
               class_pixel_thresholds: Optional[Mapping[int, float]] = None,
               **kwargs):
    super().__init__(*args, **kwargs)
    self.pixel_threshold = pixel_threshold
    self.class_pixel_thresholds = dict(class_pixel_thresholds or {})
    self.quality_thresholds = tuple(quality_thresholds)
    self.counts: Dict[str, list] = {}  # Of the current shard.

  def label_batch(self, shard, batch: Batch) -> None:
    serialized, histogram = [], {}
    for i, record in enumerate(batch.records):
      maps = segmentation.to_original(batch.outputs['maps'][i],
                                      batch.image_info[i])
      confidence = maps[..., 0]
      classes = np.rint(maps[..., 1]).astype(np.int64)
      self._check_classes(classes[None], np.ones((1,) + classes.shape, bool),
                          batch.source_ids[i:i + 1])
      label = segmentation.label_map(confidence, classes, self.pixel_threshold,
                                     self.class_pixel_thresholds)
      example = records_lib.parse(record)
      f = example.features.feature
      if self.with_quality:
        gt = schema.image_bytes_to_array(
            f[schema.SEGMENTATION_MASK].bytes_list.value[0])
        self.counts = quality.add_counts(self.counts, (
            quality.segmentation_counts(gt.reshape(label.shape), confidence,
                                        classes, self.num_classes,
                                        self.quality_thresholds)))
      if len(self.tiles) < self.gallery_size:
        self.tiles.append(gallery.draw_segmentation(
            schema.image_bytes_to_array(
                f[schema.IMAGE_ENCODED].bytes_list.value[0]), label,
            names=self.category_names))
      valid = label[label != schema.IGNORE_LABEL]
      if not valid.size and not self.keep_empty_images:
        continue
      height, width = batch.size(i)
      serialized.append(records_lib.pseudo_segmentation_record(
          example, label, self.teacher_id, source_id=batch.source_ids[i],
          height=height, width=width))
      ids, counts = np.unique(valid, return_counts=True)
      for k, v in zip(ids.tolist(), counts.tolist()):
        histogram[k] = histogram.get(k, 0) + v
    shard.write_batch(serialized, len(batch.records), histogram)
