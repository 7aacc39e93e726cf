"""Distribution strategies by name: a registry of factories chosen by gin.

Written for TPU pods and GPU hosts, tested on CPU. Usage from gin:

    get_strategy.name = 'tpu'
    get_strategy.tpu = 'grpc://10.0.0.2:8470'   # or '' / 'local' on a TPU VM

`multi_worker_mirrored` reads the cluster from the `TF_CONFIG` environment
variable (one process per worker, all running the same command).
"""
from __future__ import annotations

from typing import Callable, Optional

from absl import logging
import gin
import tensorflow as tf
from official.common import distribute_utils

from st_tf import registry

StrategyFactory = Callable[[Optional[str]], tf.distribute.Strategy]

_STRATEGIES: registry.Registry[StrategyFactory] = registry.Registry(
    'strategy', binding='get_strategy.name (or --strategy)')

# Decorator registering `factory(tpu_address) -> Strategy` under a name.
register_strategy = _STRATEGIES.register


def available_strategies() -> list[str]:
  """Names accepted by `get_strategy`."""
  return _STRATEGIES.names()


def _local(make: Callable[[], tf.distribute.Strategy]) -> StrategyFactory:
  """The factory of a strategy that takes no TPU address."""

  def factory(tpu: Optional[str]) -> tf.distribute.Strategy:
    del tpu
    return make()

  return factory


def _one_device() -> tf.distribute.Strategy:
  gpus = tf.config.list_logical_devices('GPU')
  return tf.distribute.OneDeviceStrategy('/gpu:0' if gpus else '/cpu:0')


register_strategy('default', _local(tf.distribute.get_strategy))
register_strategy('one_device', _local(_one_device))
register_strategy('mirrored', _local(tf.distribute.MirroredStrategy))
# Synchronous data parallelism across the workers listed in TF_CONFIG.
register_strategy('multi_worker_mirrored',
                  _local(tf.distribute.MultiWorkerMirroredStrategy))


@register_strategy('tpu')
def _tpu(tpu: Optional[str]) -> tf.distribute.Strategy:
  """Connects to and initializes the TPU system (`tpu`: address or 'local')."""
  resolver = distribute_utils.tpu_initialize(tpu if tpu is not None else '')
  return tf.distribute.TPUStrategy(resolver)


@gin.configurable
def get_strategy(name: str = 'default',
                 tpu: Optional[str] = None) -> tf.distribute.Strategy:
  """Builds the distribution strategy registered under `name`.

  Args:
    name: one of `available_strategies()`: 'default' (no distribution),
      'one_device', 'mirrored' (all local GPUs), 'multi_worker_mirrored'
      (cluster from TF_CONFIG), 'tpu'.
    tpu: TPU address for 'tpu' ('' or 'local' on a TPU VM); ignored otherwise.

  Returns:
    A `tf.distribute.Strategy`.
  """
  strategy = _STRATEGIES.get(name)(tpu)  # ValueError naming the known ones.
  logging.info('Strategy %s (%s) with %d replicas.', name,
               type(strategy).__name__, strategy.num_replicas_in_sync)
  return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes checkpoints, summaries and configs.

  Single-process strategies are always chief. In a multi-worker cluster the
  chief is the 'chief' task, or worker 0 when there is no 'chief' task.
  """
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or isinstance(
      resolver, tf.distribute.cluster_resolver.TPUClusterResolver):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  if task_type is None:
    return True
  if task_type == 'chief':
    return True
  has_chief = 'chief' in resolver.cluster_spec().as_dict()
  return task_type == 'worker' and task_id == 0 and not has_chief


def task_id(strategy: tf.distribute.Strategy) -> int:
  """This process's task index (0 for single-process strategies)."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  return int(getattr(resolver, 'task_id', 0) or 0)
