"""Tests for st_tf.losses.segmentation."""
import numpy as np
import tensorflow as tf
from official.vision.losses import segmentation_losses

from st_tf.losses import segmentation

NUM_CLASSES = 3


def _batch(batch=3, seed=0):
  rng = np.random.default_rng(seed)
  logits = tf.constant(rng.normal(size=(batch, 4, 4, NUM_CLASSES)), tf.float32)
  masks = rng.integers(0, NUM_CLASSES, size=(batch, 8, 8, 1))
  masks[rng.random(masks.shape) < 0.2] = 255
  return {'logits': logits}, {'masks': tf.constant(masks, tf.int32)}


def _mg_loss(logits, masks):
  return segmentation_losses.SegmentationLoss(
      label_smoothing=0.0, class_weights=[], ignore_label=255,
      use_groundtruth_dimension=True)(logits, masks)


def test_part_equals_model_garden_on_that_part_with_upsampled_logits():
  outputs, labels = _batch()
  ours = segmentation.segmentation_loss(outputs, labels,
                                        tf.constant([1., 0., 1.]))
  expected = _mg_loss(tf.gather(outputs['logits'], [0, 2]),
                      tf.gather(labels['masks'], [0, 2]))
  np.testing.assert_allclose(ours['total'], expected, rtol=1e-5)
  masks = tf.gather(labels['masks'], [0, 2]).numpy()
  assert ours['valid_pixels'] == (masks != 255).sum()
  np.testing.assert_allclose(ours['ignore_fraction'], (masks == 255).mean(),
                             rtol=1e-6)


def test_all_ignored_or_empty_part_is_zero_with_finite_gradient():
  outputs, labels = _batch(2)
  logits = tf.Variable(outputs['logits'])
  all_ignored = {'masks': tf.fill([2, 8, 8, 1], 255)}
  for labels_, weight in ((all_ignored, [1., 1.]), (labels, [0., 0.])):
    with tf.GradientTape() as tape:
      loss = segmentation.segmentation_loss({'logits': logits}, labels_,
                                            tf.constant(weight))
    grad = tape.gradient(loss['total'], logits)
    assert loss['total'] == 0.0
    assert np.isfinite(grad.numpy()).all()
  empty = segmentation.segmentation_loss(outputs, labels, tf.zeros([2]))
  assert empty['ignore_fraction'] == 0.0


def test_class_weights_follow_model_garden():
  outputs, labels = _batch()
  weights = [1.0, 4.0, 2.0]
  ours = segmentation.segmentation_loss(
      outputs, labels, tf.constant([1., 0., 1.]), class_weights=weights)
  expected = segmentation_losses.SegmentationLoss(
      label_smoothing=0.0, class_weights=weights, ignore_label=255,
      use_groundtruth_dimension=True)(
          tf.gather(outputs['logits'], [0, 2]),
          tf.gather(labels['masks'], [0, 2]))
  np.testing.assert_allclose(ours['total'], expected, rtol=1e-5)
  plain = segmentation.segmentation_loss(outputs, labels,
                                         tf.constant([1., 0., 1.]))
  assert float(ours['total']) != float(plain['total'])


def test_labels_resized_to_logits_follows_model_garden():
  """use_groundtruth_dimension=False (the released PASCAL config)."""
  outputs, labels = _batch()
  ours = segmentation.segmentation_loss(
      outputs, labels, tf.constant([1., 0., 1.]),
      use_groundtruth_dimension=False)
  logits = tf.gather(outputs['logits'], [0, 2])
  masks = tf.gather(labels['masks'], [0, 2])
  expected = segmentation_losses.SegmentationLoss(
      label_smoothing=0.0, class_weights=[], ignore_label=255,
      use_groundtruth_dimension=False)(logits, masks)
  np.testing.assert_allclose(ours['total'], expected, rtol=1e-5)
  small = tf.image.resize(masks, [4, 4], method='nearest').numpy()
  assert ours['valid_pixels'] == (small != 255).sum()
  assert not np.isclose(float(ours['total']), float(_mg_loss(logits, masks)))
