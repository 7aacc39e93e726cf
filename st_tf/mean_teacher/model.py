"""MeanTeacherModel: the student of an online EMA teacher, one train_step.

Batches are `((images, labels), views)` (`pipeline.
build_mean_teacher_dataset`): human images uint8 [B_h, H, W, 3] with the
parser's labels, and the unlabeled images' `views` ('weak', 'strong' uint8
[B_u, H, W, 3], ...; `st_tf.data.views`). Each step:

  1. (first step after burn-in only) the teacher is set to the student;
  2. the teacher (`ema.build_teacher`, inference mode, no gradient) labels
     the weak views: `targets` (`DetectionTargets` / `SegmentationTargets`)
     makes the labels of the strong views in-graph;
  3. one student forward over `[human images; strong views]`, the task loss
     per part (`[is_human, is_pseudo]`), the combiner (`normalized`, ...),
     the regularization of the student network;
  4. apply the gradients; 5. `teacher <- decay * teacher + (1 - decay) *
     student` (not during burn-in).

During the first `burn_in_steps` optimizer steps the pseudo part has weight
zero (`has_pseudo` False: the combiner returns the human loss) and the
teacher is left alone; the EMA starts from the student at the end of
burn-in, or from the student's initial weights when `burn_in_steps = 0`
(e.g. a teacher checkpoint loaded with `initialize_model(method='full')`).
The teacher and the `ema_started` flag are checkpointed with the model.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import gin
import tensorflow as tf
import tf_keras
from official.vision.ops import preprocess_ops

from st_tf import model as model_lib
from st_tf.losses import self_training
from st_tf.mean_teacher import ema

_QUALITY = ('pseudo_precision', 'pseudo_recall')


def _concat_labels(labels: Mapping[str, Any],
                   pseudo: Mapping[str, Any]) -> Dict[str, Any]:
  """Human labels [B_h, ...] + pseudo targets [B_u, ...] of the shared keys."""
  keys = [k for k in labels if k in pseudo and k not in _QUALITY]
  return {k: tf.nest.map_structure(
      lambda a, b: tf.concat([a, tf.cast(b, a.dtype)], 0), labels[k],
      pseudo[k]) for k in keys}


@gin.configurable(module='st_tf')
class MeanTeacherModel(model_lib.SelfTrainingModel):
  """A `SelfTrainingModel` whose pseudo labels come from its EMA teacher."""

  def __init__(self,
               network_fn: Callable[[], tf_keras.Model] = gin.REQUIRED,
               loss_fn: model_lib.LossFn = gin.REQUIRED,
               combiner: self_training.LossCombiner = gin.REQUIRED,
               targets: Callable[..., Dict[str, Any]] = gin.REQUIRED,
               input_size: Sequence[int] = gin.REQUIRED,
               ema_decay: float = 0.999,
               burn_in_steps: int = 0,
               gradient_clip_norm: Optional[float] = None,
               name: str = 'mean_teacher_model'):
    """Builds student and teacher; call it under the strategy scope.

    Args:
      network_fn: builds the Model Garden network (gin `@build_retinanet`,
        no parentheses): called once for the student, once for the teacher.
      loss_fn, combiner, gradient_clip_norm: as `SelfTrainingModel`'s.
      targets: `(teacher network, views) -> pseudo labels` (gin
        `@DetectionTargets()` / `@SegmentationTargets()`).
      input_size: (H, W) of the (padded) images, to build both networks.
      ema_decay: teacher decay per step, in [0, 1) (e.g. 0.999).
      burn_in_steps: optimizer steps on human labels only, first.
      name: model name.
    """
    if not 0.0 <= ema_decay < 1.0:
      raise ValueError('st_tf/mean_teacher/model.py: ema_decay must be in '
                       f'[0, 1), got {ema_decay}.')
    if burn_in_steps < 0:
      raise ValueError('st_tf/mean_teacher/model.py: burn_in_steps must be '
                       f'>= 0, got {burn_in_steps}.')
    super().__init__(network_fn(), loss_fn, combiner, gradient_clip_norm,
                     name=name)
    self.targets = targets
    self.ema_decay = float(ema_decay)
    self.burn_in_steps = int(burn_in_steps)
    self.input_size = [int(s) for s in input_size]
    zeros = tf.zeros([1] + self.input_size + [3], tf.uint8)
    self(zeros, training=False)
    self.teacher_network, order = ema.build_teacher(
        network_fn, lambda net: net(preprocess_ops.normalize_image(zeros),
                                    training=False))
    self._ema_order = list(order)
    self._pairs()  # checks that the two networks match
    self.ema_started = self.add_weight(
        name='ema_started', shape=(), dtype=tf.float32, initializer='zeros',
        trainable=False,
        synchronization=tf.VariableSynchronization.ON_WRITE,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    for key in ('pseudo_boxes_per_image',) + _QUALITY:
      self._trackers[key] = tf_keras.metrics.Mean(key)

  def teacher_call(self, images: tf.Tensor, **kwargs) -> Mapping[str, Any]:
    """The EMA teacher on uint8 images [B, H, W, 3] (0-255), inference
    mode: the same outputs as `call(images, training=False)` has for the
    student (RetinaNet raw outputs + detections; segmentation `logits`)."""
    kwargs.pop('training', None)
    return self.teacher_network(preprocess_ops.normalize_image(images),
                                training=False, **kwargs)

  def _l2_loss(self) -> tf.Tensor:
    """Regularization of the student network only (not the teacher's)."""
    losses = [tf.cast(l, tf.float32) for l in self.network.losses]
    return tf.add_n(losses) if losses else tf.constant(0.0)

  def _pairs(self):
    return ema.paired_weights(self.teacher_network, self.network,
                              self._ema_order)

  def start_teacher(self, active: tf.Tensor) -> None:
    """Teacher := student once, at the first step after burn-in."""
    start = (active > 0) & (self.ema_started <= 0)
    for t, s in self._pairs():
      t.assign(tf.where(start, tf.cast(tf.stop_gradient(s), t.dtype), t))
    self.ema_started.assign(tf.maximum(self.ema_started, active))

  def update_teacher(self, active: tf.Tensor) -> None:
    """EMA step after the student's update (decay 1 = frozen in burn-in)."""
    ema.ema_update(self._pairs(), tf.where(active > 0, self.ema_decay, 1.0))

  def _batch(self, images, labels, views, active):
    """(images, labels, [is_human, is_pseudo], pseudo) of the whole batch."""
    pseudo = self.targets(self.teacher_network, views)
    strong = views['strong']
    n_h, n_u = tf.shape(images)[0], tf.shape(strong)[0]
    weights = tf.stack([
        tf.concat([tf.ones([n_h]), tf.zeros([n_u])], 0),
        tf.concat([tf.zeros([n_h]), tf.fill([n_u], active)], 0)])
    return (tf.concat([images, tf.cast(strong, images.dtype)], 0),
            _concat_labels(labels, pseudo), weights, pseudo)

  def train_step(self, data):
    (images, labels), views = data
    active = tf.cast(self.optimizer.iterations >= self.burn_in_steps,
                     tf.float32)
    self.start_teacher(active)
    images, labels, weights, pseudo = self._batch(images, labels, views,
                                                  active)
    with tf.GradientTape() as tape:
      outputs = model_lib._to_float32(self(images, training=True))  # pylint: disable=protected-access
      parts = self.loss_fn(outputs, labels, weights)
      human = {k: v[0] for k, v in parts.items()}
      pseudo_part = {k: v[1] for k, v in parts.items()}
      combined, logs = self.combiner(
          human['total'], pseudo_part['total'], tf.constant(True),
          active > 0, training=True)
      l2_loss = self._l2_loss()
      loss = combined + l2_loss
      scaled_loss = self._scale_loss(loss)
    self._apply(tape, scaled_loss)
    self.update_teacher(active)
    return self._logs(logs, loss, l2_loss, human, pseudo_part, pseudo)

  def _logs(self, logs, loss, l2_loss, human, pseudo_part, pseudo):
    """Tracker updates + the step's logs (pseudo labels, quality, lr)."""
    values = {'loss': loss, 'human_loss': human['total'],
              'pseudo_loss': pseudo_part['total'], 'l2_loss': l2_loss,
              'pseudo_boxes_per_image': tf.reduce_mean(
                  tf.cast(pseudo['num_boxes'], tf.float32))}
    values.update({k: pseudo[k] for k in _QUALITY if k in pseudo})
    for key, value in values.items():
      self._trackers[key].update_state(value)
    out = {k: self._trackers[k].result() for k in values}
    out.update(logs)
    out.update({f'human_{k}': v for k, v in human.items() if k != 'total'})
    out.update({f'pseudo_{k}': v for k, v in pseudo_part.items()
                if k != 'total'})
    out['ema_started'] = tf.identity(self.ema_started)
    out['learning_rate'] = self._learning_rate()
    return out

  def get_config(self) -> dict:
    return dict(super().get_config(), ema_decay=self.ema_decay,
                burn_in_steps=self.burn_in_steps)
