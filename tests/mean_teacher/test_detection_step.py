"""The detection mean-teacher train_step on the tiny RetinaNet."""
import functools

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from st_tf.data import augment
from st_tf.data import parsers
from st_tf.data import views as views_lib
from st_tf.losses import detection as detection_loss
from st_tf.losses import self_training
from st_tf.mean_teacher import model as mt_model
from st_tf.mean_teacher import targets as targets_lib
from st_tf.modeling import backbones
from st_tf.modeling import decoders
from st_tf.modeling import detection as detection_modeling
from tests.pseudo_label import tiny

ANCHORS = tiny.ANCHORS


def _network():
  return detection_modeling.build_retinanet(
      input_size=(tiny.SIZE, tiny.SIZE), num_classes=tiny.NUM_CLASSES,
      backbone=backbones.resnet(model_id=10, depth_multiplier=0.125),
      decoder=decoders.fpn(num_filters=16), head_num_convs=1,
      head_num_filters=16, anchors=ANCHORS)


def _example(num_boxes, seed):
  rng = np.random.default_rng(seed)
  image = rng.integers(0, 255, [tiny.SIZE, tiny.SIZE, 3]).astype(np.uint8)
  boxes = np.array([[0.1, 0.1, 0.5, 0.6], [0.4, 0.3, 0.9, 0.8]],
                   np.float32)[:num_boxes]
  return {'image': tf.constant(image),
          'groundtruth_boxes': tf.constant(boxes.reshape(-1, 4)),
          'groundtruth_classes': tf.constant([2, 5][:num_boxes], tf.int64),
          'groundtruth_is_crowd': tf.zeros([num_boxes], tf.bool),
          'groundtruth_scores': tf.ones([num_boxes], tf.float32)}


def _batch(parser, view_parser, num_boxes):
  human = [parser(_example(num_boxes, i)) for i in range(2)]
  images = tf.stack([h[0] for h in human])
  labels = tf.nest.map_structure(lambda *t: tf.stack(t),
                                 *[h[1] for h in human])
  views = [view_parser(_example(2, 10 + i)) for i in range(2)]
  views = tf.nest.map_structure(lambda *t: tf.stack(t), *views)
  return (images, labels), views


@pytest.fixture(scope='module')
def setup():
  parser = parsers.DetectionParser(
      output_size=(tiny.SIZE, tiny.SIZE), policy='S1', mode='train',
      crowd_handling='ignore', anchors=ANCHORS)
  view_parser = views_lib.TwoViewParser(
      output_size=(tiny.SIZE, tiny.SIZE), strong_augmenter=None,
      size_multiple=32, groundtruth='boxes', max_num_instances=8)
  tf_keras.utils.set_random_seed(0)
  model = mt_model.MeanTeacherModel(
      network_fn=_network,
      loss_fn=functools.partial(detection_loss.detection_loss,
                                num_classes=tiny.NUM_CLASSES),
      combiner=self_training.get_combiner('normalized'),
      targets=targets_lib.DetectionTargets(
          parser=parser, score_threshold=0.5, band_low=0.3, max_boxes=10),
      input_size=(tiny.SIZE, tiny.SIZE), ema_decay=0.9, burn_in_steps=0)
  model.compile(optimizer=tf_keras.optimizers.SGD(0.01))
  # Optimizer slots up front: the step is traced once (its first trace would
  # create them, and tf.function would trace it again).
  model.optimizer.build(model.trainable_variables)
  return model, tf.function(model.train_step), parser, view_parser


def _set_score_bias(network, value):
  for var in network.head.trainable_variables:
    if var.name.endswith('scores/bias:0'):
      var.assign(tf.fill(var.shape, value))


@pytest.mark.parametrize('bias,human_boxes', [(-20.0, 2), (-20.0, 0),
                                              (3.0, 2)])
def test_losses_finite_when_the_teacher_finds_nothing_or_a_lot(
    setup, bias, human_boxes):
  model, step, parser, view_parser = setup
  _set_score_bias(model.network, bias)
  model.ema_started.assign(0.0)  # the teacher restarts from this student
  for metric in model.metrics:
    metric.reset_state()
  logs = step(_batch(parser, view_parser, human_boxes))
  for key, value in logs.items():
    assert np.all(np.isfinite(value.numpy())), key
  boxes = float(logs['pseudo_boxes_per_image'])
  assert (boxes == 0.0) if bias < 0 else (boxes == 10.0)
  assert 0.0 <= float(logs['pseudo_precision']) <= 1.0
  assert 0.0 <= float(logs['pseudo_recall']) <= 1.0


def test_no_gradient_reaches_the_teacher_through_the_targets(setup):
  model, _, parser, view_parser = setup
  (images, labels), views = _batch(parser, view_parser, 2)
  teacher = model.teacher_network.weights
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(teacher)
    images, labels, weights, _ = model._batch(  # pylint: disable=protected-access
        images, labels, views, tf.constant(1.0))
    outputs = model(images, training=True)
    total = tf.reduce_sum(model.loss_fn(outputs, labels, weights)['total'])
  assert all(g is None for g in tape.gradient(total, teacher))
  assert any(g is not None for g in tape.gradient(total,
                                                  model.network.weights))
