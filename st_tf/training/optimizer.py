"""Gin builders for the optimizer, the learning-rate schedule and precision.

The paper trains with SGD + momentum 0.9, a linear warmup then cosine decay
(segmentation) or step decay (detection), sync BN and gradient clipping by
global norm (10 in the released configs). Example gin:

    make_optimizer.name = 'sgd'
    make_optimizer.learning_rate = @warmup_cosine()
    make_optimizer.global_clipnorm = 10.0
    warmup_cosine.learning_rate = 0.08
    warmup_cosine.total_steps = 20000
    warmup_cosine.warmup_steps = 500
    set_mixed_precision.precision = 'bfloat16'   # TPU; 'float16' on GPU

Weight decay: Model Garden applies L2 through the model's
`kernel_regularizer` (added to the loss by the model's train step). This file
also offers *decoupled* weight decay (`make_optimizer.weight_decay`, Keras
AdamW-style `w -= lr * wd * w`), which skips BN/bias variables by name. Use
one or the other, not both.

Schedules reuse Model Garden's `official.modeling.optimization.lr_schedule`
(`LinearWarmup`, `CosineDecayWithOffset`, `PiecewiseConstantDecayWithOffset`).
All steps count optimizer updates (`optimizer.iterations`).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import gin
import tensorflow as tf
import tf_keras
from official.modeling.optimization import lr_schedule

from st_tf import registry

Schedule = tf_keras.optimizers.schedules.LearningRateSchedule
LearningRate = Union[float, Schedule]

# Variable-name patterns that decoupled weight decay skips.
NO_DECAY_PATTERNS = ('bias', 'beta', 'gamma', 'batch_norm', 'moving_')


def _with_warmup(schedule: LearningRate, warmup_steps: int,
                 warmup_learning_rate: float) -> LearningRate:
  if warmup_steps <= 0:
    return schedule
  return lr_schedule.LinearWarmup(
      after_warmup_lr_sched=schedule, warmup_steps=warmup_steps,
      warmup_learning_rate=warmup_learning_rate)


@gin.configurable
def constant_lr(learning_rate: float = gin.REQUIRED,
                warmup_steps: int = 0,
                warmup_learning_rate: float = 0.0) -> LearningRate:
  """A constant learning rate after an optional linear warmup."""
  return _with_warmup(float(learning_rate), warmup_steps, warmup_learning_rate)


@gin.configurable
def warmup_cosine(learning_rate: float = gin.REQUIRED,
                  total_steps: int = gin.REQUIRED,
                  warmup_steps: int = 0,
                  warmup_learning_rate: float = 0.0,
                  alpha: float = 0.0) -> LearningRate:
  """Linear warmup to `learning_rate`, then cosine decay to `alpha * lr`.

  The cosine runs over the `total_steps - warmup_steps` steps after warmup
  and reaches its floor at `total_steps`.
  """
  if total_steps <= warmup_steps:
    raise ValueError(f'warmup_cosine: total_steps ({total_steps}) must exceed '
                     f'warmup_steps ({warmup_steps}); for a short run bind '
                     'a shorter warm-up, e.g. --gin_bindings='
                     f'"warmup_cosine.warmup_steps = {max(total_steps // 10, 1)}"'
                     '.')
  cosine = lr_schedule.CosineDecayWithOffset(
      offset=warmup_steps, initial_learning_rate=learning_rate,
      decay_steps=total_steps - warmup_steps, alpha=alpha)
  return _with_warmup(cosine, warmup_steps, warmup_learning_rate)


@gin.configurable
def warmup_step_decay(boundaries: Sequence[int] = gin.REQUIRED,
                      values: Sequence[float] = gin.REQUIRED,
                      warmup_steps: int = 0,
                      warmup_learning_rate: float = 0.0) -> LearningRate:
  """Linear warmup to `values[0]`, then piecewise constant (step decay).

  `values[i]` is used for steps in `(boundaries[i-1], boundaries[i]]`
  (Keras `PiecewiseConstantDecay` semantics, absolute steps);
  `len(values) == len(boundaries) + 1`.
  """
  if len(values) != len(boundaries) + 1:
    raise ValueError(f'warmup_step_decay: need len(values) == '
                     f'len(boundaries) + 1, got {len(values)} values and '
                     f'{len(boundaries)} boundaries.')
  steps = lr_schedule.PiecewiseConstantDecayWithOffset(
      boundaries=list(boundaries), values=list(values))
  return _with_warmup(steps, warmup_steps, warmup_learning_rate)


def _sgd(learning_rate: LearningRate, momentum: float, nesterov: bool,
         beta_1: float, beta_2: float, epsilon: float,
         **common) -> tf_keras.optimizers.Optimizer:
  del beta_1, beta_2, epsilon
  return tf_keras.optimizers.SGD(learning_rate=learning_rate,
                                 momentum=momentum, nesterov=nesterov,
                                 **common)


def _adam(learning_rate: LearningRate, momentum: float, nesterov: bool,
          beta_1: float, beta_2: float, epsilon: float,
          **common) -> tf_keras.optimizers.Optimizer:
  del momentum, nesterov
  return tf_keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1,
                                  beta_2=beta_2, epsilon=epsilon, **common)


OptimizerFn = Callable[..., tf_keras.optimizers.Optimizer]

_OPTIMIZERS: registry.Registry[OptimizerFn] = registry.Registry(
    'optimizer', {'sgd': _sgd, 'adam': _adam}, binding='make_optimizer.name')


@gin.configurable
def make_optimizer(
    name: str = 'sgd',
    learning_rate: LearningRate = gin.REQUIRED,
    momentum: float = 0.9,
    nesterov: bool = False,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    weight_decay: Optional[float] = None,
    global_clipnorm: Optional[float] = None,
    jit_compile: bool = False,
) -> tf_keras.optimizers.Optimizer:
  """Builds a tf_keras optimizer. Call inside `strategy.scope()`.

  Args:
    name: 'sgd' (with momentum, the paper's) or 'adam'.
    learning_rate: a float or a schedule (`@warmup_cosine()`, ...).
    momentum, nesterov: SGD only.
    beta_1, beta_2, epsilon: Adam only.
    weight_decay: decoupled weight decay rate (None = off); variables whose
      names match `NO_DECAY_PATTERNS` are excluded.
    global_clipnorm: clip gradients by their global norm (None = off).
    jit_compile: XLA-compile the update (TPU compiles anyway).

  Returns:
    The optimizer, wrapped in a `LossScaleOptimizer` when the global Keras
    policy is 'mixed_float16' (see `set_mixed_precision`). The model's
    custom train step must then scale the loss (`get_scaled_loss` /
    `get_unscaled_gradients`) or use `optimizer.minimize(loss, tape=tape)`.
  """
  optimizer = _OPTIMIZERS.get(name)(  # ValueError naming the known ones.
      learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
      beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
      weight_decay=weight_decay, global_clipnorm=global_clipnorm,
      jit_compile=jit_compile)
  if weight_decay:
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_PATTERNS))
  if tf_keras.mixed_precision.global_policy().name == 'mixed_float16':
    optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
  return optimizer


def current_learning_rate(optimizer: tf_keras.optimizers.Optimizer
                         ) -> tf.Tensor:
  """The learning rate of the next update (float32 scalar)."""
  inner = getattr(optimizer, 'inner_optimizer', optimizer)
  lr = inner._learning_rate  # pylint: disable=protected-access
  if isinstance(lr, Schedule):
    return tf.cast(lr(inner.iterations), tf.float32)
  return tf.cast(tf.convert_to_tensor(lr), tf.float32)


# Keras policy per precision name.
_POLICIES: registry.Registry[str] = registry.Registry('precision', {
    'float32': 'float32',
    'bfloat16': 'mixed_bfloat16',   # TPU
    'float16': 'mixed_float16',     # GPU; make_optimizer adds loss scaling
}, binding='set_mixed_precision.precision')


@gin.configurable
def set_mixed_precision(precision: str = 'float32') -> str:
  """Sets the global Keras precision policy; call before building the model.

  Args:
    precision: 'float32' (default), 'bfloat16' (TPU) or 'float16' (GPU, with
      dynamic loss scaling added by `make_optimizer`).

  Returns:
    The Keras policy name now in effect.
  """
  policy = _POLICIES.get(precision)  # ValueError naming the known ones.
  tf_keras.mixed_precision.set_global_policy(policy)
  return policy
