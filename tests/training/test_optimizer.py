"""Optimizer builders, schedules and precision policy."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from st_tf.training import optimizer as opt_lib


def _values(schedule, steps):
  return np.array([float(schedule(s)) for s in steps])


def test_warmup_cosine_shape():
  lr = opt_lib.warmup_cosine(learning_rate=1.0, total_steps=110,
                             warmup_steps=10, warmup_learning_rate=0.0)
  v = _values(lr, [0, 5, 10, 60, 110])
  np.testing.assert_allclose(v, [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-6)
  with pytest.raises(ValueError, match='total_steps'):
    opt_lib.warmup_cosine(learning_rate=1.0, total_steps=5, warmup_steps=5)


def test_warmup_step_decay_and_constant():
  lr = opt_lib.warmup_step_decay(boundaries=[20, 30], values=[1.0, 0.1, 0.01],
                                 warmup_steps=10, warmup_learning_rate=0.5)
  np.testing.assert_allclose(_values(lr, [0, 10, 20, 21, 31]),
                             [0.5, 1.0, 1.0, 0.1, 0.01], atol=1e-6)
  with pytest.raises(ValueError, match='len'):
    opt_lib.warmup_step_decay(boundaries=[1], values=[1.0])
  assert opt_lib.constant_lr(learning_rate=0.3) == pytest.approx(0.3)


def test_sgd_momentum_clipping_and_lr():
  schedule = opt_lib.warmup_cosine(learning_rate=0.1, total_steps=10,
                                   warmup_steps=2)
  opt = opt_lib.make_optimizer(name='sgd', learning_rate=schedule,
                               momentum=0.9, global_clipnorm=1.0)
  assert isinstance(opt, tf_keras.optimizers.SGD)
  assert opt.momentum == 0.9 and opt.global_clipnorm == 1.0
  var = tf.Variable([0.0, 0.0])
  opt.iterations.assign(2)  # after warmup: lr = 0.1
  assert float(opt_lib.current_learning_rate(opt)) == pytest.approx(0.1)
  opt.apply_gradients([(tf.constant([300.0, 400.0]), var)])
  # Gradient of norm 500 clipped to norm 1: step = lr * [0.6, 0.8].
  np.testing.assert_allclose(var.numpy(), [-0.06, -0.08], rtol=1e-5)


def test_adam_decoupled_weight_decay_skips_bias():
  opt = opt_lib.make_optimizer(name='adam', learning_rate=0.1,
                               weight_decay=0.5)
  assert isinstance(opt, tf_keras.optimizers.Adam)
  kernel = tf.Variable([1.0], name='kernel')
  bias = tf.Variable([1.0], name='bias')
  opt.apply_gradients([(tf.zeros([1]), kernel), (tf.zeros([1]), bias)])
  assert float(kernel[0]) == pytest.approx(1.0 - 0.1 * 0.5)
  assert float(bias[0]) == pytest.approx(1.0)


def test_unknown_optimizer():
  with pytest.raises(ValueError, match="'lamb'.*adam"):
    opt_lib.make_optimizer(name='lamb', learning_rate=0.1)


@pytest.mark.parametrize('precision,policy,lso', [
    ('bfloat16', 'mixed_bfloat16', False),
    ('float16', 'mixed_float16', True),
    ('float32', 'float32', False),
])
def test_mixed_precision_policy(precision, policy, lso):
  try:
    assert opt_lib.set_mixed_precision(precision) == policy
    assert tf_keras.mixed_precision.global_policy().name == policy
    opt = opt_lib.make_optimizer(learning_rate=0.1)
    assert isinstance(opt, tf_keras.mixed_precision.LossScaleOptimizer) == lso
    assert float(opt_lib.current_learning_rate(opt)) == pytest.approx(0.1)
  finally:
    tf_keras.mixed_precision.set_global_policy('float32')
  with pytest.raises(ValueError, match='fp8'):
    opt_lib.set_mixed_precision('fp8')
