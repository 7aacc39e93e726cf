"""SelfTrainingModel: a Model Garden network + the self-training train step.

The student batch holds human and pseudo examples concatenated (pseudo iff
`labels['is_pseudo'] == 1`). One forward pass over the whole batch; the task
loss is evaluated twice with per-example 0/1 weights (no dynamic shapes), the
two part losses are combined by a `LossCombiner` (`normalized`, `weighted`,
`human_only`), and the regularization losses of the network are added. The
teacher is the same model on batches without pseudo examples.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import gin
import tensorflow as tf
import tf_keras
from official.vision.ops import preprocess_ops

from st_tf.losses import self_training

# (outputs, labels, example_weight [B]) -> {'total': scalar, ...scalars}.
# loss_fn(outputs, labels, example_weight [P, B]) -> dict of [P] float32 terms
# (key "total" is the part loss); see st_tf/losses/detection.py.
LossFn = Callable[[Mapping[str, Any], Mapping[str, Any], tf.Tensor],
                  Mapping[str, tf.Tensor]]


def _to_float32(tree):
  return tf.nest.map_structure(
      lambda t: tf.cast(t, tf.float32) if t.dtype.is_floating else t, tree)


@gin.configurable(module='st_tf')
class SelfTrainingModel(tf_keras.Model):
  """Wraps a Model Garden RetinaNetModel / SegmentationModel for (self-)training.

  Inputs are uint8 RGB images `[B, H, W, 3]` (values 0-255); `call`
  normalizes them with Model Garden's ImageNet mean/std
  (`preprocess_ops.MEAN_RGB`, `STDDEV_RGB`) and returns the network outputs
  (RetinaNet: raw `cls_outputs`/`box_outputs` and, with `training=False`,
  Model Garden's detections in pixel yxyx boxes; segmentation: `logits`).

  `fit` batches are `(images, labels)` with `labels['is_pseudo']` float32
  [B]; see DEVELOPERS.md for the label dicts.
  """

  def __init__(self,
               network: tf_keras.Model,
               loss_fn: LossFn,
               combiner: self_training.LossCombiner,
               gradient_clip_norm: Optional[float] = None,
               name: str = 'self_training_model',
               **kwargs):
    """Creates the model; build it (and the combiner) under the strategy scope.

    Args:
      network: Model Garden RetinaNetModel or SegmentationModel taking
        normalized float images.
      loss_fn: task loss, e.g. `functools.partial(detection_loss,
        num_classes=11)` or gin `@detection_loss`; see `LossFn`.
      combiner: self-training loss combiner (`@normalized()` etc.).
      gradient_clip_norm: if set (> 0), clip the cross-replica summed
        gradients to this global norm before applying them.
      name: model name.
      **kwargs: forwarded to `tf_keras.Model`.
    """
    super().__init__(name=name, **kwargs)
    if not isinstance(combiner, self_training.LossCombiner):
      raise TypeError(
          'st_tf/model.py: combiner must be a st_tf.losses.self_training.'
          f'LossCombiner (e.g. gin @normalized()), got {type(combiner)}.')
    if gradient_clip_norm is not None and gradient_clip_norm <= 0:
      raise ValueError('st_tf/model.py: gradient_clip_norm must be > 0 or '
                       f'None, got {gradient_clip_norm}.')
    # Logs of the train step: the trackers' means are cross-replica already
    # and the raw values (m_h, m_p, pseudo_weight, learning_rate, ...) the
    # same on every replica; Keras' default ('auto') would SUM the raw ones
    # over the replicas of a MirroredStrategy.
    self.distribute_reduction_method = 'first'
    self.network = network
    self.loss_fn = loss_fn
    self.combiner = combiner
    self.gradient_clip_norm = gradient_clip_norm
    self._trackers = {
        key: tf_keras.metrics.Mean(key)
        for key in ('loss', 'human_loss', 'pseudo_loss', 'l2_loss')}

  @property
  def metrics(self):
    return list(self._trackers.values())

  @property
  def checkpoint_items(self) -> Mapping[str, Any]:
    """The network's own checkpoint items (backbone, decoder, head)."""
    return self.network.checkpoint_items

  def call(self, images: tf.Tensor, training: Optional[bool] = None,
           **kwargs) -> Mapping[str, Any]:
    """Normalizes uint8 images [B, H, W, 3] (0-255) and runs the network.

    `kwargs` (e.g. RetinaNet's `image_shape`, `anchor_boxes`) are forwarded.
    """
    if images.shape.rank != 4 or images.shape[-1] != 3:
      raise ValueError('st_tf/model.py: images must be [B, H, W, 3] RGB, got '
                       f'shape {images.shape}.')
    images = tf.cast(images, tf.float32)
    images = ((images - tf.constant(preprocess_ops.MEAN_RGB, tf.float32)) /
              tf.constant(preprocess_ops.STDDEV_RGB, tf.float32))
    return self.network(images, training=training, **kwargs)

  def _l2_loss(self) -> tf.Tensor:
    losses = [tf.cast(l, tf.float32) for l in self.losses]
    return tf.add_n(losses) if losses else tf.constant(0.0)

  def _learning_rate(self) -> tf.Tensor:
    lr = self.optimizer.learning_rate
    if isinstance(lr, tf_keras.optimizers.schedules.LearningRateSchedule):
      lr = lr(self.optimizer.iterations)
    return tf.cast(lr, tf.float32)

  def _is_loss_scaled(self) -> bool:
    return isinstance(self.optimizer,
                      tf_keras.mixed_precision.LossScaleOptimizer)

  def _scale_loss(self, loss: tf.Tensor) -> tf.Tensor:
    """The loss to differentiate (call inside the tape)."""
    # Gradients are summed over replicas: the per-replica loss is a mean.
    loss = loss / tf.distribute.get_strategy().num_replicas_in_sync
    if self._is_loss_scaled():
      loss = self.optimizer.get_scaled_loss(loss)
    return loss

  def _apply(self, tape: tf.GradientTape, scaled_loss: tf.Tensor):
    """Backward pass with loss scaling and optional global-norm clipping."""
    optimizer = self.optimizer
    tvars = self.trainable_variables
    grads = tape.gradient(scaled_loss, tvars)
    if self._is_loss_scaled():
      grads = optimizer.get_unscaled_gradients(grads)
    pairs = [(g, v) for g, v in zip(grads, tvars) if g is not None]
    if not pairs:
      raise ValueError('st_tf/model.py: the loss has no gradient with respect '
                       'to any trainable variable.')
    if not self.gradient_clip_norm:
      optimizer.apply_gradients(pairs)
      return
    grads = [g for g, _ in pairs]
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
      grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    grads, _ = tf.clip_by_global_norm(grads, self.gradient_clip_norm)
    optimizer.apply_gradients(
        zip(grads, [v for _, v in pairs]),
        experimental_aggregate_gradients=False)

  def train_step(self, data):
    images, labels = data
    is_pseudo = tf.cast(labels['is_pseudo'], tf.float32)
    is_human = 1.0 - is_pseudo
    has_human = tf.reduce_any(is_human > 0)
    has_pseudo = tf.reduce_any(is_pseudo > 0)
    with tf.GradientTape() as tape:
      outputs = _to_float32(self(images, training=True))
      parts = self.loss_fn(outputs, labels, tf.stack([is_human, is_pseudo]))
      human = {k: v[0] for k, v in parts.items()}
      pseudo = {k: v[1] for k, v in parts.items()}
      combined, logs = self.combiner(
          human['total'], pseudo['total'], has_human, has_pseudo,
          training=True)
      l2_loss = self._l2_loss()
      loss = combined + l2_loss
      scaled_loss = self._scale_loss(loss)
    self._apply(tape, scaled_loss)

    for key, value in (('loss', loss), ('human_loss', human['total']),
                       ('pseudo_loss', pseudo['total']),
                       ('l2_loss', l2_loss)):
      self._trackers[key].update_state(value)
    logs = {**{k: t.result() for k, t in self._trackers.items()}, **logs}
    logs.update({f'human_{k}': v for k, v in human.items() if k != 'total'})
    logs.update({f'pseudo_{k}': v for k, v in pseudo.items() if k != 'total'})
    if 'num_boxes' in labels:
      logs['pseudo_boxes_per_image'] = tf.math.divide_no_nan(
          tf.reduce_sum(tf.cast(labels['num_boxes'], tf.float32) * is_pseudo),
          tf.reduce_sum(is_pseudo))
    logs['learning_rate'] = self._learning_rate()
    return logs

  def test_step(self, data):
    """Human-part loss (+ regularization) of an eval batch, no update."""
    images, labels = data
    batch = tf.shape(images)[0]
    is_pseudo = tf.cast(
        labels.get('is_pseudo', tf.zeros([batch], tf.float32)), tf.float32)
    outputs = _to_float32(self(images, training=False))
    human = self.loss_fn(outputs, labels, 1.0 - is_pseudo)
    loss = human['total'] + self._l2_loss()
    self._trackers['loss'].update_state(loss)
    self._trackers['human_loss'].update_state(human['total'])
    return {'loss': self._trackers['loss'].result(),
            'human_loss': self._trackers['human_loss'].result()}

  def get_config(self) -> dict:
    return {'gradient_clip_norm': self.gradient_clip_norm, 'name': self.name}
