"""Model Garden's own SavedModel export as a pseudo-labeling teacher.

The teachers are exported IN THE TEST by Model Garden's exporter
(`export_saved_model_lib.export_inference_graph`, input_type
'image_tensor') from `official.vision.configs` experiments, with a tiny
ResNet-10 backbone at 64 px and random weights.
"""
import functools
import os

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.core import exp_factory
from official.vision.serving import detection as mg_detection
from official.vision.serving import export_saved_model_lib

from st_tf.data import decoders
from st_tf.data import schema
from st_tf.pseudo_label import mg_teacher
from st_tf.pseudo_label import runner
from st_tf.pseudo_label import teacher as teacher_lib
from st_tf.pseudo_label import writer
from tests.pseudo_label import tiny

SIZE = 64
NUM_CLASSES = tiny.NUM_CLASSES  # 11
# Originals: non-square ones at twice the teacher input (halved, then
# padded to 64 x 64) and one at 64 x 64 (used as is).
SHAPES = ((96, 128), (128, 64), (96, 128), (64, 64))


def _tiny_model(model, num_classes: int) -> None:
  """Shrinks an experiment's model config to ResNet-10/8 + FPN-16 at 64 px."""
  model.num_classes = num_classes
  model.input_size = [SIZE, SIZE, 3]
  model.backbone.type = 'resnet'
  model.backbone.resnet.model_id = 10
  model.backbone.resnet.depth_multiplier = 0.125
  model.decoder.type = 'fpn'
  model.decoder.fpn.num_filters = 16
  model.min_level, model.max_level = 3, 5
  model.norm_activation.use_sync_bn = False


def _export(params, export_dir, export_module=None) -> str:
  """Model Garden's exporter, laid out like its command line (saved_model/
  beside params.yaml); returns the export folder."""
  export_saved_model_lib.export_inference_graph(
      input_type='image_tensor', batch_size=None,
      input_image_size=[SIZE, SIZE], params=params, checkpoint_path=None,
      export_dir=export_dir, export_module=export_module,
      export_saved_model_subdir='saved_model')
  return export_dir


@pytest.fixture(scope='module')
def mg_detection_dir(tmp_path_factory):
  # The random weights: the same teacher every run (tf_keras initializers
  # without a seed draw one from Python's `random`).
  tf_keras.utils.set_random_seed(0)
  params = exp_factory.get_exp_config('retinanet_resnetfpn_coco')
  model = params.task.model
  _tiny_model(model, NUM_CLASSES)
  model.head.num_convs, model.head.num_filters = 1, 16
  model.anchor.num_scales, model.anchor.aspect_ratios = 1, [1.0]
  model.detection_generator.max_num_detections = 20
  module = mg_detection.DetectionModule(
      params=params, batch_size=None, input_image_size=[SIZE, SIZE],
      input_type='image_tensor')
  rng = np.random.default_rng(0)  # Spread the scores (random init ~0.01).
  for var in module.model.head.variables:
    if var.name.endswith('scores/bias:0'):
      var.assign(rng.normal(-1.0, 0.5, var.shape).astype(np.float32))
    elif var.name.endswith('scores/kernel:0'):
      var.assign(rng.normal(0.0, 1.0, var.shape).astype(np.float32))
  return _export(params, str(tmp_path_factory.mktemp('mg_det')), module)


@pytest.fixture(scope='module')
def mg_segmentation_dir(tmp_path_factory):
  tf_keras.utils.set_random_seed(1)  # The same teacher every run.
  params = exp_factory.get_exp_config('seg_deeplabv3_pascal')
  _tiny_model(params.task.model, NUM_CLASSES)
  head = params.task.model.head
  head.level, head.num_convs, head.num_filters = 3, 1, 16
  return _export(params, str(tmp_path_factory.mktemp('mg_seg')))


@pytest.fixture(scope='module')
def originals(tmp_path_factory):
  """Unlabeled records of non-square images: (pattern, {source_id: image})."""
  rng = np.random.default_rng(3)
  path = str(tmp_path_factory.mktemp('mg_data') / 'unlabeled.tfrecord')
  images = {}
  with tf.io.TFRecordWriter(path) as f:
    for i, (height, width) in enumerate(SHAPES):
      # 2 x 2 blocks: halving them is exact, so the uint8 input we feed
      # equals Model Garden's own float resize of the original (the tiny
      # random teacher is sensitive to a rounding difference).
      block = 2 if height > SIZE or width > SIZE else 1
      image = np.kron(rng.integers(0, 256, (height // block, width // block,
                                           3), dtype=np.uint8),
                      np.ones((block, block, 1), np.uint8))
      images[f'img{i}'] = image
      f.write(schema.unlabeled_example(image, f'img{i}').SerializeToString())
  return path, images


@functools.lru_cache(maxsize=None)
def _serving(export_dir):
  return tf.saved_model.load(os.path.join(export_dir, 'saved_model'))


def _direct(export_dir, image):
  """The SavedModel called by hand on one original image."""
  fn = _serving(export_dir).signatures['serving_default']
  return {k: v.numpy()[0] for k, v in fn(inputs=tf.constant(image[None])
                                         ).items()}


def _images(n=2, size=(SIZE, SIZE)):
  return tf.constant(np.random.default_rng(1).integers(
      0, 256, (n, *size, 3), dtype=np.uint8))


def test_detection_teacher_is_detected_and_matches_the_signature(
    mg_detection_dir):
  teacher = teacher_lib.saved_model_teacher(export_dir=mg_detection_dir)
  assert isinstance(teacher, mg_teacher.ModelGardenTeacher)
  assert teacher.task == 'detection' and teacher.input_size == (SIZE, SIZE)
  assert teacher.num_classes == NUM_CLASSES
  assert teacher.teacher_id.startswith('saved_model:')
  images = _images()
  direct = teacher.loaded.signatures['serving_default'](inputs=images)
  dets = teacher.detections(images, None)
  # At the export's own size Model Garden does not resize: same frame.
  np.testing.assert_allclose(dets['boxes'], direct['detection_boxes'],
                             atol=1e-4)
  np.testing.assert_array_equal(dets['classes'], direct['detection_classes'])
  assert dets['classes'].dtype == tf.int32
  assert np.all(dets['classes'].numpy() >= 1)
  # A 32 px input is scaled x2 inside: boxes come back in the 32 px frame.
  small = teacher_lib.saved_model_teacher(export_dir=mg_detection_dir,
                                          input_size=(32, 32))
  images = _images(size=(32, 32))
  direct = small.forward(images)
  np.testing.assert_allclose(small.detections(images, None)['boxes'],
                             direct['detection_boxes'] / 2.0, atol=1e-4)


def _iou(a, b):
  inter = (np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0,
                   None) *
           np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0,
                   None))
  area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
  return inter / (area(a) + area(b) - inter + 1e-9)


def test_detection_pseudo_labels_are_in_the_original_frame(
    tmp_path, mg_detection_dir, originals):
  pattern, images = originals
  out = str(tmp_path / 'out')
  manifest = runner.pseudo_label(
      output_dir=out, input_pattern=pattern, num_classes=NUM_CLASSES,
      teacher=functools.partial(teacher_lib.saved_model_teacher,
                                export_dir=mg_detection_dir),
      score_threshold=0.3, batch_size=2, gallery_size=0, quality=False)
  assert manifest['teacher_id'].startswith('saved_model:')
  decoder = decoders.DetectionDecoder(num_classes=NUM_CLASSES)
  checked = 0
  for example in tiny.read_records(writer.file_pattern(out)):
    decoded = decoder.decode(tf.constant(example.SerializeToString()))
    image = images[decoded['source_id'].numpy().decode()]
    height, width = image.shape[:2]
    got = decoded['groundtruth_boxes'].numpy() * np.array(
        [height, width] * 2)
    # Model Garden's meaning of its outputs (its `_normalize_coordinates`):
    # boxes / scale, clipped to the original image.
    direct = _direct(mg_detection_dir, image)
    keep = np.arange(20) < direct['num_detections']
    ref = np.clip(direct['detection_boxes'] /
                  np.tile(direct['image_info'][2], 2), 0,
                  np.array([height, width] * 2))[keep]
    ref_classes = direct['detection_classes'][keep]
    for box, cls in zip(got, decoded['groundtruth_classes'].numpy()):
      same = ref_classes == cls
      assert same.any() and _iou(box, ref[same]).max() > 0.9, (box, ref)
      checked += 1
    assert np.all(got >= 0) and np.all(got[:, 2] <= height + 1e-3)
    assert np.all(got[:, 3] <= width + 1e-3)
  assert checked > 0


def test_segmentation_teacher_logits_crop_and_flip(mg_segmentation_dir):
  teacher = teacher_lib.saved_model_teacher(export_dir=mg_segmentation_dir)
  assert isinstance(teacher, mg_teacher.ModelGardenTeacher)
  assert teacher.task == 'segmentation' and teacher.supports_segmentation_flip
  assert teacher.input_size == (SIZE, SIZE)
  assert teacher.num_classes == NUM_CLASSES
  images = _images()
  logits = teacher.forward(images)['logits']
  probs = tf.nn.softmax(logits, -1)
  maps = teacher.segment(images, flip=False).numpy()
  np.testing.assert_array_equal(maps[..., 1], np.argmax(probs, -1))
  np.testing.assert_allclose(maps[..., 0], np.max(probs, -1), atol=1e-5)
  flipped = tf.nn.softmax(teacher.forward(tf.image.flip_left_right(images))[
      'logits'], -1)
  average = 0.5 * (probs + tf.image.flip_left_right(flipped))
  maps = teacher.segment(images, flip=True).numpy()
  np.testing.assert_array_equal(maps[..., 1], np.argmax(average, -1))
  # A 48 x 64 input is padded to 64 x 64 inside: its rows are cropped back.
  wide = teacher_lib.saved_model_teacher(export_dir=mg_segmentation_dir,
                                         input_size=(48, 64))
  images = _images(size=(48, 64))
  logits = wide.forward(images)['logits'][:, :48]
  maps = wide.segment(images, flip=False).numpy()
  assert maps.shape == (2, 48, 64, 2)
  np.testing.assert_array_equal(maps[..., 1], np.argmax(logits, -1))


def test_segmentation_pseudo_labels_are_in_the_original_frame(
    tmp_path, mg_segmentation_dir, originals):
  pattern, images = originals
  out = str(tmp_path / 'out')
  runner.pseudo_label(
      output_dir=out, input_pattern=pattern, num_classes=NUM_CLASSES,
      teacher=functools.partial(teacher_lib.saved_model_teacher,
                                export_dir=mg_segmentation_dir),
      pixel_threshold=0.0, batch_size=2, gallery_size=0,
      quality=False)
  decoder = decoders.SegmentationDecoder(num_classes=NUM_CLASSES)
  for example in tiny.read_records(writer.file_pattern(out)):
    decoded = decoder.decode(tf.constant(example.SerializeToString()))
    image = images[decoded['source_id'].numpy().decode()]
    mask = decoded['label'].numpy()[..., 0]
    assert mask.shape == image.shape[:2]
    # Model Garden's rescale: crop the covered region, resize to original.
    direct = _direct(mg_segmentation_dir, image)
    info = direct['image_info']
    covered = np.round(info[0] * info[2]).astype(int)
    logits = tf.image.resize(direct['logits'][None, :covered[0], :covered[1]],
                             image.shape[:2])[0]
    expected = np.argmax(logits, -1)
    assert np.mean(mask == expected) > 0.9


def _fake_saved_model(path, spec, outputs):
  module = tf.Module()
  module.f = tf.function(lambda inputs: outputs(inputs),
                         input_signature=[spec])
  tf.saved_model.save(module, path, signatures=module.f)
  return path


def test_other_model_garden_exports_are_refused_with_the_fix(tmp_path):
  gin.clear_config()
  encoded = _fake_saved_model(
      str(tmp_path / 'bytes'), tf.TensorSpec([None], tf.string, 'inputs'),
      lambda x: {'detection_boxes': tf.zeros([1, 1, 4])})
  with pytest.raises(ValueError, match='input_type=image_tensor'):
    teacher_lib.saved_model_teacher(export_dir=encoded)
  classifier = _fake_saved_model(
      str(tmp_path / 'classifier'),
      tf.TensorSpec([None, None, None, 3], tf.uint8, 'inputs'),
      lambda x: {'logits': tf.zeros([tf.shape(x)[0], 5])})
  with pytest.raises(ValueError, match='image classification model'):
    teacher_lib.saved_model_teacher(export_dir=classifier)
  no_size = _fake_saved_model(
      str(tmp_path / 'no_size'),
      tf.TensorSpec([None, None, None, 3], tf.uint8, 'inputs'),
      lambda x: {k: tf.zeros([1, 1]) for k in mg_teacher.DETECTION_OUTPUTS})
  with pytest.raises(ValueError, match='saved_model_teacher.input_size'):
    teacher_lib.saved_model_teacher(export_dir=no_size)
  assert teacher_lib.saved_model_teacher(
      export_dir=no_size, input_size=(8, 8)).input_size == (8, 8)
  with pytest.raises(ValueError, match='is a detection model'):
    teacher_lib.saved_model_teacher(export_dir=no_size, input_size=(8, 8),
                                    task='segmentation')


def test_normalized_boxes_are_scaled_to_the_input_frame():
  boxes = tf.constant([[[0.5, 0.25, 1.0, 0.5]]])
  np.testing.assert_allclose(
      mg_teacher.boxes_to_input_frame(boxes, None, (40, 80), True),
      [[[20.0, 20.0, 40.0, 40.0]]])
  info = tf.constant([[[40, 80], [64, 64], [0.8, 0.8], [0, 0]]], tf.float32)
  np.testing.assert_allclose(
      mg_teacher.boxes_to_input_frame(boxes * 64, info, (40, 80), False),
      [[[40.0, 20.0, 80.0, 40.0]]])
