"""The EMA teacher: a non-trainable copy of the student network.

Mean teacher (Tarvainen & Valpola 2017; Unbiased / Soft Teacher for
detection): the teacher's weights are an exponential moving average of the
student's, `t <- decay * t + (1 - decay) * s`, over EVERY weight of the
network (trainable ones and the batch-norm moving statistics, which the
teacher uses in inference mode).

Strategies: the teacher's variables are made by `build_teacher` under a
variable creator that gives them `ON_WRITE` synchronization and
`ONLY_FIRST_REPLICA` aggregation (as the combiners' moving averages), so they
can be assigned in replica context under a `MirroredStrategy`; every replica
computes the same value from the synced student weights (the student's own
batch-norm statistics are per replica; replica 0's are taken). Build the
teacher inside `strategy.scope()` (the model's constructor does). The
variables are attributes of the owning Keras model, hence checkpointed with
it: a resumed run continues with the same teacher.
"""
from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import tensorflow as tf
import tf_keras


def _teacher_creator(next_creator, **kwargs):
  """Variable creator: non-trainable, assignable in replica context."""
  kwargs['trainable'] = False
  kwargs['synchronization'] = tf.VariableSynchronization.ON_WRITE
  kwargs['aggregation'] = tf.VariableAggregation.ONLY_FIRST_REPLICA
  return next_creator(**kwargs)


def build_teacher(network_fn: Callable[[], tf_keras.Model],
                  build: Callable[[tf_keras.Model], None]
                  ) -> Tuple[tf_keras.Model, Tuple[int, ...]]:
  """Builds the teacher network (same architecture as `network_fn()`'s).

  Args:
    network_fn: builds a Model Garden network (gin `@build_retinanet`).
    build: creates all its variables (e.g. calls it on a zero batch);
      runs under the same variable creator.

  Returns:
    (network with `trainable = False`, order): `network.weights[order[i]]`
    is the teacher twin of the student's `weights[i]` (Keras lists the
    weights of a frozen network in another order).
  """
  with tf.variable_creator_scope(_teacher_creator):
    network = network_fn()
    build(network)
  as_built = list(network.weights)  # trainable: the student's order
  network.trainable = False
  position = {id(v): i for i, v in enumerate(network.weights)}
  return network, tuple(position[id(v)] for v in as_built)


def paired_weights(teacher: tf_keras.Model, student: tf_keras.Model,
                   order: Sequence[int]) -> List[tuple]:
  """(teacher variable, student variable) pairs (`order`: `build_teacher`'s).

  Raises:
    ValueError: the two networks' weights differ in count or shapes.
  """
  t_weights, s_weights = teacher.weights, student.weights
  if len(t_weights) != len(s_weights) or len(order) != len(s_weights):
    raise ValueError(
        'st_tf/mean_teacher/ema.py: the teacher network has '
        f'{len(t_weights)} weights, the student {len(s_weights)}; build both '
        'with the same network function.')
  pairs = [(t_weights[i], s) for i, s in zip(order, s_weights)]
  for t, s in pairs:
    if t.shape != s.shape:
      raise ValueError(
          f'st_tf/mean_teacher/ema.py: teacher weight {t.name} {t.shape} vs '
          f'student weight {s.name} {s.shape}.')
  return pairs


def ema_update(pairs: Sequence[tuple], decay: tf.Tensor) -> tf.Operation:
  """`t <- decay * t + (1 - decay) * s` for every (teacher, student) pair.

  `decay` is a float32 scalar in [0, 1]; 0 copies the student. The student
  values are read with `tf.stop_gradient` (no gradient reaches either side).
  """
  decay = tf.cast(decay, tf.float32)
  updates = []
  for t, s in pairs:
    d = tf.cast(decay, t.dtype)
    updates.append(t.assign(d * t + (1.0 - d) * tf.stop_gradient(
        tf.cast(s, t.dtype))))
  return tf.group(updates)
