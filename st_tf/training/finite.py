"""Finiteness guard: a NaN / Inf loss stops training and is never checkpointed.

A non-finite loss makes the self-training moving averages `m_h` / `m_p`
non-finite for good (and a NaN `m_p` would quietly fall back to a ratio of
1), so the trainer stops at once instead:

* `FiniteGuard` (a Keras callback placed before the checkpoint callback)
  checks every scalar the train step logs after each step (each execution
  with `steps_per_execution > 1`) and, at the end of an epoch, every model
  variable, and raises `NonFiniteError` before the epoch's checkpoint is
  saved. `train` then raises, so `self_train` never marks the stage done.
* On resume, `restore_finite` checks the restored variables: a non-finite
  checkpoint (e.g. saved before this guard existed) is refused with the
  fix, or, with `train.resume_from_last_finite = True`, skipped for the
  newest finite one.
"""
from __future__ import annotations

import math
from typing import Any, List, Mapping, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

_FIX = ('lower the learning rate, or set SelfTrainingModel.gradient_clip_norm '
        '(or make_optimizer.global_clipnorm)')


class NonFiniteError(RuntimeError):
  """Training produced a NaN or Inf (loss, moving average or weight)."""


def nonfinite_logs(logs: Optional[Mapping[str, Any]]) -> List[str]:
  """'name=value' of every scalar entry of `logs` that is NaN or Inf."""
  bad = []
  for name, value in sorted((logs or {}).items()):
    try:
      number = float(np.asarray(value))
    except (TypeError, ValueError):
      continue  # Not a scalar.
    if not math.isfinite(number):
      bad.append(f'{name}={number}')
  return bad


def nonfinite_variables(model: tf_keras.Model) -> List[str]:
  """Names of `model`'s floating variables holding a NaN or Inf."""
  bad = []
  for var in model.variables:
    if var.dtype.is_floating and not bool(
        tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(var)))):
      bad.append(var.name)
  return bad


class FiniteGuard(tf_keras.callbacks.Callback):
  """Raises `NonFiniteError` on a non-finite log or weight (module doc)."""

  def __init__(self, checkpoint_dir: str):
    """checkpoint_dir: where the trainer's checkpoints are (for the message)."""
    super().__init__()
    self._checkpoint_dir = checkpoint_dir

  def _fail(self, what: Sequence[str]) -> None:
    step = int(self.model.optimizer.iterations.numpy())
    last = tf.train.latest_checkpoint(self._checkpoint_dir)
    raise NonFiniteError(
        f'non-finite training values at step {step}: {", ".join(what)}. '
        f'Nothing after the last finite checkpoint ({last or "none"} in '
        f'{self._checkpoint_dir}) was saved and the run is not complete. '
        f'Fix: {_FIX}, then rerun (training resumes from {last or "scratch"}).')

  def on_train_batch_end(self, batch: int, logs=None) -> None:
    bad = nonfinite_logs(logs)
    if bad:
      self._fail(bad)

  def on_epoch_end(self, epoch: int, logs=None) -> None:
    bad = nonfinite_logs(logs) or [
        f'variable {name}' for name in nonfinite_variables(self.model)[:5]]
    if bad:
      self._fail(bad)


def restore_finite(checkpoint: tf.train.Checkpoint, model: tf_keras.Model,
                   latest: str, candidates: Sequence[str],
                   resume_from_last_finite: bool) -> str:
  """Checks the variables restored from `latest`; returns the path used.

  Args:
    checkpoint: the trainer's `tf.train.Checkpoint`, restored from `latest`.
    model: the model inside it.
    latest: the checkpoint it was restored from.
    candidates: the manager's checkpoints, oldest first.
    resume_from_last_finite: restore the newest finite one of `candidates`
      instead of raising.

  Raises:
    NonFiniteError: `latest` is not finite (and no finite one is asked for
      or found).
  """
  bad = nonfinite_variables(model)
  if not bad:
    return latest
  if not resume_from_last_finite:
    raise NonFiniteError(
        f'checkpoint {latest} holds non-finite values ({", ".join(bad[:3])}). '
        'Set train.resume_from_last_finite = True to resume from the newest '
        f'finite checkpoint, or delete {latest}.* ; then {_FIX}.')
  for path in reversed([c for c in candidates if c != latest]):
    checkpoint.restore(path).expect_partial()
    if not nonfinite_variables(model):
      logging.warning('Checkpoint %s is not finite; resumed from %s.', latest,
                      path)
      return path
  raise NonFiniteError(f'no finite checkpoint among {list(candidates)}: '
                       'train from scratch in a new model_dir')
