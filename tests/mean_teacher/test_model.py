"""MeanTeacherModel: burn-in, EMA values, no teacher gradient, resume."""
import numpy as np
import tensorflow as tf
import tf_keras

from tests.mean_teacher import toy


def _values(variables):
  return [v.numpy().copy() for v in variables]


def _compiled(model, lr=0.1):
  model.compile(optimizer=tf_keras.optimizers.SGD(lr))
  return tf.function(model.train_step)


def test_teacher_is_not_trained_and_ema_values():
  model = toy.build(decay=0.5, burn_in=2)
  teacher_vars = model.teacher_network.weights
  trainable = {id(v) for v in model.trainable_variables}
  assert teacher_vars and not trainable & {id(v) for v in teacher_vars}
  step = _compiled(model)
  initial = _values(teacher_vars)
  for i in range(2):  # burn-in: the teacher is left alone
    logs = step(toy.batch(i))
    assert float(logs['pseudo_weight']) == 0.0
    assert float(logs['ema_started']) == 0.0
  for got, want in zip(_values(teacher_vars), initial):
    np.testing.assert_array_equal(got, want)
  # Step 3 starts the EMA from the student, then averages it with the
  # updated student: t = 0.5 * s_before + 0.5 * s_after.
  before = _values(model.network.weights)
  logs = step(toy.batch(2))
  assert float(logs['ema_started']) == 1.0
  assert float(logs['pseudo_weight']) > 0.0
  after = _values(model.network.weights)
  assert any(not np.allclose(a, b) for a, b in zip(after, before))
  for t, b, a in zip(_values(teacher_vars), before, after):
    np.testing.assert_allclose(t, 0.5 * b + 0.5 * a, rtol=1e-5, atol=1e-6)
  teacher = _values(teacher_vars)
  step(toy.batch(3))
  for t, old, s in zip(_values(teacher_vars), teacher,
                       _values(model.network.weights)):
    np.testing.assert_allclose(t, 0.5 * old + 0.5 * s, rtol=1e-5, atol=1e-6)


def test_no_gradient_reaches_the_teacher():
  model = toy.build(burn_in=0)
  model.compile(optimizer=tf_keras.optimizers.SGD(0.1))
  (images, labels), views = toy.batch()
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(model.teacher_network.weights)  # the teacher runs in the tape
    images, labels, weights, _ = model._batch(  # pylint: disable=protected-access
        images, labels, views, tf.constant(1.0))
    loss = toy.loss_fn(model(images, training=True), labels, weights)
    total = tf.reduce_sum(loss['total'])
  grads = tape.gradient(total, model.teacher_network.weights)
  assert all(g is None for g in grads)
  assert any(g is not None for g in tape.gradient(total,
                                                  model.network.weights))


def test_checkpoint_resume_continues_with_the_same_teacher(tmp_path):
  model = toy.build(decay=0.7, burn_in=1)
  step = _compiled(model)
  for i in range(3):
    step(toy.batch(i))
  path = tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(
      str(tmp_path / 'ckpt'))
  resumed = toy.build(decay=0.7, burn_in=1, seed=5)
  resumed_step = _compiled(resumed)
  resumed.optimizer.build(resumed.trainable_variables)
  tf.train.Checkpoint(model=resumed, optimizer=resumed.optimizer).restore(
      path).assert_existing_objects_matched()
  assert float(resumed.ema_started) == 1.0
  for a, b in zip(_values(resumed.teacher_network.weights),
                  _values(model.teacher_network.weights)):
    np.testing.assert_array_equal(a, b)
  step(toy.batch(3))
  resumed_step(toy.batch(3))
  for a, b in zip(_values(resumed.teacher_network.weights),
                  _values(model.teacher_network.weights)):
    np.testing.assert_allclose(a, b, rtol=1e-6)
