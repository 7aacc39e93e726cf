"""The segmentation mean-teacher train_step on a tiny segmenter (64 px)."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from st_tf.data import parsers
from st_tf.data import views as views_lib
from st_tf.losses import segmentation as segmentation_loss
from st_tf.losses import self_training
from st_tf.mean_teacher import model as mt_model
from st_tf.mean_teacher import targets as targets_lib
from st_tf.modeling import backbones
from st_tf.modeling import decoders
from st_tf.modeling import segmentation as segmentation_modeling
from tests.pseudo_label import tiny


def _network():
  return segmentation_modeling.build_segmentation_model(
      input_size=(tiny.SIZE, tiny.SIZE), num_classes=tiny.NUM_CLASSES,
      backbone=backbones.resnet(model_id=10, depth_multiplier=0.125),
      decoder=decoders.fpn(num_filters=16), min_level=3, max_level=5,
      head_level=3, head_num_convs=1, head_num_filters=16)


def _example(seed):
  rng = np.random.default_rng(seed)
  image = rng.integers(0, 255, [tiny.SIZE, tiny.SIZE, 3]).astype(np.uint8)
  label = rng.integers(0, tiny.NUM_CLASSES, [tiny.SIZE, tiny.SIZE, 1])
  return {'image': tf.constant(image),
          'label': tf.constant(label.astype(np.uint8))}


def _batch():
  parser = parsers.SegmentationParser(output_size=(tiny.SIZE, tiny.SIZE),
                                      policy='S1', mode='train')
  view_parser = views_lib.TwoViewParser(
      output_size=(tiny.SIZE, tiny.SIZE), strong_augmenter=None,
      groundtruth='masks')
  stack = lambda items: tf.nest.map_structure(  # pylint: disable=g-long-lambda
      lambda *t: tf.stack(t), *items)
  human = stack([parser(_example(i)) for i in range(2)])
  views = stack([view_parser(_example(10 + i)) for i in range(2)])
  return human, views


@pytest.fixture(scope='module')
def setup():
  tf_keras.utils.set_random_seed(1)
  targets = targets_lib.SegmentationTargets(pixel_threshold=0.0)
  model = mt_model.MeanTeacherModel(
      network_fn=_network, loss_fn=segmentation_loss.segmentation_loss,
      combiner=self_training.get_combiner('normalized'), targets=targets,
      input_size=(tiny.SIZE, tiny.SIZE), ema_decay=0.9, burn_in_steps=0)
  model.compile(optimizer=tf_keras.optimizers.SGD(0.01))
  # Optimizer slots up front: each step is traced once (a first trace would
  # create them, and tf.function would trace it again).
  model.optimizer.build(model.trainable_variables)
  return model, targets, tf.function(model.train_step), _batch()


@pytest.mark.parametrize('threshold', [0.0, 1.0])
def test_segmentation_step_is_finite_with_every_or_no_pixel(setup,
                                                            threshold):
  model, targets, step, data = setup
  targets.pixel_threshold = threshold  # read when the step is traced
  step = tf.function(model.train_step)
  for metric in model.metrics:
    metric.reset_state()
  logs = step(data)
  for key, value in logs.items():
    assert np.all(np.isfinite(value.numpy())), key
  valid = data[1]['valid'].numpy().sum() / 2  # labeled pixels per image
  assert float(logs['pseudo_boxes_per_image']) == (
      pytest.approx(valid) if threshold == 0.0 else 0.0)
  assert 0.0 <= float(logs['pseudo_precision']) <= 1.0
  assert 0.0 <= float(logs['pseudo_recall']) <= 1.0
  if threshold == 1.0:
    assert float(logs['pseudo_loss']) == 0.0


def test_pseudo_masks_are_the_teachers_argmax_on_valid_pixels(setup):
  model, _, _, (_, views) = setup
  targets = targets_lib.SegmentationTargets(pixel_threshold=0.0)
  masks = targets(model.teacher_network, views)['masks'].numpy()
  logits = model.teacher_call(views['weak'])['logits']
  logits = tf.image.resize(logits, masks.shape[1:3], method='bilinear')
  argmax = tf.argmax(tf.nn.softmax(logits), -1).numpy()[..., None]
  valid = views['valid'].numpy()
  np.testing.assert_array_equal(masks[valid], argmax[valid])
  assert np.all(masks[~valid] == targets.ignore_label)
