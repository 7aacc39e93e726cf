"""Restoring a trained model from the trainer's checkpoints.

The trainer writes `tf.train.Checkpoint(model=..., optimizer=..., step=...)`
through a `tf.train.CheckpointManager` in `model_dir`. Evaluation and export
only need the model: they restore `tf.train.Checkpoint(model=model)` with
`expect_partial()` and read the step from the checkpoint's `step` entry.
"""
from __future__ import annotations

import re
from typing import Optional, Tuple

import tensorflow as tf
import tf_keras

_STEP_KEY = 'step/.ATTRIBUTES/VARIABLE_VALUE'


class CheckpointNotFoundError(FileNotFoundError, ValueError):
  """No checkpoint where one was expected (a FileNotFoundError and a
  ValueError, so callers of either convention catch it)."""


def resolve_checkpoint(model_dir: Optional[str],
                       checkpoint: Optional[str] = None) -> str:
  """Returns the checkpoint path: `checkpoint`, or the latest in `model_dir`.

  `checkpoint` may be a checkpoint prefix (``.../ckpt-12``) or a directory.
  """
  target = checkpoint or model_dir
  if not target:
    raise ValueError('give model_dir or checkpoint')
  if tf.io.gfile.isdir(target):
    path = tf.train.latest_checkpoint(target)
    if path is None:
      raise CheckpointNotFoundError(f'No checkpoint found in {target}')
    return path
  if not tf.io.gfile.exists(target + '.index'):
    raise CheckpointNotFoundError(f'Checkpoint {target} does not exist '
                                  f'(no {target}.index)')
  return target


def checkpoint_step(path: str) -> int:
  """The training step saved in checkpoint `path` (its `step` variable).

  Falls back to the ``-N`` suffix of the path when no `step` was saved.
  """
  # Not tf.train.load_checkpoint: it asks gfile.isdir(path) first, which is
  # true for a prefix like `ram://d/ckpt-7` on filesystems without real
  # directories (ram://), and then looks for a `checkpoint` file inside.
  reader = tf.compat.v1.train.NewCheckpointReader(path)
  if reader.has_tensor(_STEP_KEY):
    return int(reader.get_tensor(_STEP_KEY))
  match = re.search(r'-(\d+)$', path)
  if match is None:
    raise ValueError(f'checkpoint {path} has no `step` and no -N suffix')
  return int(match.group(1))


def restore_model(model: tf_keras.Model,
                  model_dir: Optional[str],
                  checkpoint: Optional[str] = None) -> Tuple[str, int]:
  """Restores `model`'s weights from a trainer checkpoint.

  Args:
    model: the model to restore into. Build it first (call it once) so that a
      checkpoint that does not match the architecture raises here instead of
      being silently deferred.
    model_dir: directory of the trainer's CheckpointManager.
    checkpoint: explicit checkpoint prefix or directory; None -> latest in
      `model_dir`.

  Returns:
    (checkpoint path, training step).
  """
  path = resolve_checkpoint(model_dir, checkpoint)
  try:
    status = tf.train.Checkpoint(model=model).restore(path)
    status.expect_partial()
    if model.built:
      status.assert_existing_objects_matched()
  except (AssertionError, ValueError) as e:
    raise ValueError(f'checkpoint {path} does not match the model: {e}') from e
  return path, checkpoint_step(path)
