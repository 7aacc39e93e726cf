"""Training, resume, init and restore with model_dir on ram://."""
import numpy as np
import tensorflow as tf
import tf_keras

from st_tf.training import checkpoints
from st_tf.training import init as init_lib
from st_tf.training import trainer
from tests import ram
from tests.training import tiny


def _train(model_dir, steps, **kwargs):
  return trainer.train(
      model_dir=model_dir, model=tiny.tiny_model,
      train_dataset=tiny.tiny_dataset, train_steps=steps, steps_per_epoch=2,
      optimizer=lambda: tf_keras.optimizers.SGD(0.01),
      precision=lambda: None, **kwargs)


def test_train_resume_restore_and_init_on_ram():
  model_dir = ram.folder('train')
  _train(model_dir, 2, init=lambda m: None)
  _train(model_dir, 4, init=lambda m: None)  # Resumes at step 2.
  assert tf.train.latest_checkpoint(model_dir) == f'{model_dir}/ckpt-4'
  model = tiny.tiny_model()
  path, step = checkpoints.restore_model(model, model_dir)
  assert (path, step) == (f'{model_dir}/ckpt-4', 4)
  # A second run initialised from the first one's checkpoint (student from
  # teacher), all on ram://.
  student = ram.folder('student')
  inits = []

  def init(model):
    init_lib.initialize_model(model, method='full', checkpoint=model_dir)
    inits.append([v.numpy() for v in model.trainable_variables])

  _train(student, 6, init=init)
  assert inits
  for got, want in zip(inits[0], model.trainable_variables):
    np.testing.assert_array_equal(got, want.numpy())
  assert checkpoints.checkpoint_step(
      tf.train.latest_checkpoint(student)) == 6
