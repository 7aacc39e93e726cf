"""Strategy registry (CPU)."""
import pytest
import tensorflow as tf

from st_tf.training import strategy as strategy_lib


def test_registry_names():
  assert strategy_lib.available_strategies() == [
      'default', 'mirrored', 'multi_worker_mirrored', 'one_device', 'tpu']


@pytest.mark.parametrize('name,cls', [
    ('default', tf.distribute.Strategy),
    ('one_device', tf.distribute.OneDeviceStrategy),
    ('mirrored', tf.distribute.MirroredStrategy),
])
def test_local_strategies_build_on_cpu(name, cls):
  strategy = strategy_lib.get_strategy(name)
  assert isinstance(strategy, cls)
  assert strategy.num_replicas_in_sync == 1
  assert strategy_lib.is_chief(strategy)
  assert strategy_lib.task_id(strategy) == 0
  with strategy.scope():
    v = tf.Variable(1.0)
  assert float(v.numpy()) == 1.0


def test_unknown_strategy_lists_choices():
  with pytest.raises(ValueError, match="'gpu_pod'.*mirrored"):
    strategy_lib.get_strategy('gpu_pod')


def test_register_duplicate_rejected():
  with pytest.raises(ValueError, match='already registered'):
    strategy_lib.register_strategy('mirrored')(lambda tpu: None)


def test_chief_rules_from_cluster_spec():
  resolver_cls = tf.distribute.cluster_resolver.SimpleClusterResolver
  spec = tf.train.ClusterSpec({'worker': ['a:1', 'b:2']})

  class _Fake:

    def __init__(self, task_type, task_id, cluster=spec):
      self.cluster_resolver = resolver_cls(cluster, task_type=task_type,
                                           task_id=task_id)

  assert strategy_lib.is_chief(_Fake('worker', 0))
  assert not strategy_lib.is_chief(_Fake('worker', 1))
  assert strategy_lib.task_id(_Fake('worker', 1)) == 1
  with_chief = tf.train.ClusterSpec({'chief': ['c:0'], 'worker': ['a:1']})
  assert strategy_lib.is_chief(_Fake('chief', 0, with_chief))
  assert not strategy_lib.is_chief(_Fake('worker', 0, with_chief))
