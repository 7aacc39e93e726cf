"""The EMA teacher of a mean-teacher run as a model of its own.

A `MeanTeacherModel` checkpoint holds the student network (`model/network`)
and the EMA teacher (`model/teacher_network`, the same architecture).
`write_teacher_checkpoint` reads the teacher into the network of a fresh
`SelfTrainingModel` and saves it as a trainer checkpoint (`model`, `step`;
`ckpt-<step>`, the student's step), so the EMA teacher is evaluated,
exported and used as a pseudo-labeling teacher like any trained model
(`evaluate.model = @SelfTrainingModel`, `checkpoint_teacher`).
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf
import tf_keras

from st_tf.training import checkpoints


def _build(model: tf_keras.Model) -> None:
  """Creates every variable of `model` with a zero uint8 batch of its
  network's input size ([1, H, W, 3], from the backbone's input)."""
  backbone = getattr(model.network, 'backbone', None)
  shape = (backbone.inputs[0].shape.as_list()
           if backbone is not None and backbone.inputs else None)
  if not shape or None in shape[1:3]:
    raise ValueError(
        'st_tf/mean_teacher/extract.py: cannot tell the input size of '
        f'{type(model.network).__name__} (its backbone input shape is '
        f'{shape}); build the network with a fixed input_size.')
  model(tf.zeros([1, shape[1], shape[2], 3], tf.uint8), training=False)


def write_teacher_checkpoint(student_dir: str, output_dir: str,
                             model_fn: Callable[[], tf_keras.Model]) -> str:
  """Saves the EMA teacher of `student_dir`'s latest checkpoint.

  Args:
    student_dir: a `MeanTeacherModel` trainer's model_dir.
    output_dir: where `ckpt-<step>` goes (the student's step).
    model_fn: builds the model to hold the teacher (a `SelfTrainingModel`
      with the student's network, e.g. gin `@SelfTrainingModel` in the
      student's scope); its `network` receives the teacher's weights.

  Returns:
    The checkpoint path written.

  Raises:
    ValueError: `student_dir` has no checkpoint, or its teacher does not
      match `model_fn()`'s network.
  """
  path = checkpoints.resolve_checkpoint(student_dir)
  step = checkpoints.checkpoint_step(path)
  model = model_fn()
  _build(model)
  source = tf.train.Checkpoint(
      model=tf.train.Checkpoint(teacher_network=model.network))
  try:
    source.restore(path).expect_partial().assert_existing_objects_matched()
  except AssertionError as e:
    raise ValueError(
        f'st_tf/mean_teacher/extract.py: checkpoint {path} holds no EMA '
        'teacher matching this network (is it a MeanTeacherModel run, with '
        f'the same network function?): {e}') from e
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=model,
                          step=tf.Variable(step, dtype=tf.int64)),
      output_dir, max_to_keep=1, checkpoint_name='ckpt')
  return manager.save(checkpoint_number=step)
