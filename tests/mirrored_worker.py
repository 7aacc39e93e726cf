"""SelfTrainingModel.fit under MirroredStrategy on 2 logical CPUs (subprocess).

Run by tests/test_model_mirrored.py: the logical devices must be set before
TensorFlow starts, so this runs in its own process and writes its results
(JSON) to argv[2]; argv[1] is a scratch model_dir.

Replica 0's batch holds one human and one pseudo example, replica 1's two
human examples and no pseudo one. The network is one Dense unit over the
mean pixel (2 weights), the task loss a per-part mean squared error.
"""
import json
import sys

import tensorflow as tf

_CPU = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(
    _CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tf_keras  # pylint: disable=g-import-not-at-top,wrong-import-position

from st_tf import model as model_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from st_tf.losses import self_training  # pylint: disable=g-import-not-at-top,wrong-import-position
from st_tf.training import trainer  # pylint: disable=g-import-not-at-top,wrong-import-position

A = 2.0  # pseudo_weight
LR = 0.1
# Per replica: images (one gray level each), targets, is_pseudo.
LEVELS = [[40.0, 200.0], [90.0, 150.0]]
TARGETS = [[0.3, -0.5], [1.0, 0.2]]
IS_PSEUDO = [[0.0, 1.0], [0.0, 0.0]]


def build() -> model_lib.SelfTrainingModel:
  inputs = tf_keras.Input([4, 4, 3])
  pooled = tf_keras.layers.GlobalAveragePooling2D()(inputs)
  out = tf_keras.layers.Dense(1, kernel_initializer='ones',
                              bias_initializer='zeros', name='head')(
                                  pooled[:, :1])
  network = tf_keras.Model(inputs, {'out': out})

  def loss_fn(outputs, labels, weight):  # weight [P, B] -> [P]
    err = tf.square(outputs['out'][:, 0] - labels['target'])
    return {'total': tf.reduce_sum(weight * err, 1) /
                     tf.maximum(tf.reduce_sum(weight, 1), 1.0)}

  model = model_lib.SelfTrainingModel(
      network, loss_fn, self_training.get_combiner(
          'normalized', pseudo_weight=A, momentum=0.5))
  model(tf.zeros([1, 4, 4, 3], tf.uint8))
  return model


def batch(replica: int):
  images = np.stack([np.full([4, 4, 3], v, np.uint8)
                     for v in LEVELS[replica]])
  return images, {'target': np.float32(TARGETS[replica]),
                  'is_pseudo': np.float32(IS_PSEUDO[replica])}


def dataset(input_context=None):
  """Element i goes to replica i % 2 (one input pipeline, 2 replicas)."""
  del input_context
  parts = [batch(r) for r in (0, 1)]
  images = np.stack([p[0] for p in parts])
  labels = {k: np.stack([p[1][k] for p in parts]) for k in parts[0][1]}
  return tf.data.Dataset.from_tensor_slices((images, labels)).repeat()


def expected_first_step() -> dict:
  """The paper's loss over the GLOBAL batch, by hand (one device).

  L_h, L_p: means over the replicas whose batch has the part (the same
  means the moving averages use); first step: m_h = L_h, m_p = L_p.
  """
  model = build()
  with tf.GradientTape() as tape:
    parts = []
    for r in (0, 1):
      images, labels = batch(r)
      out = model(images, training=True)
      weight = tf.stack([1.0 - labels['is_pseudo'], labels['is_pseudo']])
      parts.append(model.loss_fn(out, labels, weight)['total'])
    human = (parts[0][0] + parts[1][0]) / 2.0  # Both replicas have humans.
    pseudo = parts[0][1]  # Only replica 0 has a pseudo example.
    ratio = tf.stop_gradient(human / pseudo)
    loss = (human + A * ratio * pseudo) / (1.0 + A)
  grads = tape.gradient(loss, model.trainable_variables)
  return {'loss': float(loss), 'm_h': float(human), 'm_p': float(pseudo),
          'weights': [(v - LR * g).numpy().tolist() for v, g in
                      zip(model.trainable_variables, grads)]}


class _Record(tf_keras.callbacks.Callback):
  """Combiner state when training starts (after any resume)."""

  def on_train_begin(self, logs=None):
    c = self.model.combiner
    self.state = [float(c.m_h.numpy()), float(c.m_p.numpy()),
                  float(c.initialized_h.numpy()),
                  float(c.initialized_p.numpy())]


def run(model_dir: str, steps: int, callbacks=()) -> tf_keras.Model:
  strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  holder = {}

  def make():
    holder['model'] = build()
    return holder['model']

  trainer.train(model_dir=model_dir, model=make, train_dataset=dataset,
                train_steps=steps, steps_per_epoch=1, strategy=strategy,
                optimizer=lambda: tf_keras.optimizers.SGD(LR),
                init=lambda m: None, precision=lambda: None,
                callbacks=list(callbacks))
  return holder['model']


def main(model_dir: str, out_path: str) -> None:
  one = run(model_dir + '/one', 1)
  got = {'weights': [v.numpy().tolist() for v in one.trainable_variables],
         'm_h': float(one.combiner.m_h.numpy()),
         'm_p': float(one.combiner.m_p.numpy())}
  two = run(model_dir + '/two', 2)
  saved = [float(two.combiner.m_h.numpy()), float(two.combiner.m_p.numpy()),
           1.0, 1.0]
  record = _Record()
  run(model_dir + '/two', 3, [record])  # Resumes from ckpt-2.
  with open(out_path, 'w') as f:
    json.dump({'got': got, 'expected': expected_first_step(),
               'saved': saved, 'restored': record.state}, f)


if __name__ == '__main__':
  main(sys.argv[1], sys.argv[2])
