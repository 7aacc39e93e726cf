"""The detection task: boxes (RetinaNet), COCO AP, box pseudo labels."""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from st_tf.data import schema
from st_tf.tasks import base


class DetectionTask(base.Task):
  """Detection: Model Garden `RetinaNetModel`, boxes, COCO AP.

  Pseudo labels are boxes selected by score ('auto' count-matching
  thresholds and the ignore band apply), scored against ground truth from
  per-image quality rows (`quality.detection_quality`).
  """

  name = 'detection'
  metric = 'AP'
  label_unit = 'boxes'
  ground_truth_key = schema.BOX_YMIN
  signature_outputs = ('detection_boxes', 'detection_scores',
                       'detection_classes', 'num_detections')
  model_builder = 'build_retinanet'
  example_model_file = 'retinanet_tiny.gin'

  def network_class(self) -> type:
    from official.vision.modeling import retinanet_model  # pylint: disable=g-import-not-at-top
    return retinanet_model.RetinaNetModel

  def serving_module(self) -> type:
    from st_tf.export import saved_model  # pylint: disable=g-import-not-at-top
    return saved_model.DetectionServingModule

  def per_class(self) -> Tuple[str, str, str]:
    from st_tf.evaluation import coco  # pylint: disable=g-import-not-at-top
    return (coco.PER_CLASS_PREFIX, 'AP', '; COCO AP@[.5:.95] per category')

  def checkpoint_forward(self, teacher: Any, images: Any) -> Dict[str, Any]:
    """Backbone + decoder + head (`teacher.retinanet_raw_outputs`)."""
    from st_tf.pseudo_label import teacher as teacher_lib  # pylint: disable=g-import-not-at-top
    return teacher_lib.retinanet_raw_outputs(teacher.network, images)

  def checkpoint_detection_stages(self, teacher: Any, generator: Any
                                  ) -> Tuple[Callable[..., Any],
                                             Callable[..., Any]]:
    """The network, then decoding + NMS (`detection.generate`)."""
    from st_tf.pseudo_label import detection  # pylint: disable=g-import-not-at-top
    config = teacher.network.get_config()
    return teacher.forward, lambda raw: detection.generate(
        generator, raw, config, teacher.input_size)

  def model_garden_match(self, outputs: Mapping[str, Any]) -> bool:
    from st_tf.pseudo_label import mg_teacher  # pylint: disable=g-import-not-at-top
    return set(mg_teacher.DETECTION_OUTPUTS) <= set(outputs)

  def stage_fns(self, teacher: Any, spec: Any) -> base.StageFns:
    from st_tf.pseudo_label import inference  # pylint: disable=g-import-not-at-top
    return inference.detection_fns(teacher, spec)

  def resolve_thresholds(self, request: Any,
                         quality_thresholds: Sequence[float], teacher: Any,
                         strategy: Any, all_units: Sequence[Any], nms: Any,
                         job: Any) -> Any:
    """Given thresholds, or 'auto' ones by count matching; the band."""
    from st_tf.pseudo_label import thresholds  # pylint: disable=g-import-not-at-top
    return thresholds.resolve_boxes(request, quality_thresholds, teacher,
                                    strategy, all_units, nms, job)

  def make_labeler(self, options: Mapping[str, Any], pixels: Any,
                   quality_thresholds: Sequence[float]) -> Any:
    from st_tf.pseudo_label import labeler  # pylint: disable=g-import-not-at-top
    del pixels, quality_thresholds  # Boxes: no pixel thresholds.
    return labeler.DetectionLabeler(**options)

  def job_quality(self, folder: Any, seg_counts: Mapping[str, list],
                  quality_thresholds: Sequence[float]) -> Optional[dict]:
    """Precision / recall / COCO AP of the job's quality rows."""
    from st_tf.pseudo_label import quality  # pylint: disable=g-import-not-at-top
    del seg_counts
    scored = folder.quality_images()
    if scored:  # None when every shard was labeled with quality off.
      return quality.detection_quality(scored, quality_thresholds)
    return None

  def has_quality_rows(self, path: str) -> bool:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.io.gfile.exists(path)


DETECTION = DetectionTask()
