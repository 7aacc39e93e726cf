"""Multi-scale teacher inference: scales=(1.0,) is the single-scale output;
other scales run for detection and segmentation, with and without flips."""
import numpy as np
import pytest
import tensorflow as tf

from st_tf.datasets.digitscenes import scenes as digitscenes
from st_tf.modeling import backbones
from st_tf.modeling import decoders
from st_tf.modeling import detection as detection_modeling
from st_tf.modeling import segmentation as segmentation_modeling
from st_tf.pseudo_label import detection
from st_tf.pseudo_label import inference
from st_tf.pseudo_label import multiscale
from st_tf.pseudo_label import teacher as teacher_lib
from tests.pseudo_label import tiny

N = 3


def _network(task, size):
  """tiny.py's networks, built at `size`."""
  common = dict(input_size=(size, size), num_classes=tiny.NUM_CLASSES,
                backbone=backbones.resnet(model_id=10, depth_multiplier=0.125),
                decoder=decoders.fpn(num_filters=16), head_num_convs=1,
                head_num_filters=16)
  if task == 'detection':
    return detection_modeling.build_retinanet(anchors=tiny.ANCHORS, **common)
  return segmentation_modeling.build_segmentation_model(
      head_level=3, min_level=3, max_level=5, **common)


def _teacher(tmp_path, task):
  model_fn = (tiny.detection_model if task == 'detection' else
              tiny.segmentation_model)
  model_dir = str(tmp_path / task)
  tiny.save_checkpoint(model_fn(), model_dir, step=1)
  return teacher_lib.checkpoint_teacher(model_dir=model_dir, model=model_fn)


def _inputs():
  images = np.stack([digitscenes.scene_for('unlabeled', i, 0, tiny.SIZE)[0]
                     for i in range(N)])
  info = np.tile(np.array([[tiny.SIZE] * 2, [tiny.SIZE] * 2, [1, 1], [0, 0]],
                          np.float32), [N, 1, 1])
  return images, info


def _stages(teacher, **kwargs):
  return inference.InferenceStages(
      teacher, tf.distribute.get_strategy(), batch_size=N,
      generator=detection.make_generator(0.3), nms_iou_threshold=0.5,
      max_num_detections=100, num_classes=tiny.NUM_CLASSES,
      selection=detection.BoxSelection(0.4), **kwargs)


@pytest.fixture(scope='module')
def teachers(tmp_path_factory):
  path = tmp_path_factory.mktemp('teachers')
  return {task: _teacher(path, task) for task in ('detection',
                                                  'segmentation')}


@pytest.mark.parametrize('task', ['detection', 'segmentation'])
def test_single_scale_equals_default_output(teachers, task):
  images, info = _inputs()
  default = _stages(teachers[task], flip=False)(images, info)
  single = _stages(teachers[task], flip=False, scales=(1.0,))(images, info)
  for key, value in default.items():
    np.testing.assert_array_equal(single[key], value, err_msg=key)


def test_multiscale_segment_at_scale_one_equals_single_scale(teachers):
  teacher = teachers['segmentation']
  images = tf.constant(_inputs()[0])
  for flip in (False, True):
    ours = multiscale.segment(teacher.forward, images, teacher.input_size,
                              (1.0,), flip, 32)
    np.testing.assert_allclose(ours, teacher.segment(images, flip),
                               atol=1e-6)


def test_multiscale_detection_at_scale_one_keeps_the_boxes(teachers):
  teacher = teachers['detection']
  images = tf.constant(_inputs()[0])
  generator = detection.make_generator(0.3)
  single = teacher.detections(images, generator)
  network, post = teacher.multiscale_detection_stages(
      generator, (1.0,), False, tiny.NUM_CLASSES, 0.5, 100)
  merged = post(network(images))
  np.testing.assert_array_equal(merged['num'], single['num'])
  for i, n in enumerate(single['num'].numpy()):
    np.testing.assert_allclose(merged['boxes'][i, :n], single['boxes'][i, :n],
                               atol=1e-4)
    np.testing.assert_allclose(merged['scores'][i, :n],
                               single['scores'][i, :n], atol=1e-6)


@pytest.mark.parametrize('task', ['detection', 'segmentation'])
@pytest.mark.parametrize('flip', [False, True])
def test_several_scales_run_in_the_input_frame(teachers, task, flip):
  images, info = _inputs()
  out = _stages(teachers[task], flip=flip, scales=(0.5, 1.0, 1.5))(
      images, info)
  single = _stages(teachers[task], flip=flip)(images, info)
  assert {k: v.shape for k, v in out.items()} == {
      k: v.shape for k, v in single.items()}
  if task == 'segmentation':
    assert out['maps'].shape == (N, tiny.SIZE, tiny.SIZE, 2)
    assert not np.allclose(out['maps'][..., 0], single['maps'][..., 0])
  else:
    kept = out['valid']
    assert kept.any()
    assert (out['boxes'][kept] >= 0).all()
    assert (out['boxes'][kept] <= tiny.SIZE).all()


def test_view_boxes_map_back_to_the_input_frame():
  dets = {'boxes': tf.constant([[[2., 4., 10., 12.]]]),
          'scores': tf.constant([[0.9]]), 'classes': tf.constant([[1]]),
          'num': tf.constant([1])}
  out = multiscale._to_input_frame(  # pylint: disable=protected-access
      dets, (32, 32), True, (64, 64))
  np.testing.assert_allclose(out['boxes'], [[[4., 40., 20., 56.]]])


def test_scaled_sizes_are_multiples_of_the_stride():
  assert multiscale.scaled_size((512, 512), 0.75, 128) == (384, 384)
  assert multiscale.scaled_size((64, 64), 0.1, 32) == (32, 32)
  with pytest.raises(ValueError, match='pseudo_label.scales'):
    multiscale.check_scales(())
  with pytest.raises(ValueError, match='positive'):
    multiscale.check_scales((1.0, -0.5))


def test_saved_model_teacher_refuses_other_scales(detection_saved_model):
  teacher = teacher_lib.saved_model_teacher(export_dir=detection_saved_model)
  with pytest.raises(ValueError, match='checkpoint teacher'):
    _stages(teacher, flip=False, scales=(0.5, 1.0))


@pytest.mark.parametrize('task', ['detection', 'segmentation'])
def test_relaxed_network_equals_one_built_at_that_size(task):
  model = (tiny.detection_model() if task == 'detection' else
           tiny.segmentation_model())
  other = _network(task, 2 * tiny.SIZE)
  other.set_weights(model.network.get_weights())
  multiscale.allow_any_input_size(model.network)
  images = tf.random.uniform([1, 2 * tiny.SIZE, 2 * tiny.SIZE, 3], 0, 255)
  ours = tf.nest.flatten(model.network(images, training=True))
  theirs = tf.nest.flatten(other(images, training=True))
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_runner_takes_scales_and_records_them(tmp_path, unlabeled,
                                              detection_teacher_dir):
  from tests.pseudo_label import test_runner  # pylint: disable=g-import-not-at-top
  one_file = sorted(tf.io.gfile.glob(unlabeled))[0]
  out = str(tmp_path / 'multi')
  manifest = test_runner._run(  # pylint: disable=protected-access
      out, one_file, detection_teacher_dir, gallery_size=0, quality=False,
      scales=(0.5, 1.0), flip_tta=True)
  assert manifest['complete']
  assert manifest['settings']['scales'] == [0.5, 1.0]
