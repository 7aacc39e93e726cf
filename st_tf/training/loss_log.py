"""Opt-in fine-grained training-loss log: `<model_dir>/train_log.csv`.

TensorBoard gets one point per epoch (hundreds of steps), too coarse to see a
loss spike. With `train.loss_log_every = N` the trainer adds
`LossLogCallback`, which appends one CSV row every N optimizer steps:

  step, loss, human_loss, pseudo_loss, learning_rate, pseudo_weight

* `step`: `optimizer.iterations` after the row's last step.
* Keys the model tracks as running `tf_keras.metrics.Mean`s over the epoch
  (`SelfTrainingModel`: loss, human_loss, pseudo_loss; names taken from
  `model.metrics`) are logged as the mean over the steps since the previous
  row, recovered exactly from the running means (mean_k * k - mean_j * j),
  so `loss_log_every = 1` gives the per-step loss. Keys the train step
  returns raw (learning_rate, pseudo_weight, or a model without trackers)
  are the value at `step` (learning_rate: read from the optimizer when the
  model does not log it).
* Empty cell: the model's logs lack that key. `loss` is the total loss
  minimized (combined self-training loss + L2), unitless.

Resume-safe: on (re)start from step s, rows with step > s (written after the
last checkpoint, so about to be redone) are dropped (atomic rewrite), then
rows are appended and flushed as they come; a torn last line is dropped too.
"""
from __future__ import annotations

import csv
import io
import math
import os
from typing import Dict, List, Optional

import tensorflow as tf
import tf_keras

from st_tf import atomic_io
from st_tf.training import optimizer as optimizer_lib

FILE_NAME = 'train_log.csv'
COLUMNS = ('step', 'loss', 'human_loss', 'pseudo_loss', 'learning_rate',
           'pseudo_weight')


def read_log(path: str) -> List[Dict[str, float]]:
  """Rows of a `train_log.csv` as dicts of floats (step as int).

  Missing values are omitted from a row; malformed rows (e.g. a line torn
  by a crash) are skipped. Non-finite losses are kept (`nan`, `inf`).
  """
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    text = f.read()
  rows = []
  lines = text.splitlines(keepends=True)
  for record in csv.DictReader(io.StringIO(''.join(
      line for line in lines if line.endswith('\n')))):
    try:
      row = {'step': int(record['step'])}
      for key in COLUMNS[1:]:
        value = record.get(key)
        if value not in (None, ''):
          row[key] = float(value)
    except (TypeError, ValueError):
      continue
    rows.append(row)
  return rows


def _format(value: Optional[float]) -> str:
  if value is None:
    return ''
  return repr(float(value)) if math.isfinite(value) else str(float(value))


class LossLogCallback(tf_keras.callbacks.Callback):
  """Appends the training loss every `every` steps to a CSV (module doc)."""

  def __init__(self, path: str, every: int):
    super().__init__()
    if every < 1:
      raise ValueError(f'train.loss_log_every must be >= 1, got {every}')
    self._path = path
    self._every = int(every)
    self._file = None
    self._mean_keys: set = set()
    self._epoch_start = 0
    self._last_step = 0
    self._last_means: Dict[str, float] = {}

  def _step(self) -> int:
    return int(self.model.optimizer.iterations.numpy())

  def _truncate(self, start: int) -> None:
    """Keeps only rows with step <= start (atomic rewrite)."""
    rows = [r for r in read_log(self._path) if r['step'] <= start]
    lines = [','.join(COLUMNS)] + [
        ','.join([str(row['step'])] + [_format(row.get(k))
                                       for k in COLUMNS[1:]])
        for row in rows]
    atomic_io.write_text(self._path, ''.join(line + '\n' for line in lines))

  def on_train_begin(self, logs=None) -> None:
    start = self._step()
    tf.io.gfile.makedirs(os.path.dirname(self._path) or '.')
    self._truncate(start)
    self._file = tf.io.gfile.GFile(self._path, 'a')
    self._mean_keys = {m.name for m in self.model.metrics}
    self._last_step = start

  def on_epoch_begin(self, epoch: int, logs=None) -> None:
    # Keras resets the model's metrics at every epoch start.
    self._epoch_start = self._step()
    self._last_means = {}

  def on_train_batch_end(self, batch: int, logs=None) -> None:
    step = self._step()
    if step // self._every <= self._last_step // self._every:
      return
    logs = dict(logs or {})
    logs.setdefault('learning_rate', float(
        optimizer_lib.current_learning_rate(self.model.optimizer)))
    since = max(self._last_step, self._epoch_start)
    count, prev = step - self._epoch_start, since - self._epoch_start
    values: Dict[str, Optional[float]] = {}
    for key in COLUMNS[1:]:
      if key not in logs:
        values[key] = None
        continue
      value = float(logs[key])
      if key in self._mean_keys:
        total = value * count - self._last_means.get(key, 0.0) * prev
        self._last_means[key] = value
        value = total / (count - prev)
      values[key] = value
    self._file.write(','.join([str(step)] + [
        _format(values[k]) for k in COLUMNS[1:]]) + '\n')
    self._file.flush()
    self._last_step = step

  def on_train_end(self, logs=None) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None
