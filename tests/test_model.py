"""Tests for st_tf.model.SelfTrainingModel (tiny Model Garden networks)."""
import functools

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.vision.configs import backbones
from official.vision.configs import common
from official.vision.configs import decoders
from official.vision.configs import retinanet as retinanet_cfg
from official.vision.configs import semantic_segmentation as seg_cfg
from official.vision.modeling import factory
from official.vision.ops import anchor

from st_tf import model as model_lib
from st_tf.losses import detection
from st_tf.losses import segmentation
from st_tf.losses import self_training

SIZE = 64
NUM_CLASSES = 4  # Background included.
ANCHOR = dict(min_level=3, max_level=4, num_scales=1, aspect_ratios=[1.0],
              anchor_size=3.0)
_BACKBONE = backbones.Backbone(
    type='mobilenet',
    mobilenet=backbones.MobileNet(model_id='MobileNetV1',
                                  filter_size_scale=0.25))
_DECODER = decoders.Decoder(type='fpn', fpn=decoders.FPN(num_filters=16))
_SPEC = tf_keras.layers.InputSpec(shape=[None, SIZE, SIZE, 3])


def _retinanet():
  """~230k-parameter RetinaNet (MobileNetV1 x0.25, FPN P3-P4), 64x64."""
  config = retinanet_cfg.RetinaNet(
      num_classes=NUM_CLASSES, min_level=3, max_level=4,
      input_size=[SIZE, SIZE, 3],
      anchor=retinanet_cfg.Anchor(num_scales=1, aspect_ratios=[1.0],
                                  anchor_size=3.0),
      backbone=_BACKBONE, decoder=_DECODER,
      head=retinanet_cfg.RetinaNetHead(num_convs=1, num_filters=16),
      norm_activation=common.NormActivation(activation='relu'))
  return factory.build_retinanet(
      _SPEC, config, l2_regularizer=tf_keras.regularizers.l2(1e-4))


def _segmenter():
  config = seg_cfg.SemanticSegmentationModel(
      num_classes=3, input_size=[SIZE, SIZE, 3], min_level=3, max_level=4,
      backbone=_BACKBONE, decoder=_DECODER,
      head=seg_cfg.SegmentationHead(level=3, num_convs=1, num_filters=16))
  return factory.build_segmentation_model(_SPEC, config)


def _detection_batch(boxes_per_image, is_pseudo, seed=0):
  """(images uint8, RetinaNet labels) built with Model Garden's labeler.

  Boxes are random, in pixels yxyx (the parser's convention for targets).
  """
  rng = np.random.default_rng(seed)
  anchors = anchor.Anchor(image_size=(SIZE, SIZE), **ANCHOR).multilevel_boxes
  labeler = anchor.AnchorLabeler(match_threshold=0.5, unmatched_threshold=0.4)
  examples = []
  for n in boxes_per_image:
    ymin, xmin = rng.uniform(0, SIZE / 2, size=(2, n))
    side = rng.uniform(12, SIZE / 2, size=n)
    boxes = np.stack([ymin, xmin, ymin + side, xmin + side], -1)
    classes = rng.integers(1, NUM_CLASSES, size=(n, 1))
    cls_t, box_t, _, cls_w, box_w = labeler.label_anchors(
        anchors, tf.constant(boxes.reshape(n, 4), tf.float32),
        tf.constant(classes.reshape(n, 1), tf.int32))
    examples.append({'cls_targets': cls_t, 'box_targets': box_t,
                     'anchor_boxes': anchors, 'cls_weights': cls_w,
                     'box_weights': box_w})
  labels = tf.nest.map_structure(lambda *t: tf.stack(t), *examples)
  batch = len(boxes_per_image)
  labels['image_info'] = tf.tile(
      tf.constant([[[SIZE, SIZE], [SIZE, SIZE], [1, 1], [0, 0]]],
                  tf.float32), [batch, 1, 1])
  labels['is_pseudo'] = tf.constant(is_pseudo, tf.float32)
  labels['num_boxes'] = tf.constant(boxes_per_image, tf.int32)
  images = tf.constant(rng.integers(0, 256, (batch, SIZE, SIZE, 3)), tf.uint8)
  return images, labels


@pytest.fixture(scope='module')
def retinanet():
  """One tiny network shared by the detection tests (building is slow)."""
  return _retinanet()


def _detection_model(network, combiner, **kwargs):
  return model_lib.SelfTrainingModel(
      network,
      functools.partial(detection.detection_loss, num_classes=NUM_CLASSES),
      combiner, **kwargs)


def _finite(logs):
  return all(np.isfinite(v).all() for v in logs.values())


def test_student_fit_with_empty_pseudo_boxes_then_teacher_batch(retinanet):
  """Graph mode (`fit`), as in training; the other tests run eagerly."""
  m = _detection_model(retinanet,
                       self_training.NormalizedCombiner(pseudo_weight=1.0))
  m.compile(optimizer=tf_keras.optimizers.SGD(0.01))
  # 2 human + 2 pseudo; the pseudo images have no box at all.
  student = _detection_batch([2, 1, 0, 0], [0., 0., 1., 1.])
  m(student[0])  # Build.
  # Optimizer slots up front: `fit` then traces the train step once (its
  # first trace would create them, and tf.function would trace again).
  m.optimizer.build(m.trainable_variables)
  head = [v for v in m.network.head.trainable_variables
          if v.name.split('/')[-2] in ('scores', 'boxes')]
  before = [v.numpy() for v in head]
  history = m.fit(tf.data.Dataset.from_tensors(student).repeat(3),
                  epochs=1, verbose=0)
  logs = {k: v[-1] for k, v in history.history.items()}
  assert _finite(logs)
  assert all(np.any(v.numpy() != b) for v, b in zip(head, before))
  assert logs['pseudo_num_positives'] == 0.0
  assert logs['pseudo_boxes_per_image'] == 0.0
  assert logs['human_num_positives'] > 0
  assert logs['learning_rate'] == pytest.approx(0.01)
  assert logs['l2_loss'] > 0
  # Averages started at the first batch (not 0) and are checkpointed.
  assert float(m.combiner.m_p) > 0 and float(m.combiner.initialized_p) == 1
  assert any(v is m.combiner.m_h for v in m.non_trainable_variables)
  # A batch with no pseudo example (the teacher): L = L_h.
  teacher = _detection_batch([1, 3, 0, 2], [0., 0., 0., 0.], seed=1)
  m_p = float(m.combiner.m_p)
  logs = m.train_on_batch(*teacher, return_dict=True)
  assert _finite(logs) and logs['pseudo_weight'] == 0.0
  assert float(m.combiner.m_p) == m_p
  m.run_eagerly = True  # Tracing the eval graph (NMS) is slow on CPU.
  eval_logs = m.evaluate(*teacher, verbose=0, return_dict=True)
  assert _finite(eval_logs) and eval_logs['human_loss'] > 0


def test_loss_scaling_and_gradient_clipping(retinanet):
  """LossScaleOptimizer path + clipped update: |delta w| <= lr * clip."""
  m = _detection_model(retinanet,
                       self_training.WeightedCombiner(pseudo_weight=0.5),
                       gradient_clip_norm=1e-3)
  m.compile(optimizer=tf_keras.mixed_precision.LossScaleOptimizer(
      tf_keras.optimizers.SGD(1.0)), run_eagerly=True)
  images, labels = _detection_batch([2, 1], [0., 1.])
  m(images, training=False)  # Build.
  before = [v.numpy() for v in m.trainable_variables]
  logs = m.train_on_batch(images, labels, return_dict=True)
  assert _finite(logs)
  delta = np.sqrt(sum(((v.numpy() - b)**2).sum()
                      for v, b in zip(m.trainable_variables, before)))
  assert 0 < delta <= 1e-3 * 1.0001


def test_call_normalizes_uint8_with_model_garden_mean_std():
  seen = {}

  class Probe(tf_keras.Model):

    def call(self, images, training=None):
      seen['images'] = images
      return {'logits': tf.zeros([1, 2, 2, 3])}

  m = model_lib.SelfTrainingModel(Probe(), segmentation.segmentation_loss,
                                  self_training.HumanOnlyCombiner())
  m(tf.fill([1, 2, 2, 3], tf.constant(255, tf.uint8)))
  expected = (255 - np.array([0.485, 0.456, 0.406]) * 255) / (
      np.array([0.229, 0.224, 0.225]) * 255)
  np.testing.assert_allclose(seen['images'][0, 0, 0], expected, rtol=1e-5)
  with pytest.raises(ValueError, match='model.py'):
    m(tf.zeros([1, 2, 2], tf.uint8))


def test_segmentation_trains_via_gin_with_all_ignored_pseudo(tmp_path):
  gin.parse_config([
      'import st_tf.losses.segmentation',
      'import st_tf.losses.self_training',
      'st_tf.SelfTrainingModel.loss_fn = @segmentation_loss',
      'st_tf.SelfTrainingModel.combiner = @normalized()',
      'normalized.pseudo_weight = 2.0',
  ])
  m = model_lib.SelfTrainingModel(network=_segmenter())  # pylint: disable=no-value-for-parameter
  assert m.combiner.pseudo_weight == 2.0
  m.compile(optimizer=tf_keras.optimizers.Adam(1e-3), run_eagerly=True)
  rng = np.random.default_rng(0)
  masks = rng.integers(0, 3, (4, SIZE, SIZE, 1))
  masks[2:] = 255  # Pseudo images with every pixel ignored.
  images = tf.constant(rng.integers(0, 256, (4, SIZE, SIZE, 3)), tf.uint8)
  labels = {'masks': tf.constant(masks, tf.int32),
            'image_info': tf.zeros([4, 4, 2]),
            'is_pseudo': tf.constant([0., 0., 1., 1.])}
  logs = m.train_on_batch(images, labels, return_dict=True)
  assert _finite(logs)
  assert logs['pseudo_loss'] == 0.0 and logs['human_loss'] > 0
  assert logs['pseudo_ignore_fraction'] == 1.0
  # Model + moving averages round-trip through a checkpoint.
  path = tf.train.Checkpoint(model=m).save(str(tmp_path / 'ckpt'))
  m2 = model_lib.SelfTrainingModel(network=_segmenter())  # pylint: disable=no-value-for-parameter
  m2(images)
  tf.train.Checkpoint(model=m2).restore(path).expect_partial()
  assert float(m2.combiner.m_h) == float(m.combiner.m_h) > 0
  np.testing.assert_allclose(m2(images)['logits'], m(images)['logits'],
                             atol=1e-5)
