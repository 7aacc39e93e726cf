"""`--mode=pretrain`: classification pre-training of a detection backbone.

    python -m st_tf.main --gin_file=gin/demo/digitscenes_pretrain.gin \
        --mode=pretrain --model_dir=runs/pretrain_demo

Steps:
1. train `build_classifier`'s model on ``<data_dir>/classification-*`` with
   `st_tf.training.trainer.train` (Model Garden classification decoder +
   our uint8 `ClassificationParser` through `pipeline.build_dataset`; the
   optimizer and schedule from gin, e.g. `make_optimizer` +
   `warmup_cosine`). Checkpoints, resume after a crash, progress lines,
   TensorBoard summaries and `config.gin` / `operative_config.gin` are the
   trainer's, in `model_dir`;
2. restore the last checkpoint and measure top-1 accuracy on every record
   of ``<data_dir>/classification_val-*``;
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
from st_tf.datasets.digitscenes import classification as dsc
from st_tf.data import files
from st_tf.data import pipeline
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


def _check_data(data_dir: str, num_classes: int) -> dict:
  """The classification metadata, checked against `num_classes`."""
  meta = dsc.load_classification_metadata(data_dir)
  if meta.get('num_classes') != num_classes:
    raise ValueError(
        f'pretrain.num_classes = {num_classes} but the classification data in '
        f'{data_dir} has {meta.get("num_classes")} classes (see '
        f'{dsc.METADATA_FILE}).')
  for split in dsc.SPLITS:
    files.match_files(dsc.file_pattern(data_dir, split))  # clear error
  return meta


def _random_init(model: tf_keras.Model) -> None:
  """Pre-training starts from random weights whatever `initialize_model`'s
  gin bindings say."""
  init_lib.initialize_model(model, method='random')


@gin.configurable
def pretrain(model_dir: str = gin.REQUIRED,
             data_dir: str = gin.REQUIRED,
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
    data_dir: folder holding the DigitScenes classification parts
      (``classification.json``, ``classification{,_val}-*.tfrecord``).
    num_classes: classes of the data (DigitScenes digits: 10); checked
      against ``classification.json``.
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
  meta = _check_data(data_dir, num_classes)
  start_time = time.time()
  input_size = [int(s) for s in input_size]
  build = functools.partial(model, num_classes=num_classes,
                            input_size=input_size)
  train_parser = inputs.ClassificationParser(output_size=input_size,
                                             mode='train')
  eval_parser = inputs.ClassificationParser(output_size=input_size,
                                            mode='eval')
  train_pattern = dsc.file_pattern(data_dir, 'classification')

  def train_dataset(input_context=None) -> tf.data.Dataset:
    return pipeline.build_dataset(
        input_context, file_pattern=train_pattern, parser=train_parser,
        decoder=inputs.decoder(), global_batch_size=batch_size,
        is_training=True, seed=seed, shuffle_buffer_size=shuffle_buffer_size,
        dataset_fn=tf.data.TFRecordDataset)

  start_step = _checkpoint_step(model_dir)
  logs = trainer.train(
      model_dir=model_dir, model=build, train_dataset=train_dataset,
      train_steps=train_steps, steps_per_epoch=steps_per_epoch,
      init=_random_init, seed=seed)
  train_seconds = time.time() - start_time

  trained = build()
  path, step = checkpoints.restore_model(trained, model_dir)
  if step != train_steps:
    raise ValueError(f'{path} is at step {step}, expected {train_steps}: '
                     'was train_steps changed for an existing model_dir?')
  print(f'pretrain: evaluating top-1 of {path} on '
        f'{dsc.file_pattern(data_dir, "classification_val")}')
  result = evaluate_top1(trained, dsc.file_pattern(data_dir,
                                                   'classification_val'),
                         eval_parser, eval_batch_size)
  prefix = save_backbone(trained.backbone, model_dir)
  metrics = {
      'top1': result['top1'],
      'steps': int(step),
      'seconds': round(time.time() - start_time, 1),
      'train_seconds': round(train_seconds, 1),
      'start_step': start_step,
      'num_eval_examples': result['num_examples'],
      'top1_per_class': result['top1_per_class'],
      'num_train_examples': meta['splits']['classification']['num_examples'],
      'num_classes': num_classes,
      'input_size': input_size,
      'batch_size': batch_size,
      'backbone_checkpoint': os.path.relpath(prefix, model_dir),
      'backbone_params': int(trained.backbone.count_params()),
      'final_train_logs': {k: float(v) for k, v in logs.items()},
      'data_dir': data_dir,
  }
  atomic_io.write_json(os.path.join(model_dir, METRICS_FILE), metrics,
                       indent=2)
  logging.info('Pre-training done: top-1 %.4f on %d images, backbone in %s',
               metrics['top1'], metrics['num_eval_examples'], prefix)
  print(f'pretrain: top-1 {metrics["top1"]:.4f} on '
        f'{metrics["num_eval_examples"]} val crops after {step} steps; '
        f'backbone checkpoint {prefix}')
  return metrics


def _checkpoint_step(model_dir: str) -> int:
  """Step of the trainer's latest checkpoint in `model_dir` (0 if none)."""
  latest = tf.train.latest_checkpoint(model_dir) if tf.io.gfile.exists(
      model_dir) else None
  return checkpoints.checkpoint_step(latest) if latest else 0
