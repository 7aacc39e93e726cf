"""The pre-training classifier: a detection backbone + global pool + dense.

`build_classifier` builds the backbone with the same gin builder as the
detection and segmentation models (`st_tf.modeling.backbones.build_backbone`
over a backbone config such as `@resnet()`), so a config that includes
`gin/models/digitscenes_tiny_detection.gin` pre-trains exactly the backbone
RetinaNet uses; Model Garden's `ClassificationModel` adds the global average
pool (over the backbone's last level) and the dense logits layer.

`PretrainModel` wraps it like `SelfTrainingModel` wraps a task network:
inputs are uint8 RGB `[B, H, W, 3]`, normalized in `call` with Model Garden's
mean/std; `model.backbone` is the backbone (`st_tf.training.init.
find_backbone` finds it). Its `train_step` minimizes softmax cross-entropy
plus the network's L2 losses, so `st_tf.training.trainer.train` can fit it.
"""
from __future__ import annotations

from typing import Optional, Sequence

import gin
import tensorflow as tf
import tf_keras
from official.vision.configs import backbones as backbones_cfg
from official.vision.modeling import classification_model
from official.vision.ops import preprocess_ops

from st_tf.modeling import backbones
from st_tf.modeling import common


def normalize_images(images: tf.Tensor) -> tf.Tensor:
  """uint8 (or 0-255 float) [B, H, W, 3] -> float32 (x - mean) / std."""
  images = tf.cast(images, tf.float32)
  return ((images - tf.constant(preprocess_ops.MEAN_RGB, tf.float32)) /
          tf.constant(preprocess_ops.STDDEV_RGB, tf.float32))


class PretrainModel(tf_keras.Model):
  """uint8 images [B, H, W, 3] -> class logits float32 [B, num_classes].

  `fit` batches are `(images uint8 [B, H, W, 3], labels int [B])`.
  """

  def __init__(self, network: tf_keras.Model, name: str = 'pretrain_model',
               **kwargs):
    """Wraps `network`, a Model Garden `ClassificationModel` (normalized
    float images -> logits) with a `.backbone`."""
    super().__init__(name=name, **kwargs)
    self.network = network
    self._trackers = {
        'loss': tf_keras.metrics.Mean('loss'),
        'cross_entropy': tf_keras.metrics.Mean('cross_entropy'),
        'l2_loss': tf_keras.metrics.Mean('l2_loss'),
        'accuracy': tf_keras.metrics.SparseCategoricalAccuracy('accuracy'),
    }

  @property
  def backbone(self) -> tf_keras.Model:
    """The backbone being pre-trained."""
    return self.network.backbone

  @property
  def num_classes(self) -> int:
    return int(self.network.output_shape[-1])

  @property
  def metrics(self):
    return list(self._trackers.values())

  def call(self, images: tf.Tensor, training: Optional[bool] = None
          ) -> tf.Tensor:
    if images.shape.rank != 4 or images.shape[-1] != 3:
      raise ValueError('st_tf/pretrain/model.py: images must be [B, H, W, 3] '
                       f'RGB, got shape {images.shape}.')
    logits = self.network(normalize_images(images), training=training)
    return tf.cast(logits, tf.float32)

  def _compute_losses(self, labels: tf.Tensor, logits: tf.Tensor):
    cross_entropy = tf.reduce_mean(
        tf_keras.losses.sparse_categorical_crossentropy(
            tf.cast(labels, tf.int32), logits, from_logits=True))
    l2 = [tf.cast(l, tf.float32) for l in self.losses]
    l2_loss = tf.add_n(l2) if l2 else tf.constant(0.0)
    return cross_entropy, l2_loss

  def _update(self, labels, logits, cross_entropy, l2_loss) -> dict:
    self._trackers['loss'].update_state(cross_entropy + l2_loss)
    self._trackers['cross_entropy'].update_state(cross_entropy)
    self._trackers['l2_loss'].update_state(l2_loss)
    self._trackers['accuracy'].update_state(labels, logits)
    return {k: t.result() for k, t in self._trackers.items()}

  def train_step(self, data):
    images, labels = data
    with tf.GradientTape() as tape:
      logits = self(images, training=True)
      cross_entropy, l2_loss = self._compute_losses(labels, logits)
      # Gradients are summed over replicas: the per-replica loss is a mean.
      loss = ((cross_entropy + l2_loss) /
              tf.distribute.get_strategy().num_replicas_in_sync)
    # `minimize` scales the loss when the optimizer is a LossScaleOptimizer.
    self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
    return self._update(labels, logits, cross_entropy, l2_loss)

  def test_step(self, data):
    images, labels = data
    logits = self(images, training=False)
    return self._update(labels, logits, *self._compute_losses(labels, logits))

  def get_config(self) -> dict:
    return {'name': self.name}


@gin.configurable
def build_classifier(num_classes: int,
                     input_size: Sequence[int] = (64, 64),
                     backbone: backbones_cfg.Backbone = gin.REQUIRED,
                     activation: str = 'relu',
                     use_sync_bn: bool = False,
                     norm_momentum: float = 0.99,
                     norm_epsilon: float = 0.001,
                     l2_weight_decay: float = 0.0,
                     dropout_rate: float = 0.0) -> PretrainModel:
  """Builds backbone + global average pool + dense head (built, random).

  Args:
    num_classes: number of classes (no background class; >= 2).
    input_size: (height, width) of the training images in pixels. The
      backbone's weights do not depend on it, so they load into a detector
      built for another input size.
    backbone: backbone config, e.g. gin `@resnet()` (the detection model
      file's binding).
    activation, use_sync_bn, norm_momentum, norm_epsilon: backbone norm and
      activation (as `build_retinanet`'s arguments of the same names).
    l2_weight_decay: L2 weight decay of backbone and head kernels (Model
      Garden's `l2(decay / 2)`).
    dropout_rate: dropout before the dense layer.

  Returns:
    A `PretrainModel` taking uint8 images [B, H, W, 3].
  """
  if num_classes < 2:
    raise ValueError(f'build_classifier: num_classes must be >= 2, got '
                     f'{num_classes}')
  if len(input_size) != 2 or any(int(s) <= 0 for s in input_size):
    raise ValueError(f'build_classifier: input_size must be (height, width),'
                     f' got {input_size}')
  norm_activation = common.norm_activation_config(
      activation, use_sync_bn, norm_momentum, norm_epsilon)
  regularizer = common.l2_regularizer(l2_weight_decay)
  backbone_model = backbones.build_backbone(
      backbone, input_size, norm_activation, regularizer)
  network = classification_model.ClassificationModel(
      backbone=backbone_model,
      num_classes=num_classes,
      input_specs=tf_keras.layers.InputSpec(
          shape=[None, int(input_size[0]), int(input_size[1]), 3]),
      dropout_rate=dropout_rate,
      kernel_regularizer=regularizer,
      use_sync_bn=use_sync_bn,
      norm_momentum=norm_momentum,
      norm_epsilon=norm_epsilon)
  model = PretrainModel(network)
  model(tf.zeros([1, int(input_size[0]), int(input_size[1]), 3], tf.uint8))
  return model
