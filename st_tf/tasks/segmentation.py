"""The segmentation task: per-pixel class maps, mIoU, pixel pseudo labels."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from st_tf.data import schema
from st_tf.tasks import base


class SegmentationTask(base.Task):
  """Semantic segmentation: Model Garden `SegmentationModel`, mIoU.

  Pseudo labels are pixels above a probability threshold (no box
  selection: 'auto' thresholds do not apply), scored against ground truth
  by confusion counts summed per shard (`quality.segmentation_quality`),
  kept in the manifest so a resumed job adds the finished shards' counts.
  """

  name = 'segmentation'
  metric = 'mean_iou'
  label_unit = 'pixels'
  ground_truth_key = schema.SEGMENTATION_MASK
  signature_outputs = ('class_map', 'confidence')
  model_builder = 'build_segmentation_model'
  example_model_file = 'segmentation_tiny.gin'

  def network_class(self) -> type:
    from official.vision.modeling import segmentation_model  # pylint: disable=g-import-not-at-top
    return segmentation_model.SegmentationModel

  def serving_module(self) -> type:
    from st_tf.export import saved_model  # pylint: disable=g-import-not-at-top
    return saved_model.SegmentationServingModule

  def per_class(self) -> Tuple[str, str, str]:
    from st_tf.evaluation import segmentation  # pylint: disable=g-import-not-at-top
    return (segmentation.PER_CLASS_PREFIX, 'IoU', '')

  def checkpoint_forward(self, teacher: Any, images: Any) -> Dict[str, Any]:
    """The whole model ({'logits': ...})."""
    return teacher.model(images, training=False)

  def check_flip_tta(self, teacher: Any, flip_tta: bool) -> None:
    if flip_tta and not teacher.supports_segmentation_flip:
      raise ValueError('flip_tta for segmentation needs a checkpoint teacher')

  def model_garden_match(self, outputs: Mapping[str, Any]) -> bool:
    from st_tf.pseudo_label import mg_teacher  # pylint: disable=g-import-not-at-top
    logits = outputs.get(mg_teacher.SEGMENTATION_OUTPUT)
    return logits is not None and logits.shape.rank == 4

  def model_garden_input_size(self, outputs: Mapping[str, Any]
                              ) -> Optional[Sequence[int]]:
    """The 'logits' size."""
    from st_tf.pseudo_label import mg_teacher  # pylint: disable=g-import-not-at-top
    return list(outputs.get(mg_teacher.SEGMENTATION_OUTPUT).shape[1:3])

  def model_garden_num_classes(self, outputs: Mapping[str, Any]
                               ) -> Optional[int]:
    """The 'logits' channels."""
    from st_tf.pseudo_label import mg_teacher  # pylint: disable=g-import-not-at-top
    return outputs[mg_teacher.SEGMENTATION_OUTPUT].shape[-1]

  def model_garden_pad_value(self, params: Mapping[str, Any]
                             ) -> Optional[Tuple[float, ...]]:
    """Segmentation configs may set their own mean
    (`task.train_data.image_feature.mean`)."""
    feature = ((params.get('task') or {}).get('train_data') or {}).get(
        'image_feature') or {}
    if feature.get('mean'):
      return tuple(float(m) for m in feature['mean'])
    return None

  def stage_fns(self, teacher: Any, spec: Any) -> base.StageFns:
    from st_tf.pseudo_label import inference  # pylint: disable=g-import-not-at-top
    return inference.segmentation_fns(teacher, spec)

  def resolve_thresholds(self, request: Any,
                         quality_thresholds: Sequence[float], teacher: Any,
                         strategy: Any, all_units: Sequence[Any], nms: Any,
                         job: Any) -> Any:
    """The selection is unused: 'auto' reads 0.5, no band."""
    from st_tf.pseudo_label import thresholds  # pylint: disable=g-import-not-at-top
    del teacher, strategy, all_units, nms, job
    return thresholds.resolve_unused(request, quality_thresholds)

  def make_labeler(self, options: Mapping[str, Any], pixels: Any,
                   quality_thresholds: Sequence[float]) -> Any:
    from st_tf.pseudo_label import labeler  # pylint: disable=g-import-not-at-top
    return labeler.SegmentationLabeler(
        pixel_threshold=pixels.pixel_threshold,
        class_pixel_thresholds=pixels.class_pixel_thresholds,
        quality_thresholds=quality_thresholds, **options)

  def job_quality(self, folder: Any, seg_counts: Mapping[str, list],
                  quality_thresholds: Sequence[float]) -> Optional[dict]:
    """Coverage / pixel accuracy / mIoU of the summed confusion counts."""
    from st_tf.pseudo_label import quality  # pylint: disable=g-import-not-at-top
    del folder, quality_thresholds
    if seg_counts:
      return quality.segmentation_quality(seg_counts)
    return None

  def resumed_counts(self, entry: Mapping[str, Any]
                     ) -> Optional[Mapping[str, list]]:
    return entry['quality'] if 'quality' in entry else None


SEGMENTATION = SegmentationTask()
