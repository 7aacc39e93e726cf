"""A tiny stand-in for SelfTrainingModel and the dataset builders (tests)."""
from typing import Optional

import gin
import tensorflow as tf
import tf_keras

IMAGE_SIZE = 16


class TinyModel(tf_keras.Model):
  """`backbone` (conv) + `head` (dense); custom train_step like our models.

  Inputs: uint8 images [B, 16, 16, 3]; labels: float32 [B, 2] targets.
  """

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    inputs = tf_keras.Input([IMAGE_SIZE, IMAGE_SIZE, 3])
    features = tf_keras.layers.Conv2D(4, 3, strides=4, name='conv')(inputs)
    features = tf_keras.layers.GlobalAveragePooling2D()(features)
    # A functional backbone, built at construction like Model Garden's.
    self.backbone = tf_keras.Model(inputs, features, name='backbone')
    self.head = tf_keras.layers.Dense(2, name='head')

  def call(self, images, training=False):
    x = tf.cast(images, tf.float32) / 255.0
    return self.head(self.backbone(x, training=training))

  def _loss(self, images, labels, training):
    outputs = self(images, training=training)
    return tf.reduce_mean(tf.square(outputs - labels))

  def train_step(self, data):
    images, labels = data
    with tf.GradientTape() as tape:
      loss = self._loss(images, labels, True)
      scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
    grads = tape.gradient(scaled, self.trainable_variables)
    self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
    return {'loss': loss}

  def test_step(self, data):
    images, labels = data
    return {'loss': self._loss(images, labels, False)}


@gin.configurable
def tiny_model() -> TinyModel:
  model = TinyModel()
  model(tf.zeros([1, IMAGE_SIZE, IMAGE_SIZE, 3], tf.uint8))
  return model


@gin.configurable
def tiny_dataset(input_context: Optional[tf.distribute.InputContext] = None,
                 batch_size: int = 4, num_examples: int = 32,
                 repeat: bool = True) -> tf.data.Dataset:
  """Synthetic (images uint8 [B,16,16,3], targets float32 [B,2]) batches."""
  rng = tf.random.Generator.from_seed(0)
  images = tf.cast(rng.uniform([num_examples, IMAGE_SIZE, IMAGE_SIZE, 3], 0,
                               255), tf.uint8)
  targets = rng.normal([num_examples, 2])
  ds = tf.data.Dataset.from_tensor_slices((images, targets))
  if input_context is not None:
    ds = ds.shard(input_context.num_input_pipelines,
                  input_context.input_pipeline_id)
    batch_size = input_context.get_per_replica_batch_size(batch_size)
  if repeat:
    ds = ds.repeat()
  return ds.batch(batch_size, drop_remainder=True)


@gin.configurable
def tiny_metric(model: tf_keras.Model, dataset: tf.data.Dataset, *,
                output_dir: Optional[str] = None) -> dict:
  """Mean squared error of `model` over a finite `dataset`."""
  del output_dir
  errors = [float(tf.reduce_mean(tf.square(model(x) - y)))
            for x, y in dataset]
  return {'mse': sum(errors) / len(errors)}
