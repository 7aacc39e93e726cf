"""Tests for st_tf.losses.detection."""
import numpy as np
import pytest
import tensorflow as tf
from official.vision.configs import retinanet as retinanet_cfg
from official.vision.tasks import retinanet as retinanet_task

from st_tf.losses import detection

NUM_CLASSES = 4
LEVELS = {'3': 4, '4': 2}  # level -> feature size
ANCHORS = 2


def _random_batch(batch, seed=0, positive_rate=0.1):
  """Random RetinaNet outputs and labels (targets and weights consistent)."""
  rng = np.random.default_rng(seed)
  cls_outputs, box_outputs, cls_targets, box_targets = {}, {}, {}, {}
  for level, size in LEVELS.items():
    cls_outputs[level] = tf.constant(
        rng.normal(size=(batch, size, size, ANCHORS * NUM_CLASSES)),
        tf.float32)
    box_outputs[level] = tf.constant(
        rng.normal(size=(batch, size, size, ANCHORS * 4)), tf.float32)
    positive = rng.random((batch, size, size, ANCHORS)) < positive_rate
    classes = rng.integers(1, NUM_CLASSES, size=positive.shape)
    cls_targets[level] = tf.constant(np.where(positive, classes, -1), tf.int32)
    box_targets[level] = tf.constant(
        rng.normal(size=(batch, size, size, ANCHORS * 4)), tf.float32)
  flat = lambda d: np.concatenate(  # pylint: disable=g-long-lambda
      [d[k].numpy().reshape(batch, -1) for k in LEVELS], axis=1)
  positive = flat(cls_targets) > 0
  ignored = rng.random(positive.shape) < 0.05
  labels = {
      'cls_targets': cls_targets,
      'box_targets': box_targets,
      'cls_weights': tf.constant(np.where(ignored & ~positive, 0., 1.),
                                 tf.float32),
      'box_weights': tf.constant(positive.astype(np.float32)),
  }
  return {'cls_outputs': cls_outputs, 'box_outputs': box_outputs}, labels


def _mg_losses(outputs, labels):
  config = retinanet_cfg.RetinaNetTask(
      model=retinanet_cfg.RetinaNet(num_classes=NUM_CLASSES),
      losses=retinanet_cfg.Losses(box_loss_weight=50))
  task = retinanet_task.RetinaNetTask(config)
  _, cls_loss, box_loss, model_loss = task.build_losses(outputs, labels)
  return model_loss, cls_loss, box_loss


def _slice(tree, index):
  return tf.nest.map_structure(lambda t: t[index:index + 1], tree)


def test_all_ones_equals_model_garden():
  outputs, labels = _random_batch(3)
  ours = detection.detection_loss(outputs, labels, tf.ones([3]),
                                  num_classes=NUM_CLASSES)
  total, cls_loss, box_loss = _mg_losses(outputs, labels)
  np.testing.assert_allclose(ours['total'], total, rtol=1e-5)
  np.testing.assert_allclose(ours['cls'], cls_loss, rtol=1e-5)
  np.testing.assert_allclose(ours['box'], box_loss, rtol=1e-5)
  assert ours['num_positives'] == tf.reduce_sum(labels['box_weights'])


def test_part_equals_model_garden_on_that_part_only():
  outputs, labels = _random_batch(3, seed=1, positive_rate=0.3)
  ours = detection.detection_loss(outputs, labels, tf.constant([0., 1., 0.]),
                                  num_classes=NUM_CLASSES)
  total, _, _ = _mg_losses(_slice(outputs, 1), _slice(labels, 1))
  np.testing.assert_allclose(ours['total'], total, rtol=1e-5)
  assert ours['num_positives'] == tf.reduce_sum(labels['box_weights'][1])


def test_empty_part_and_no_boxes_are_finite_with_finite_gradients():
  outputs, labels = _random_batch(2, seed=2)
  labels['box_weights'] = tf.zeros_like(labels['box_weights'])
  labels['cls_targets'] = tf.nest.map_structure(
      lambda t: -tf.ones_like(t), labels['cls_targets'])
  variables = tf.nest.map_structure(tf.Variable, outputs)
  for weight, expect_zero in (([1., 1.], False), ([0., 0.], True)):
    with tf.GradientTape() as tape:
      loss = detection.detection_loss(variables, labels, tf.constant(weight),
                                      num_classes=NUM_CLASSES)
    grads = tape.gradient(loss['total'], tf.nest.flatten(variables))
    assert np.isfinite(loss['total'].numpy())
    assert loss['box'] == 0.0
    assert (loss['total'] == 0.0) == expect_zero
    assert all(np.isfinite(g.numpy()).all() for g in grads)


def test_missing_key_names_the_module():
  outputs, labels = _random_batch(1)
  del labels['box_weights']
  with pytest.raises(ValueError, match='detection.py.*box_weights'):
    detection.detection_loss(outputs, labels, tf.ones([1]),
                             num_classes=NUM_CLASSES)


def test_pseudo_box_loss_weight_scales_only_the_second_part():
  outputs, labels = _random_batch(4, seed=3, positive_rate=0.3)
  parts = tf.constant([[1., 1., 0., 0.], [0., 0., 1., 1.]])
  base = detection.detection_loss(outputs, labels, parts,
                                  num_classes=NUM_CLASSES)
  cls_only = detection.detection_loss(outputs, labels, parts,
                                      num_classes=NUM_CLASSES,
                                      pseudo_box_loss_weight=0.0)
  np.testing.assert_allclose(cls_only['total'][0], base['total'][0],
                             rtol=1e-6)
  np.testing.assert_allclose(cls_only['total'][1], base['cls'][1], rtol=1e-6)
  assert float(base['box'][1]) > 0
  one_part = detection.detection_loss(outputs, labels, parts[0],
                                      num_classes=NUM_CLASSES,
                                      pseudo_box_loss_weight=0.0)
  np.testing.assert_allclose(one_part['total'], base['total'][0], rtol=1e-6)
