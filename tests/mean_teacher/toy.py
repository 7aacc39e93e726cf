"""A toy mean-teacher model (a Dense unit + batch norm, ~10 weights)."""
import numpy as np
import tensorflow as tf
import tf_keras
from official.vision.ops import preprocess_ops

from st_tf.losses import self_training
from st_tf.mean_teacher import model as mt_model

SIZE = 4


def network_fn() -> tf_keras.Model:
  inputs = tf_keras.Input([SIZE, SIZE, 3])
  pooled = tf_keras.layers.GlobalAveragePooling2D()(inputs)
  normed = tf_keras.layers.BatchNormalization()(pooled)
  out = tf_keras.layers.Dense(1, name='head')(normed)
  return tf_keras.Model(inputs, {'out': out})


def loss_fn(outputs, labels, weight):
  """Per-part mean squared error; weight [P, B] -> {'total': [P]}."""
  err = tf.square(outputs['out'][:, 0] - labels['target'])
  return {'total': tf.reduce_sum(weight * err, -1) /
                   tf.maximum(tf.reduce_sum(weight, -1), 1.0)}


def targets(teacher, views):
  """The teacher's output on the weak view is the strong view's target."""
  out = teacher(preprocess_ops.normalize_image(views['weak']),
                training=False)['out'][:, 0]
  return {'target': tf.stop_gradient(out),
          'num_boxes': tf.ones_like(out, tf.int32)}


def build(decay=0.5, burn_in=2, seed=0) -> mt_model.MeanTeacherModel:
  tf_keras.utils.set_random_seed(seed)
  return mt_model.MeanTeacherModel(
      network_fn=network_fn, loss_fn=loss_fn,
      combiner=self_training.get_combiner('normalized', momentum=0.5),
      targets=targets, input_size=(SIZE, SIZE), ema_decay=decay,
      burn_in_steps=burn_in)


def batch(seed=0, n=2):
  rng = np.random.default_rng(seed)
  img = lambda: rng.integers(0, 255, [n, SIZE, SIZE, 3]).astype(np.uint8)
  weak = img()
  return ((img(), {'target': rng.normal(size=[n]).astype(np.float32),
                   'is_pseudo': np.zeros([n], np.float32)}),
          {'weak': weak, 'strong': weak // 2})
