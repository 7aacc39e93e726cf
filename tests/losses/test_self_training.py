"""Tests for st_tf.losses.self_training (combiners and moving averages)."""
import os
import subprocess
import sys
import textwrap

import gin
import numpy as np
import pytest
import tensorflow as tf

from st_tf.losses import self_training

T, F = tf.constant(True), tf.constant(False)


def _run(combiner, l_h, l_p, has_pseudo=True):
  loss, logs = combiner(tf.constant(l_h), tf.constant(l_p), T,
                        tf.constant(has_pseudo), training=True)
  return float(loss), {k: float(v) for k, v in logs.items()}


def test_normalized_matches_paper_formula_and_starts_at_first_batch():
  c = self_training.NormalizedCombiner(pseudo_weight=1.0, momentum=0.5)
  loss, logs = _run(c, 2.0, 4.0)
  # First batch: m_h = 2, m_p = 4 (not 0).
  assert (logs['m_h'], logs['m_p']) == (2.0, 4.0)
  assert loss == pytest.approx(1 / 2 * (2.0 + 1.0 * (2.0 / 4.0) * 4.0))
  loss, logs = _run(c, 4.0, 2.0)
  m_h, m_p = 0.5 * 2 + 0.5 * 4, 0.5 * 4 + 0.5 * 2
  assert (logs['m_h'], logs['m_p']) == (m_h, m_p)
  assert loss == pytest.approx(1 / 2 * (4.0 + 1.0 * (m_h / m_p) * 2.0))
  assert logs['pseudo_weight'] == pytest.approx(1.0 * m_h / m_p / 2)

  c3 = self_training.NormalizedCombiner(pseudo_weight=3.0, momentum=0.9)
  _run(c3, 1.0, 5.0)
  loss, logs = _run(c3, 2.0, 3.0)
  m_h, m_p = 0.9 * 1 + 0.1 * 2, 0.9 * 5 + 0.1 * 3
  assert loss == pytest.approx(1 / 4 * (2.0 + 3.0 * (m_h / m_p) * 3.0))


def test_normalized_averages_are_gradient_constants():
  c = self_training.NormalizedCombiner(pseudo_weight=2.0, momentum=0.0)
  l_h, l_p = tf.Variable(3.0), tf.Variable(6.0)
  with tf.GradientTape() as tape:
    loss, logs = c(l_h, l_p, T, T, training=True)
  g_h, g_p = tape.gradient(loss, [l_h, l_p])
  assert float(g_h) == pytest.approx(1 / 3)
  assert float(g_p) == pytest.approx(float(logs['pseudo_weight']))
  assert float(g_p) == pytest.approx(2.0 * (3.0 / 6.0) / 3)


def test_no_pseudo_part_returns_human_loss_and_keeps_m_p():
  c = self_training.NormalizedCombiner(pseudo_weight=1.0, momentum=0.5)
  loss, logs = _run(c, 3.0, 0.0, has_pseudo=False)
  assert loss == 3.0 and logs['pseudo_weight'] == 0.0
  assert logs['m_p'] == 0.0 and float(c.initialized_p) == 0.0
  # The first batch that has pseudo examples initializes m_p.
  _, logs = _run(c, 1.0, 8.0)
  assert logs['m_p'] == 8.0 and logs['m_h'] == 2.0


def test_normalized_guards_zero_pseudo_average():
  c = self_training.NormalizedCombiner(pseudo_weight=1.0)
  loss, logs = _run(c, 2.0, 0.0)
  assert np.isfinite(loss) and np.isfinite(logs['pseudo_weight'])
  assert loss == pytest.approx(1.0)


def test_eval_mode_does_not_update_averages():
  c = self_training.NormalizedCombiner(momentum=0.5)
  _run(c, 2.0, 4.0)
  c(tf.constant(10.0), tf.constant(10.0), T, T, training=False)
  assert (float(c.m_h), float(c.m_p)) == (2.0, 4.0)


def test_weighted_and_human_only():
  loss, logs = _run(self_training.WeightedCombiner(pseudo_weight=0.5), 2., 6.)
  assert loss == 2.0 + 0.5 * 6.0 and logs['pseudo_weight'] == 0.5
  loss, logs = _run(self_training.HumanOnlyCombiner(), 2.0, 6.0)
  assert loss == 2.0 and logs['pseudo_weight'] == 0.0
  assert logs['m_p'] == 6.0  # Still tracked for the logs.


def test_checkpoint_restores_averages_and_flags(tmp_path):
  c = self_training.NormalizedCombiner(momentum=0.5)
  _run(c, 2.0, 4.0)
  path = tf.train.Checkpoint(combiner=c).save(str(tmp_path / 'ckpt'))
  restored = self_training.NormalizedCombiner(momentum=0.5)
  tf.train.Checkpoint(combiner=restored).restore(path).assert_consumed()
  assert (float(restored.m_h), float(restored.m_p)) == (2.0, 4.0)
  # Continues the average instead of restarting from the next batch.
  _, logs = _run(restored, 4.0, 4.0)
  assert logs['m_h'] == 3.0


def test_registry_and_gin():
  assert set(self_training.COMBINERS) >= {'normalized', 'weighted',
                                          'human_only'}
  assert isinstance(self_training.get_combiner('weighted'),
                    self_training.WeightedCombiner)
  with pytest.raises(ValueError, match='unknown combiner'):
    self_training.get_combiner('nope')
  with pytest.raises(ValueError, match='momentum'):
    self_training.NormalizedCombiner(momentum=1.0)

  @gin.configurable
  def holder(combiner):
    return combiner

  gin.parse_config(['holder.combiner = @normalized()',
                    'normalized.pseudo_weight = 4.0'])
  combiner = holder()  # pylint: disable=no-value-for-parameter
  assert isinstance(combiner, self_training.NormalizedCombiner)
  assert combiner.pseudo_weight == 4.0


_MIRRORED_SCRIPT = textwrap.dedent("""
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from st_tf.losses import self_training

    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
      c = self_training.NormalizedCombiner(pseudo_weight=1.0, momentum=0.5)

    @tf.function
    def step(l_h, l_p):
      def fn(l_h, l_p):
        loss, logs = c(l_h, l_p, tf.constant(True), tf.constant(True),
                       training=True)
        return loss, logs['m_h'], logs['m_p']
      return strategy.run(fn, args=(l_h, l_p))

    def per_replica(values):
      return strategy.experimental_distribute_values_from_function(
          lambda ctx: tf.constant(values[ctx.replica_id_in_sync_group]))

    out = []
    for l_h, l_p in (([1., 3.], [2., 6.]), ([5., 7.], [0., 4.])):
      loss, m_h, m_p = step(per_replica(l_h), per_replica(l_p))
      out.append([[float(t) for t in strategy.experimental_local_results(x)]
                  for x in (loss, m_h, m_p)])
    print('RESULT', out)
    """)


def test_moving_averages_are_cross_replica_means_under_mirrored_strategy():
  env = dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2')
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  proc = subprocess.run([sys.executable, '-c', _MIRRORED_SCRIPT], cwd=root,
                        env=env, capture_output=True, text=True, timeout=300,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith('RESULT')][0]
  (loss1, m_h1, m_p1), (loss2, m_h2, m_p2) = eval(line[len('RESULT'):])  # pylint: disable=eval-used
  # Step 1: means of the replicas (2 and 4); identical on both replicas.
  assert m_h1 == [2.0, 2.0] and m_p1 == [4.0, 4.0]
  # Replica losses: 0.5 * (l_h + (2 / 4) * l_p).
  assert loss1 == [pytest.approx(0.5 * (1 + 0.5 * 2)),
                   pytest.approx(0.5 * (3 + 0.5 * 6))]
  # Step 2: means 6 and 2, momentum 0.5.
  assert m_h2 == [4.0, 4.0] and m_p2 == [3.0, 3.0]
  assert loss2[0] == pytest.approx(0.5 * (5 + (4 / 3) * 0))


def test_warmup_ramps_a_from_zero_and_is_checkpointed(tmp_path):
  c = self_training.NormalizedCombiner(pseudo_weight=2.0, momentum=0.5,
                                       warmup_steps=4)
  loss, logs = _run(c, 2.0, 4.0)  # step 1 of 4: a = 0.5
  assert logs['a'] == pytest.approx(0.5)
  assert loss == pytest.approx(1 / 1.5 * (2.0 + 0.5 * (2.0 / 4.0) * 4.0))
  ckpt = tf.train.Checkpoint(c=c)
  path = ckpt.save(str(tmp_path / 'c'))
  for _ in range(5):
    _, logs = _run(c, 2.0, 4.0)
  assert logs['a'] == pytest.approx(2.0)  # ramp done, stays at a
  restored = self_training.NormalizedCombiner(pseudo_weight=2.0,
                                              warmup_steps=4)
  tf.train.Checkpoint(c=restored).restore(path)
  assert float(restored.steps) == 1.0
  w = self_training.WeightedCombiner(pseudo_weight=1.0, warmup_steps=2)
  loss, logs = _run(w, 1.0, 3.0)
  assert loss == pytest.approx(1.0 + 0.5 * 3.0) and logs['a'] == 0.5
  with pytest.raises(ValueError, match='warmup_steps'):
    self_training.NormalizedCombiner(warmup_steps=-1)
