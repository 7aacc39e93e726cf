"""`--mode=pretrain`: classification pre-training of a detection backbone.

    python -m st_tf.main --gin_file=gin/demo/digitscenes_pretrain.gin \
        --mode=pretrain --model_dir=runs/pretrain_demo

The data are any Model Garden classification records (`image/encoded`,
`image/class/label`): `train_pattern`, `val_pattern` and `num_classes` are
bound in gin. `gin/demo/digitscenes_pretrain.gin` binds them to the
DigitScenes crops of `st_tf.datasets.digitscenes.classification`, which its
`prepare.fns` makes first.

Steps:
1. train `build_classifier`'s model on the `train_pattern` records with
   `st_tf.training.trainer.train` (Model Garden classification decoder +
   our uint8 `ClassificationParser` through `pipeline.build_dataset`; the
   optimizer and schedule from gin, e.g. `make_optimizer` +
   `warmup_cosine`). Checkpoints, resume after a crash, progress lines,
   TensorBoard summaries and `config.gin` / `operative_config.gin` are the
   trainer's, in `model_dir`;
2. restore the last checkpoint and measure top-1 accuracy on every record
   matching `val_pattern`;
3. save the backbone alone as `tf.train.Checkpoint(backbone=backbone)` in
   ``<model_dir>/backbone/`` (written to ``backbone.tmp/`` then renamed),
   the format `initialize_model.method = 'backbone'` loads:

       initialize_model.method = 'backbone'
       initialize_model.checkpoint = '<model_dir>/backbone'

4. write ``<model_dir>/pretrain_metrics.json`` last (atomically): `top1`,
   `steps`, `seconds` and details. Its presence with `steps ==
   train_steps` and a restorable ``backbone/`` marks a finished run: a rerun
   returns the stored metrics without work.
"""
from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Callable, Dict, Optional, Sequence

from absl import logging
import gin
import numpy as np
import tensorflow as tf
import tf_keras

from st_tf import atomic_io
from st_tf.data import files
from st_tf.data import metadata
from st_tf.data import pipeline
from st_tf.data import schema
from st_tf.pretrain import inputs
from st_tf.pretrain import model as model_lib
from st_tf.training import checkpoints
from st_tf.training import init as init_lib
from st_tf.training import trainer

METRICS_FILE = 'pretrain_metrics.json'
BACKBONE_DIR = 'backbone'

ModelFn = Callable[..., tf_keras.Model]


def backbone_dir(model_dir: str) -> str:
  """Where the backbone checkpoint goes: ``<model_dir>/backbone``."""
  return os.path.join(model_dir, BACKBONE_DIR)


def load_metrics(model_dir: str) -> Optional[dict]:
  """The stored ``pretrain_metrics.json`` of `model_dir`, or None."""
  path = os.path.join(model_dir, METRICS_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def is_complete(model_dir: str, train_steps: Optional[int] = None) -> bool:
  """True if `model_dir` holds finished metrics (for `train_steps`, if
  given) and a backbone checkpoint."""
  try:
    metrics = load_metrics(model_dir)
    if metrics is None:
      return False
    if train_steps is not None and metrics['steps'] != train_steps:
      return False
    return tf.train.latest_checkpoint(backbone_dir(model_dir)) is not None
  except (KeyError, TypeError, ValueError):
    return False


def save_backbone(backbone: tf_keras.Model, model_dir: str) -> str:
  """Saves `tf.train.Checkpoint(backbone=backbone)` to ``model_dir/backbone``.

  Written to ``backbone.tmp/`` and renamed, so ``backbone/`` is either
  absent or complete. Returns the checkpoint prefix.
  """
  final = backbone_dir(model_dir)
  tmp = final + '.tmp'
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)
  tf.train.Checkpoint(backbone=backbone).save(os.path.join(tmp, 'ckpt'))
  if tf.io.gfile.exists(final):
    tf.io.gfile.rmtree(final)
  atomic_io.rename_dir(tmp, final)
  return tf.train.latest_checkpoint(final)


def evaluate_top1(model: tf_keras.Model, file_pattern: str,
                  parser: inputs.ClassificationParser,
                  batch_size: int = 100) -> Dict[str, Any]:
  """Top-1 accuracy of `model` on every record matching `file_pattern`.

  One pass in file order, last batch kept (not `build_dataset`, which drops
  the remainder).

  Returns:
    {'top1': float, 'num_examples': int, 'top1_per_class': [float]}.

  Raises:
    ValueError: no file matches, or a label is outside [0, num_classes).
  """
  decoder = inputs.decoder()
  dataset = (tf.data.TFRecordDataset(files.match_files(file_pattern))
             .map(decoder.decode, num_parallel_calls=tf.data.AUTOTUNE)
             .map(parser, num_parallel_calls=tf.data.AUTOTUNE)
             .batch(batch_size).prefetch(tf.data.AUTOTUNE))
  predict = tf.function(lambda x: tf.argmax(model(x, training=False), -1))
  num_classes = int(model.num_classes)
  correct = np.zeros(num_classes, np.int64)
  total = np.zeros(num_classes, np.int64)
  for images, labels in dataset:
    labels = labels.numpy()
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
      raise ValueError(f'{file_pattern}: label {int(bad[0])} outside the '
                       f"model's classes [0, {num_classes}) (records "
                       'without image/class/label decode as -1).')
    hits = predict(images).numpy() == labels
    np.add.at(total, labels, 1)
    np.add.at(correct, labels, hits.astype(np.int64))
  if not total.sum():
    raise ValueError(f'{file_pattern}: no records to evaluate.')
  per_class = [float(c / t) if t else None for c, t in zip(correct, total)]
  return {'top1': float(correct.sum() / total.sum()),
          'num_examples': int(total.sum()),
          'top1_per_class': per_class}


def _check_data(train_pattern: str, val_pattern: str,
                num_classes: int) -> Optional[dict]:
  """The training records' metadata sidecar (None: they have none).

  Raises:
    ValueError: a pattern matches no file, or the sidecar of its records
      (`st_tf.data.metadata`) gives another class count than `num_classes`.
  """
  for pattern in (train_pattern, val_pattern):
    files.match_files(pattern)  # clear error
  found = {}
  for pattern in (train_pattern, val_pattern):
    meta = found[pattern] = metadata.read_metadata(pattern)
    if meta is not None and meta.get('num_classes') != num_classes:
      raise ValueError(
          f'pretrain.num_classes = {num_classes} but the records of '
          f'{pattern} have {meta.get("num_classes")} classes (see their '
          f'{schema.METADATA_SUFFIX} sidecar).')
  return found[train_pattern]


def _random_init(model: tf_keras.Model) -> None:
  """Pre-training starts from random weights whatever `initialize_model`'s
  gin bindings say."""
  init_lib.initialize_model(model, method='random')


@gin.configurable
def pretrain(model_dir: str = gin.REQUIRED,
             train_pattern: str = gin.REQUIRED,
             val_pattern: str = gin.REQUIRED,
             num_classes: int = gin.REQUIRED,
             train_steps: int = gin.REQUIRED,
             model: ModelFn = model_lib.build_classifier,
             input_size: Sequence[int] = (64, 64),
             batch_size: int = 64,
             eval_batch_size: int = 100,
             steps_per_epoch: int = 250,
             seed: Optional[int] = None,
             shuffle_buffer_size: int = 2000) -> Dict[str, Any]:
  """Pre-trains a backbone by classification; see the module docstring.

  Args:
    model_dir: checkpoints, configs, ``backbone/`` and the metrics file.
    train_pattern: the training records (Model Garden classification keys;
      a glob, a comma-separated list of them or a sequence).
    val_pattern: the held-out records top-1 is measured on.
    num_classes: classes of the data (labels 0..num_classes - 1; DigitScenes
      digits: 10); checked against the records' metadata sidecar when they
      have one.
    train_steps: optimizer steps (a multiple of `steps_per_epoch`). Bind the
      schedule's length to the same value.
    model: `fn(num_classes=, input_size=) -> PretrainModel`, gin
      `@build_classifier` (its `backbone` bound to e.g. `@resnet()`).
    input_size: (height, width) the crops are resized to.
    batch_size: global training batch size.
    eval_batch_size: top-1 evaluation batch size.
    steps_per_epoch: steps between checkpoints and progress lines.
    seed: the run's seed: weight init (the trainer's `seed`) and input
      shuffle/augmentation (None: random, faster).
    shuffle_buffer_size: record shuffle buffer.

  Returns:
    The metrics written to ``pretrain_metrics.json``.
  """
  if train_steps <= 0 or steps_per_epoch <= 0 or train_steps % steps_per_epoch:
    raise ValueError(f'pretrain: train_steps ({train_steps}) must be a '
                     f'positive multiple of steps_per_epoch ({steps_per_epoch})'
                     '.')
  if is_complete(model_dir, train_steps):
    logging.info('Pre-training in %s is complete; nothing to do.', model_dir)
    print(f'pretrain: {model_dir} is complete (see {METRICS_FILE}).')
    return load_metrics(model_dir)
  meta = _check_data(train_pattern, val_pattern, num_classes)
  start_time = time.time()
  input_size = [int(s) for s in input_size]
  build = functools.partial(model, num_classes=num_classes,
                            input_size=input_size)
  start_step = _checkpoint_step(model_dir)
  logs = trainer.train(
      model_dir=model_dir, model=build,
      train_dataset=_train_dataset_fn(train_pattern, input_size, batch_size,
                                      seed, shuffle_buffer_size),
      train_steps=train_steps, steps_per_epoch=steps_per_epoch,
      init=_random_init, seed=seed)
  train_seconds = time.time() - start_time

  trained = _restore(build(), model_dir, train_steps)
  print(f'pretrain: evaluating top-1 of {model_dir} on {val_pattern}')
  eval_parser = inputs.ClassificationParser(output_size=input_size,
                                            mode='eval')
  result = evaluate_top1(trained, val_pattern, eval_parser, eval_batch_size)
  prefix = save_backbone(trained.backbone, model_dir)
  metrics = {
      'top1': result['top1'],
      'steps': int(train_steps),
      'seconds': round(time.time() - start_time, 1),
      'train_seconds': round(train_seconds, 1),
      'start_step': start_step,
      'num_eval_examples': result['num_examples'],
      'top1_per_class': result['top1_per_class'],
      'num_train_examples': meta['num_examples'] if meta else None,
      'num_classes': num_classes,
      'input_size': input_size,
      'batch_size': batch_size,
      'backbone_checkpoint': os.path.relpath(prefix, model_dir),
      'backbone_params': int(trained.backbone.count_params()),
      'final_train_logs': {k: float(v) for k, v in logs.items()},
      'train_pattern': train_pattern,
      'val_pattern': val_pattern,
  }
  atomic_io.write_json(os.path.join(model_dir, METRICS_FILE), metrics,
                       indent=2)
  logging.info('Pre-training done: top-1 %.4f on %d images, backbone in %s',
               metrics['top1'], metrics['num_eval_examples'], prefix)
  print(f'pretrain: top-1 {metrics["top1"]:.4f} on '
        f'{metrics["num_eval_examples"]} val records after {train_steps} '
        'steps; '
        f'backbone checkpoint {prefix}')
  return metrics


def _checkpoint_step(model_dir: str) -> int:
  """Step of the trainer's latest checkpoint in `model_dir` (0 if none)."""
  latest = tf.train.latest_checkpoint(model_dir) if tf.io.gfile.exists(
      model_dir) else None
  return checkpoints.checkpoint_step(latest) if latest else 0


def _train_dataset_fn(train_pattern: str, input_size: Sequence[int],
                      batch_size: int, seed: Optional[int],
                      shuffle_buffer_size: int
                     ) -> Callable[..., tf.data.Dataset]:
  """`fn(input_context=None)` -> batches of (uint8 [B, H, W, 3] crops,
  int labels [B]) from the training records, train-mode augmentation."""
  parser = inputs.ClassificationParser(output_size=input_size, mode='train')

  def train_dataset(input_context=None) -> tf.data.Dataset:
    return pipeline.build_dataset(
        input_context, file_pattern=train_pattern, parser=parser,
        decoder=inputs.decoder(), global_batch_size=batch_size,
        is_training=True, seed=seed, shuffle_buffer_size=shuffle_buffer_size,
        dataset_fn=tf.data.TFRecordDataset)

  return train_dataset


def _restore(model: tf_keras.Model, model_dir: str,
             train_steps: int) -> tf_keras.Model:
  """`model` with the trainer's last checkpoint of `model_dir`, which must
  be at `train_steps` (ValueError otherwise)."""
  path, step = checkpoints.restore_model(model, model_dir)
  if step != train_steps:
    raise ValueError(f'{path} is at step {step}, expected {train_steps}: '
                     'was train_steps changed for an existing model_dir?')
  return model
