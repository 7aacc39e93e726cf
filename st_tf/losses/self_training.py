"""Self-training loss combiners: human loss L_h + pseudo loss L_p -> one loss.

* `normalized` (the paper's Appendix, Zoph et al. 2020):
  `L = 1/(1+a) * (L_h + a * (m_h / m_p) * L_p)`, where m_h, m_p are moving
  averages of L_h and L_p, constants for the gradient.
* `weighted`: `L = L_h + a * L_p` (the unstable baseline of the paper).
* `human_only`: `L = L_h` (the teacher).

Every combiner keeps the moving averages (so runs are comparable in the
logs). They are non-trainable float32 scalars, created at construction time
(build the combiner under the strategy scope), tracked by the owning Keras
model (checkpointed with it), start at the values of the first batch that
has the part (flags `initialized_h` / `initialized_p`), and are updated with
the cross-replica mean of the losses so every replica holds the same value.

When the batch has no pseudo example (`has_pseudo` False on every
replica), the pseudo term and its normalization vanish: every combiner
returns `L_h` and m_p is left unchanged. Under a strategy the combination is
that of the global batch (`_global_parts`): a replica without pseudo
examples still weighs its L_h by 1 / (1 + a) when another replica has some.

Combiners are registered by name in `COMBINERS` and as gin configurables of
the same name (`SelfTrainingModel.combiner = @normalized()`).
"""
from __future__ import annotations

from typing import Callable

import gin
import tensorflow as tf
import tf_keras

from st_tf import registry

COMBINERS: registry.Registry[type['LossCombiner']] = registry.Registry(
    'combiner')


def register(name: str) -> Callable[[type], type]:
  """Registers a `LossCombiner` subclass under `name` (registry and gin)."""

  def wrap(cls):
    COMBINERS.register(name, cls)  # ValueError if `name` is taken.
    gin.external_configurable(cls, name=name, module='st_tf.losses')
    return cls

  return wrap


def get_combiner(name: str, **kwargs) -> 'LossCombiner':
  """Builds the combiner registered as `name` (ValueError naming the known
  ones if none is)."""
  return COMBINERS.get(name)(**kwargs)


class LossCombiner(tf_keras.layers.Layer):
  """Base: moving averages of L_h and L_p plus the combination rule.

  Call with float32 scalars `human_loss`, `pseudo_loss` and bool scalars
  `has_human`, `has_pseudo` (whether this replica's batch has examples of
  the part). Returns `(loss, logs)`: `loss` is the float32 scalar to
  minimize, `logs` has `m_h`, `m_p` and `pseudo_weight` (the effective
  weight of L_p in `loss`). With `training=False` the averages are not
  updated.
  """

  def __init__(self,
               pseudo_weight: float = 1.0,
               momentum: float = 0.99,
               epsilon: float = 1e-8,
               warmup_steps: int = 0,
               **kwargs):
    """Creates the combiner.

    Args:
      pseudo_weight: the paper's `a`, weight of the pseudo part (>= 0).
      warmup_steps: if > 0, `a` ramps up linearly from 0 over the first
        `warmup_steps` training calls (counted in the checkpointed `steps`
        variable, so a resumed run continues the ramp).
      momentum: moving average momentum, `m <- momentum * m + (1 - momentum)
        * L` (in [0, 1)).
      epsilon: guard on m_p in the ratio m_h / m_p.
      **kwargs: forwarded to `tf_keras.layers.Layer`.
    """
    kwargs.setdefault('dtype', tf.float32)
    super().__init__(**kwargs)
    if pseudo_weight < 0:
      raise ValueError('st_tf/losses/self_training.py: pseudo_weight must be '
                       f'>= 0, got {pseudo_weight}.')
    if not 0.0 <= momentum < 1.0:
      raise ValueError('st_tf/losses/self_training.py: momentum must be in '
                       f'[0, 1), got {momentum}.')
    if warmup_steps < 0:
      raise ValueError('st_tf/losses/self_training.py: warmup_steps must be '
                       f'>= 0, got {warmup_steps}.')
    self.pseudo_weight = float(pseudo_weight)
    self.warmup_steps = int(warmup_steps)
    self.momentum = float(momentum)
    self.epsilon = float(epsilon)
    # ON_WRITE + ONLY_FIRST_REPLICA: assignable in replica context under a
    # MirroredStrategy; the values assigned are cross-replica means, so every
    # replica writes the same number anyway.
    make = lambda name: self.add_weight(  # pylint: disable=g-long-lambda
        name=name, shape=(), dtype=tf.float32, initializer='zeros',
        trainable=False,
        synchronization=tf.VariableSynchronization.ON_WRITE,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.m_h = make('m_h')
    self.m_p = make('m_p')
    self.initialized_h = make('initialized_h')
    self.initialized_p = make('initialized_p')
    self.steps = make('steps')  # training calls so far (pseudo warm-up)

  def get_config(self) -> dict:
    config = super().get_config()
    config.update(pseudo_weight=self.pseudo_weight, momentum=self.momentum,
                  epsilon=self.epsilon, warmup_steps=self.warmup_steps)
    return config

  def _update(self, var, flag, value, present):
    """Moving average update of `var` with `value` if `present` (scalars)."""
    started = flag > 0
    averaged = self.momentum * var + (1.0 - self.momentum) * value
    new = tf.where(present, tf.where(started, averaged, value), var)
    var.assign(new)
    flag.assign(tf.where(present, 1.0, flag))

  def update_averages(self, human_loss, pseudo_loss, has_human, has_pseudo):
    """Updates m_h, m_p with the cross-replica mean of the present parts.

    Returns (replicas whose batch has human examples, ... pseudo ones).
    """
    stats = tf.stack([
        tf.stop_gradient(tf.cast(human_loss, tf.float32)),
        tf.stop_gradient(tf.cast(pseudo_loss, tf.float32)),
        tf.cast(has_human, tf.float32),
        tf.cast(has_pseudo, tf.float32),
    ])
    stats = tf.stack([stats[0] * stats[2], stats[1] * stats[3],
                      stats[2], stats[3]])
    ctx = tf.distribute.get_replica_context()
    if ctx is not None:  # None in cross-replica context: nothing to reduce.
      stats = ctx.all_reduce(tf.distribute.ReduceOp.SUM, stats)
    mean_h = tf.math.divide_no_nan(stats[0], stats[2])
    mean_p = tf.math.divide_no_nan(stats[1], stats[3])
    self._update(self.m_h, self.initialized_h, mean_h, stats[2] > 0)
    self._update(self.m_p, self.initialized_p, mean_p, stats[3] > 0)
    return stats[2], stats[3]  # Replicas whose batch has each part.

  def _global_parts(self, has_human, has_pseudo, counts):
    """(any replica has pseudo, human scale, pseudo scale) of this replica.

    The gradient is the replicas' mean of their losses; scaling a present
    part by replicas / (replicas holding it) makes that mean the loss of the
    global batch, whose L_h, L_p are the means over the replicas holding
    them (as m_h, m_p are), also when one replica has no pseudo example.
    """
    ctx = tf.distribute.get_replica_context()
    replicas = float(ctx.num_replicas_in_sync) if ctx is not None else 1.0
    n_h, n_p = counts
    scale = lambda present, n: tf.where(  # pylint: disable=g-long-lambda
        present, replicas / tf.maximum(n, 1.0), 0.0)
    return n_p > 0, scale(has_human, n_h), scale(has_pseudo, n_p)

  def call(self, human_loss, pseudo_loss, has_human, has_pseudo,
           training=None):
    human_loss = tf.cast(human_loss, tf.float32)
    pseudo_loss = tf.cast(pseudo_loss, tf.float32)
    any_pseudo, human_scale, pseudo_scale = has_pseudo, 1.0, 1.0
    if training is None or training:
      any_pseudo, human_scale, pseudo_scale = self._global_parts(
          has_human, has_pseudo, self.update_averages(
              human_loss, pseudo_loss, has_human, has_pseudo))
      self.steps.assign(self.steps + 1.0)
    m_h = tf.identity(self.m_h)
    m_p = tf.identity(self.m_p)
    a = self.current_pseudo_weight()
    pseudo_w = tf.where(any_pseudo, self.effective_pseudo_weight(m_h, m_p, a),
                        0.)
    pseudo_w = tf.stop_gradient(pseudo_w)
    human_w = tf.stop_gradient(
        tf.where(any_pseudo, self.human_weight(a), 1.0))
    loss = (human_w * human_scale * human_loss +
            pseudo_w * pseudo_scale * pseudo_loss)
    return loss, {'m_h': m_h, 'm_p': m_p, 'pseudo_weight': pseudo_w,
                  'human_weight': human_w, 'a': a}

  def current_pseudo_weight(self) -> tf.Tensor:
    """`a` at this step: `pseudo_weight`, ramped over `warmup_steps`."""
    if not self.warmup_steps:
      return tf.constant(self.pseudo_weight)
    ramp = tf.minimum(tf.identity(self.steps) / float(self.warmup_steps), 1.0)
    return self.pseudo_weight * ramp

  def human_weight(self, a: tf.Tensor) -> tf.Tensor:
    """Weight of L_h when the batch has pseudo examples (`a` = current)."""
    raise NotImplementedError

  def effective_pseudo_weight(self, m_h: tf.Tensor, m_p: tf.Tensor,
                              a: tf.Tensor) -> tf.Tensor:
    """Weight of L_p when the batch has pseudo examples (`a` = current)."""
    raise NotImplementedError


@register('normalized')
class NormalizedCombiner(LossCombiner):
  """The paper: 1/(1+a) * (L_h + a * (m_h / m_p) * L_p)."""

  def human_weight(self, a):
    return 1.0 / (1.0 + a)

  def effective_pseudo_weight(self, m_h, m_p, a):
    ratio = tf.where(m_p > self.epsilon, m_h / tf.maximum(m_p, self.epsilon),
                     1.0)
    return a * ratio / (1.0 + a)


@register('weighted')
class WeightedCombiner(LossCombiner):
  """L_h + a * L_p."""

  def human_weight(self, a):
    del a
    return tf.constant(1.0)

  def effective_pseudo_weight(self, m_h, m_p, a):
    del m_h, m_p
    return a


@register('human_only')
class HumanOnlyCombiner(LossCombiner):
  """L_h: the pseudo part (if any) is not trained on."""

  def human_weight(self, a):
    del a
    return tf.constant(1.0)

  def effective_pseudo_weight(self, m_h, m_p, a):
    del m_h, m_p, a
    return tf.constant(0.0)
