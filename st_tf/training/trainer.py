"""The training loop: `model.fit` under a strategy, with preemption resume.

One "epoch" is `steps_per_epoch` optimizer steps: the interval between
checkpoints, TensorBoard summaries and progress lines. A checkpoint holds
(model, optimizer, step); the step is `optimizer.iterations` (also the
checkpoint number, and the `step` entry). A restarted run restores the latest checkpoint in `model_dir` and
continues from its step (`initial_epoch = step // steps_per_epoch`) with no
manual flag; initialisation (`init`) only runs on a fresh start.

Files written to `model_dir` (by the chief only in a multi-worker cluster):
  ckpt-<step>.*          checkpoints (`tf.train.CheckpointManager`)
  config.gin             the full gin config, at start
  operative_config.gin   gin's operative config, after the first step and at
                         the end
  train/, eval/          TensorBoard event files (every metric the model's
                         train_step returns, plus `learning_rate`)

Gin (the callables are called inside `strategy.scope()`, so bind them
without parentheses):

    train.model = @SelfTrainingModel
    train.train_dataset = @student/build_self_training_dataset
    train.optimizer = @make_optimizer
    train.train_steps = 20000
    train.steps_per_epoch = 1000
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from absl import logging
import gin
import tensorflow as tf
import tf_keras

from st_tf.training import finite
from st_tf.training import init as init_lib
from st_tf.training import loss_log
from st_tf.training import optimizer as optimizer_lib
from st_tf.training import strategy as strategy_lib

DatasetFn = Callable[..., tf.data.Dataset]

CONFIG_FILE = 'config.gin'
OPERATIVE_CONFIG_FILE = 'operative_config.gin'


def write_gin_config(model_dir: str, operative: bool) -> str:
  """Writes gin's operative (or full) config into `model_dir`; returns path."""
  name = OPERATIVE_CONFIG_FILE if operative else CONFIG_FILE
  text = gin.operative_config_str() if operative else gin.config_str()
  path = os.path.join(model_dir, name)
  tf.io.gfile.makedirs(model_dir)
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(text)
  return path


def _scalar(value: Any) -> Optional[float]:
  try:
    return float(value)
  except (TypeError, ValueError):
    return None


class CheckpointCallback(tf_keras.callbacks.Callback):
  """Saves (model, optimizer) at the end of every epoch, numbered by step."""

  def __init__(self, manager: tf.train.CheckpointManager,
               step: tf.Variable):
    super().__init__()
    self._manager = manager
    self._step = step

  def on_epoch_end(self, epoch: int, logs=None) -> None:
    path = self._manager.save(checkpoint_number=self._step)
    logging.info('Saved checkpoint %s', path)


class SummaryCallback(tf_keras.callbacks.Callback):
  """Writes the epoch's logs (train/ and, for `val_*`, eval/) at the step."""

  def __init__(self, model_dir: str, optimizer: tf_keras.optimizers.Optimizer):
    super().__init__()
    self._train = tf.summary.create_file_writer(os.path.join(model_dir,
                                                             'train'))
    self._eval = tf.summary.create_file_writer(os.path.join(model_dir, 'eval'))
    self._optimizer = optimizer

  def on_epoch_end(self, epoch: int, logs=None) -> None:
    logs = dict(logs or {})
    step = int(self._optimizer.iterations.numpy())
    logs.setdefault('learning_rate', float(
        optimizer_lib.current_learning_rate(self._optimizer)))
    for name, value in logs.items():
      value = _scalar(value)
      if value is None:
        continue
      is_eval = name.startswith('val_')
      writer = self._eval if is_eval else self._train
      with writer.as_default(step=step):
        tf.summary.scalar(name[4:] if is_eval else name, value)
    self._train.flush()
    self._eval.flush()

  def on_train_end(self, logs=None) -> None:
    self._train.close()
    self._eval.close()


class ProgressLogger(tf_keras.callbacks.Callback):
  """One log line per epoch: step, throughput and the metrics."""

  def __init__(self, optimizer: tf_keras.optimizers.Optimizer,
               train_steps: int):
    super().__init__()
    self._optimizer = optimizer
    self._train_steps = train_steps
    self._time = time.time()
    self._step = 0

  def on_train_begin(self, logs=None) -> None:
    self._time = time.time()
    self._step = int(self._optimizer.iterations.numpy())
    logging.info('Training from step %d to %d.', self._step,
                 self._train_steps)

  def on_epoch_end(self, epoch: int, logs=None) -> None:
    step = int(self._optimizer.iterations.numpy())
    now = time.time()
    rate = (step - self._step) / max(now - self._time, 1e-9)
    self._time, self._step = now, step
    metrics = ' '.join(f'{k}={_scalar(v):.4g}' for k, v in sorted(
        (logs or {}).items()) if _scalar(v) is not None)
    lr = float(optimizer_lib.current_learning_rate(self._optimizer))
    logging.info('step %d/%d  %.2f steps/s  lr=%.4g  %s', step,
                 self._train_steps, rate, lr, metrics)


class OperativeConfigCallback(tf_keras.callbacks.Callback):
  """Writes gin's operative config after the first step and at the end."""

  def __init__(self, model_dir: str):
    super().__init__()
    self._model_dir = model_dir
    self._written = False

  def on_train_batch_end(self, batch: int, logs=None) -> None:
    if not self._written:
      write_gin_config(self._model_dir, operative=True)
      self._written = True

  def on_train_end(self, logs=None) -> None:
    write_gin_config(self._model_dir, operative=True)


def _call_or_value(obj: Any) -> Any:
  return obj() if callable(obj) and not isinstance(
      obj, (tf_keras.Model, tf.distribute.Strategy)) else obj


def _distribute(strategy: tf.distribute.Strategy,
                dataset_fn: DatasetFn) -> Any:
  return strategy.distribute_datasets_from_function(
      lambda ctx: dataset_fn(input_context=ctx))


@gin.configurable
def set_seed(seed: int, op_determinism: bool = False) -> None:
  """Seeds Python, NumPy and TensorFlow (`tf_keras.utils.set_random_seed`).

  Args:
    seed: the seed.
    op_determinism: also `tf.config.experimental.enable_op_determinism()`
      (process-wide, cannot be undone): without it, one seed gives the same
      init and data order but multi-threaded CPU kernels sum in a varying
      order (measured: losses differ by 1e-5 after 2 steps), and at a high
      learning rate that grows into a different model (two DigitScenes v2
      teachers of one seed: val AP 0.423 and 0.351). Needs the seeded,
      serial input pipeline (`build_dataset.seed`).
  """
  tf_keras.utils.set_random_seed(seed)
  if op_determinism:
    tf.config.experimental.enable_op_determinism()


@gin.configurable(denylist=['callbacks'])
def train(model_dir: str = gin.REQUIRED,
          model: Callable[[], tf_keras.Model] = gin.REQUIRED,
          train_dataset: DatasetFn = gin.REQUIRED,
          train_steps: int = gin.REQUIRED,
          eval_dataset: Optional[DatasetFn] = None,
          eval_steps: Optional[int] = None,
          optimizer: Callable[[], tf_keras.optimizers.Optimizer] = (
              optimizer_lib.make_optimizer),
          strategy: Union[Callable[[], tf.distribute.Strategy],
                          tf.distribute.Strategy] = strategy_lib.get_strategy,
          steps_per_epoch: int = 1000,
          steps_per_execution: int = 1,
          init: Callable[[tf_keras.Model], None] = init_lib.initialize_model,
          precision: Callable[[], Any] = optimizer_lib.set_mixed_precision,
          max_to_keep: int = 5,
          backup_and_restore: bool = False,
          loss_log_every: Optional[int] = None,
          resume_from_last_finite: bool = False,
          seed: Optional[int] = None,
          callbacks: Sequence[tf_keras.callbacks.Callback] = (),
          ) -> Dict[str, float]:
  """Trains `model` to `train_steps` steps, resuming from `model_dir`.

  Args:
    model_dir: where checkpoints, summaries and configs go.
    model: builds the `tf_keras.Model` (custom `train_step` returning a dict
      of scalar metrics); called inside `strategy.scope()`.
    train_dataset: `fn(input_context=ctx) -> tf.data.Dataset` of per-replica
      batches `(images, labels)`, repeated indefinitely.
    train_steps: total optimizer steps; a multiple of `steps_per_epoch`.
    eval_dataset: optional `fn(input_context=ctx)`; evaluated with the
      model's `test_step` for `eval_steps` steps after each epoch.
    eval_steps: steps per evaluation (None = until the dataset ends).
    optimizer: builds the optimizer; called inside `strategy.scope()`.
    strategy: a `tf.distribute.Strategy` or a function returning one.
    steps_per_epoch: steps between checkpoints, summaries and log lines.
    steps_per_execution: steps per `tf.function` call (TPU throughput).
    init: `fn(model)` initialising a fresh model (`initialize_model`); not
      called when resuming from a checkpoint in `model_dir`.
    precision: sets the Keras precision policy before the model is built.
    max_to_keep: checkpoints kept.
    backup_and_restore: also add `tf_keras.callbacks.BackupAndRestore`
      (in `model_dir/backup`, saved each epoch). It restores the same state
      as our own resume, so the two agree; it is off by default.
    loss_log_every: if set, append the training loss every this many steps
      to `model_dir/train_log.csv` (`loss_log.LossLogCallback`; off by
      default).
    resume_from_last_finite: when the latest checkpoint holds NaN / Inf
      values, resume from the newest finite one instead of raising
      (`finite.restore_finite`). A non-finite loss always stops training
      with `finite.NonFiniteError` before it is checkpointed.
    seed: if set, `set_seed(seed)` before anything is built: Python, NumPy
      and TensorFlow's global seed, so weight init, the datasets' unseeded
      shuffles and the augmentation ops' draws all derive from it.
      Parallel parsing still interleaves the augmentation draws in a
      varying order: give the dataset builders the same seed (they then
      parse serially), and `set_seed.op_determinism = True` for
      deterministic kernels, for runs that repeat exactly (the v2
      detection demos do; README "Configs"). None = not seeded.
    callbacks: extra Keras callbacks (not gin-configurable).

  Returns:
    The logs of the last epoch (float metrics; empty when already done).
  """
  _check_schedule(train_steps, steps_per_epoch, steps_per_execution)
  if seed is not None:
    set_seed(int(seed))
  strategy = _call_or_value(strategy)
  chief = strategy_lib.is_chief(strategy)
  tf.io.gfile.makedirs(model_dir)
  if chief:
    write_gin_config(model_dir, operative=False)
  # Non-chief workers take part in saving (collectives) but write elsewhere.
  save_dir = model_dir if chief else os.path.join(
      model_dir, '.tmp_workers', f'worker_{strategy_lib.task_id(strategy)}')
  precision()
  state = _build_or_resume(strategy, model, optimizer, init, model_dir,
                           save_dir, _CheckpointOptions(
                               steps_per_execution, max_to_keep,
                               resume_from_last_finite))
  start = int(state.step.numpy())
  if start % steps_per_epoch:
    raise ValueError(f'Checkpoint {state.latest} is at step {start}, not a '
                     f'multiple of steps_per_epoch ({steps_per_epoch}); keep '
                     'steps_per_epoch unchanged when resuming.')
  if start >= train_steps:
    logging.info('Already trained: step %d >= train_steps %d.', start,
                 train_steps)
    return {}

  all_callbacks = _callbacks(state, model_dir, save_dir, chief, train_steps,
                             loss_log_every, backup_and_restore) + list(
                                 callbacks)
  eval_data = (_distribute(strategy, eval_dataset)
               if eval_dataset is not None else None)
  history = state.model.fit(
      _distribute(strategy, train_dataset),
      epochs=train_steps // steps_per_epoch,
      initial_epoch=start // steps_per_epoch,
      steps_per_epoch=steps_per_epoch,
      validation_data=eval_data,
      validation_steps=eval_steps if eval_data is not None else None,
      callbacks=all_callbacks,
      verbose=0)

  if not chief and tf.io.gfile.exists(save_dir):
    tf.io.gfile.rmtree(save_dir)
  last = {k: _scalar(v[-1]) for k, v in history.history.items() if v}
  return {k: v for k, v in last.items() if v is not None}


def _check_schedule(train_steps: int, steps_per_epoch: int,
                    steps_per_execution: int) -> None:
  """ValueError unless the step counts divide as `train` needs."""
  if train_steps <= 0 or steps_per_epoch <= 0:
    raise ValueError(f'train_steps ({train_steps}) and steps_per_epoch '
                     f'({steps_per_epoch}) must be positive.')
  if train_steps % steps_per_epoch:
    raise ValueError(f'train_steps ({train_steps}) must be a multiple of '
                     f'steps_per_epoch ({steps_per_epoch}).')
  if steps_per_epoch % steps_per_execution:
    raise ValueError(f'steps_per_epoch ({steps_per_epoch}) must be a '
                     f'multiple of steps_per_execution ({steps_per_execution}).')


@dataclasses.dataclass(frozen=True)
class _CheckpointOptions:
  """`train`'s compile and checkpoint options (see its Args)."""
  steps_per_execution: int
  max_to_keep: int
  resume_from_last_finite: bool


@dataclasses.dataclass
class _TrainState:
  """The built model, its optimizer and checkpointing, in the scope."""
  model: tf_keras.Model
  optimizer: tf_keras.optimizers.Optimizer
  step: tf.Variable  # The optimizer's iterations.
  manager: tf.train.CheckpointManager
  latest: Optional[str]  # The checkpoint resumed from, None = fresh.


def _build_or_resume(strategy: tf.distribute.Strategy,
                     model: Callable[[], tf_keras.Model],
                     optimizer: Callable[[], tf_keras.optimizers.Optimizer],
                     init: Callable[[tf_keras.Model], None], model_dir: str,
                     save_dir: str, options: _CheckpointOptions
                     ) -> _TrainState:
  """Builds model + optimizer in `strategy.scope()`, then restores the
  latest checkpoint of `model_dir` (the newest finite one if asked), else
  calls `init` on the fresh model."""
  with strategy.scope():
    keras_model = model()
    keras_optimizer = optimizer()
    keras_model.compile(optimizer=keras_optimizer,
                        steps_per_execution=options.steps_per_execution)
    step = keras_optimizer.iterations
    checkpoint = tf.train.Checkpoint(model=keras_model,
                                     optimizer=keras_optimizer, step=step)
    manager = tf.train.CheckpointManager(
        checkpoint, directory=save_dir, max_to_keep=options.max_to_keep,
        step_counter=step, checkpoint_name='ckpt')
    latest = tf.train.latest_checkpoint(model_dir)
    if latest:
      checkpoint.restore(latest).expect_partial()
      latest = finite.restore_finite(checkpoint, keras_model, latest,
                                     manager.checkpoints,
                                     options.resume_from_last_finite)
      logging.info('Resumed from %s at step %d.', latest, int(step.numpy()))
    else:
      init(keras_model)
  return _TrainState(keras_model, keras_optimizer, step, manager, latest)


def _callbacks(state: _TrainState, model_dir: str, save_dir: str,
               chief: bool, train_steps: int, loss_log_every: Optional[int],
               backup_and_restore: bool) -> List[tf_keras.callbacks.Callback]:
  """`train`'s own callbacks, in order: the finite guard first (a
  non-finite epoch is never checkpointed), then checkpoints, then (chief
  only) summaries, progress, the operative config and the loss log."""
  all_callbacks = [finite.FiniteGuard(save_dir),
                   CheckpointCallback(state.manager, state.step)]
  if chief:
    all_callbacks += [SummaryCallback(model_dir, state.optimizer),
                      ProgressLogger(state.optimizer, train_steps),
                      OperativeConfigCallback(model_dir)]
    if loss_log_every is not None:
      all_callbacks.append(loss_log.LossLogCallback(
          os.path.join(model_dir, loss_log.FILE_NAME), loss_log_every))
  if backup_and_restore:
    all_callbacks.append(tf_keras.callbacks.BackupAndRestore(
        os.path.join(model_dir, 'backup'), delete_checkpoint=True))
  return all_callbacks
