"""The task registry (`st_tf.tasks`) and each task's hooks."""
import pytest
import tensorflow as tf
from official.vision.modeling import retinanet_model
from official.vision.modeling import segmentation_model

from st_tf import tasks
from st_tf.data import schema
from st_tf.evaluation import coco
from st_tf.evaluation import segmentation as seg_eval
from st_tf.export import saved_model
from st_tf.pseudo_label import auto_threshold
from st_tf.pseudo_label import inference
from st_tf.pseudo_label import labeler
from st_tf.pseudo_label import options as options_lib


def _labeler_options():
  return dict(teacher_id='t', num_classes=4, with_quality=False,
              keep_empty_images=True, gallery_size=0, category_names={})


def _request(score_threshold, band_low=None):
  return options_lib.ThresholdOptions(
      score_threshold, {2: 0.7}, band_low, auto_threshold.AutoThreshold(),
      1.0, 50)


class _Folder:
  """An `OutputFolder` stand-in: its quality rows only."""

  def __init__(self, rows):
    self.rows = rows

  def quality_images(self):
    return self.rows


def test_both_tasks_registered_in_order():
  assert tasks.names() == ['detection', 'segmentation']
  assert tasks.all_tasks() == (tasks.DETECTION, tasks.SEGMENTATION)
  assert tasks.get('detection') is tasks.DETECTION
  assert tasks.get('segmentation') is tasks.SEGMENTATION
  for task in tasks.all_tasks():
    assert isinstance(task, tasks.Task)
    assert tasks.get(task.name) is task


def test_unknown_task_names_the_known_ones():
  with pytest.raises(ValueError) as error:
    tasks.get('depth')
  assert str(error.value) == ("unknown task 'depth'; expected one of "
                              "['detection', 'segmentation']")


def test_register_refuses_a_taken_name():
  with pytest.raises(ValueError, match="'detection' is already registered"):
    tasks.register(tasks.DETECTION)
  assert tasks.names() == ['detection', 'segmentation']


def test_task_is_abstract():
  with pytest.raises(TypeError):
    tasks.Task()  # pylint: disable=abstract-class-instantiated


def test_names_metrics_and_keys():
  det, seg = tasks.DETECTION, tasks.SEGMENTATION
  assert (det.name, det.metric, det.label_unit) == ('detection', 'AP',
                                                    'boxes')
  assert (seg.name, seg.metric, seg.label_unit) == ('segmentation',
                                                    'mean_iou', 'pixels')
  assert det.ground_truth_key == schema.BOX_YMIN
  assert seg.ground_truth_key == schema.SEGMENTATION_MASK
  assert det.signature_outputs == ('detection_boxes', 'detection_scores',
                                   'detection_classes', 'num_detections')
  assert seg.signature_outputs == ('class_map', 'confidence')
  assert tasks.for_metric('AP') is det
  assert tasks.for_metric('mean_iou') is seg
  assert tasks.for_metric('AP50') is seg  # The old rule: not 'AP'.


def test_models_export_and_evaluation():
  det, seg = tasks.DETECTION, tasks.SEGMENTATION
  assert det.network_class() is retinanet_model.RetinaNetModel
  assert seg.network_class() is segmentation_model.SegmentationModel
  assert det.serving_module() is saved_model.DetectionServingModule
  assert seg.serving_module() is saved_model.SegmentationServingModule
  assert det.per_class() == (coco.PER_CLASS_PREFIX, 'AP',
                             '; COCO AP@[.5:.95] per category')
  assert seg.per_class() == (seg_eval.PER_CLASS_PREFIX, 'IoU', '')


def test_labelers():
  pixels = options_lib.PixelOptions(0.6, {0: 0.9})
  det = tasks.DETECTION.make_labeler(_labeler_options(), pixels, (0.5,))
  seg = tasks.SEGMENTATION.make_labeler(_labeler_options(), pixels,
                                        (0.3, 0.5))
  assert isinstance(det, labeler.DetectionLabeler)
  assert not isinstance(det, labeler.SegmentationLabeler)
  assert isinstance(seg, labeler.SegmentationLabeler)
  assert seg.pixel_threshold == 0.6
  assert seg.class_pixel_thresholds == {0: 0.9}
  assert seg.quality_thresholds == (0.3, 0.5)
  assert (det.teacher_id, det.num_classes) == ('t', 4)


def test_thresholds():
  seg = tasks.SEGMENTATION.resolve_thresholds(
      _request('auto', 'auto'), (0.4,), None, None, (), None, None)
  assert seg.selection.score_threshold == 0.5
  assert seg.selection.band_low is None and seg.chosen is None
  assert list(seg.quality_thresholds) == [0.4]
  given = tasks.SEGMENTATION.resolve_thresholds(
      _request(0.8, 0.9), (0.4,), None, None, (), None, None)
  assert (given.selection.score_threshold, given.selection.band_low) == (
      0.8, None)
  det = tasks.DETECTION.resolve_thresholds(
      _request(0.6, 0.2), (0.4,), None, None, (), None, None)
  assert (det.selection.score_threshold, det.selection.band_low) == (0.6,
                                                                     0.2)
  assert det.selection.class_thresholds == {2: 0.7}
  assert det.chosen is None
  with pytest.raises(ValueError, match=r'band_low \(0.9\) must be <='):
    tasks.DETECTION.resolve_thresholds(
        _request(0.6, 0.9), (0.4,), None, None, (), None, None)


def test_quality_hooks(tmp_path):
  counts = {'0.5': [[1, 0], [0, 1], [2, 0]]}
  assert tasks.SEGMENTATION.job_quality(_Folder([]), {}, (0.5,)) is None
  assert set(tasks.SEGMENTATION.job_quality(_Folder([]), counts, (0.5,))) == {
      '0.5'}
  assert tasks.DETECTION.job_quality(_Folder([]), counts, (0.5,)) is None
  image = {'source_id': 'a', 'gt_boxes': [[0, 0, 10, 10]], 'gt_classes': [1],
           'boxes': [[0, 0, 10, 10]], 'scores': [0.9], 'classes': [1]}
  scored = tasks.DETECTION.job_quality(_Folder([image]), {}, (0.5,))
  assert scored['0.5']['precision'] == 1.0
  assert tasks.SEGMENTATION.resumed_counts({'quality': counts}) == counts
  assert tasks.SEGMENTATION.resumed_counts({'images_in': 3}) is None
  assert tasks.DETECTION.resumed_counts({'quality': counts}) is None
  rows = tmp_path / 'rows.jsonl'
  assert not tasks.DETECTION.has_quality_rows(str(rows))
  rows.write_text('{}\n')
  assert tasks.DETECTION.has_quality_rows(str(rows))
  assert not tasks.SEGMENTATION.has_quality_rows(str(rows))


class _Teacher:
  supports_segmentation_flip = False


def test_flip_check():
  tasks.DETECTION.check_flip_tta(_Teacher(), True)
  tasks.SEGMENTATION.check_flip_tta(_Teacher(), False)
  with pytest.raises(ValueError, match='flip_tta for segmentation needs'):
    tasks.SEGMENTATION.check_flip_tta(_Teacher(), True)


def test_model_garden_outputs():
  spec = tf.TensorSpec
  det_outputs = {k: spec([1, 5]) for k in tasks.DETECTION.signature_outputs}
  seg_outputs = {'logits': spec([1, 16, 24, 5])}
  assert tasks.DETECTION.model_garden_match(det_outputs)
  assert not tasks.DETECTION.model_garden_match(seg_outputs)
  assert tasks.SEGMENTATION.model_garden_match(seg_outputs)
  assert not tasks.SEGMENTATION.model_garden_match(
      {'logits': spec([1, 5])})
  assert tasks.SEGMENTATION.model_garden_input_size(seg_outputs) == [16, 24]
  assert tasks.SEGMENTATION.model_garden_num_classes(seg_outputs) == 5
  assert tasks.DETECTION.model_garden_input_size(det_outputs) is None
  assert tasks.DETECTION.model_garden_num_classes(det_outputs) is None
  params = {'task': {'train_data': {'image_feature': {'mean': [1, 2, 3]}}}}
  assert tasks.SEGMENTATION.model_garden_pad_value(params) == (1.0, 2.0, 3.0)
  assert tasks.SEGMENTATION.model_garden_pad_value({}) is None
  assert tasks.DETECTION.model_garden_pad_value(params) is None


def test_segmentation_stage_fns():
  class Teacher:
    def segment(self, images, flip):
      return (images, flip)

  spec = inference.StageSpec(None, True, (1.0,), False, 4, 0.5, 10, None,
                             None)
  network_fn, post_fn = tasks.SEGMENTATION.stage_fns(Teacher(), spec)
  out = network_fn('images', 'info')
  assert out == {'maps': ('images', True)}
  assert post_fn(out) is out
