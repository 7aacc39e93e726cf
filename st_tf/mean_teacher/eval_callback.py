"""Val metrics of the student and its EMA teacher during training.

`PeriodicEval` runs the task metric (`@evaluate_detection` COCO AP,
`@evaluate_segmentation` mIoU) every `every_epochs` epochs on both networks
of a `MeanTeacherModel` and writes them as TensorBoard scalars at the
optimizer step: the student's in `<model_dir>/eval`, the EMA teacher's in
`<model_dir>/ema_teacher/eval` (the folders where the final eval stages
write theirs, so each curve ends with the final evaluation). The last epoch
is left to those stages.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Mapping

import tensorflow as tf
import tf_keras

from st_tf.training import strategy as strategy_lib

EMA_SUBDIR = 'ema_teacher'


class TeacherView:
  """Calls a `MeanTeacherModel`'s EMA teacher like a uint8-input model."""

  def __init__(self, model: tf_keras.Model):
    self._model = model

  def __call__(self, images: tf.Tensor, training: Any = None,
               **kwargs) -> Mapping[str, Any]:
    del training  # always inference mode
    return self._model.teacher_call(images, **kwargs)


def write_scalars(log_dir: str, step: int,
                  metrics: Mapping[str, float]) -> None:
  """One TensorBoard scalar per metric at `step` in `log_dir`."""
  writer = tf.summary.create_file_writer(log_dir)
  with writer.as_default(step=int(step)):
    for name, value in metrics.items():
      tf.summary.scalar(name, float(value))
  writer.close()


class PeriodicEval(tf_keras.callbacks.Callback):
  """Every `every_epochs` epochs: student and EMA teacher val metrics."""

  def __init__(self, model_dir: str,
               dataset: Callable[[], Any],
               metric_fn: Callable[..., Dict[str, float]],
               every_epochs: int):
    """Creates the callback.

    Args:
      model_dir: the student's trainer model_dir.
      dataset: eval dataset factory (gin `@eval/build_dataset`), called at
        each evaluation: `(images uint8 [B, H, W, 3], labels)` batches.
      metric_fn: `(model, dataset, *, output_dir) -> metrics`.
      every_epochs: evaluate after every this many epochs (>= 1).
    """
    super().__init__()
    if every_epochs < 1:
      raise ValueError('MeanTeacherStudent.eval_every_epochs must be >= 1 '
                       f'(or None: no evaluation during training), got '
                       f'{every_epochs}.')
    self._model_dir = model_dir
    self._dataset = dataset
    self._metric_fn = metric_fn
    self._every = int(every_epochs)

  def evaluate(self) -> Dict[str, Dict[str, float]]:
    """{'student': metrics, 'ema_teacher': metrics} of the current weights,
    written at the current step."""
    step = int(self.model.optimizer.iterations.numpy())
    out = {}
    for name, view, log_dir in (
        ('student', self.model, os.path.join(self._model_dir, 'eval')),
        (EMA_SUBDIR, TeacherView(self.model),
         os.path.join(self._model_dir, EMA_SUBDIR, 'eval'))):
      out[name] = dict(self._metric_fn(view, self._dataset(),
                                       output_dir=None))
      write_scalars(log_dir, step, out[name])
    return out

  def on_epoch_end(self, epoch: int, logs=None) -> None:
    last = epoch + 1 >= int(self.params.get('epochs', 0))
    if last or (epoch + 1) % self._every:
      return
    if not strategy_lib.is_chief(self.model.distribute_strategy):
      return
    self.evaluate()
