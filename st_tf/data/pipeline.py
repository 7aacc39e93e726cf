"""Gin dataset builders on Model Garden's input readers.

* `build_dataset`: one source (human-only teacher training, or eval) through
  `official.core.input_reader.InputReader`.
* `build_self_training_dataset`: the student's human + pseudo batches through
  `official.vision.dataloaders.input_reader.CombinationDatasetInputReader`,
  which reads, shuffles, repeats, decodes, parses and batches each source on
  its own (``B_h`` human, ``B_p`` pseudo per replica) and concatenates them:
  ``images [B_h + B_p, H, W, 3]`` uint8 with ``labels['is_pseudo'] ==
  [0] * B_h + [1] * B_p``.

Both return `tf.data.Dataset`s of ``(images, labels)`` with fixed shapes
(``drop_remainder=True``), take an optional `tf.distribute.InputContext`
(sharding + per-replica batch sizes; pass them to
``strategy.distribute_datasets_from_function``), and use AUTOTUNE.

Determinism: with ``seed`` set, file and record shuffles are seeded and the
parser's random ops get a graph-level seed. Model Garden's augment ops use
stateful RNG, whose draws are only reproducible when the augmenting map runs
serially (TensorFlow's own rule, see `tf.config.experimental.
enable_op_determinism`), so ``deterministic=True`` (the default when a seed is
given) parses with one call at a time: reproducible but slower. Use
``seed=None`` (or ``deterministic=False``) for throughput.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import gin
import tensorflow as tf
from official.core import config_definitions as cfg
from official.core import input_reader as core_reader
from official.vision.configs import common as vision_cfg
from official.vision.dataloaders import input_reader as vision_reader

from st_tf.data import files

Parser = Callable[[dict], Any]


def _parse_stage(parser: Parser, seed: Optional[int],
                 deterministic: bool) -> dict:
  """Reader kwargs that run `parser` (parallel, or serial + seeded)."""
  if not deterministic:
    return {'parser_fn': parser}

  def seeded_parse(data):
    if seed is not None and not tf.executing_eagerly():
      tf.compat.v1.get_default_graph().seed = seed  # this map function only
    return parser(data)

  # `sample_fn` is Model Garden's hook between decoding and parsing; here it
  # is the parse itself, mapped serially so stateful RNG draws are ordered.
  return {'sample_fn': lambda ds: ds.map(seeded_parse)}


def _data_config(cls, file_pattern, global_batch_size: int, is_training: bool,
                 seed: Optional[int], deterministic: bool,
                 shuffle_buffer_size: int, cycle_length: Optional[int],
                 **kwargs):
  return cls(
      input_path=','.join(files.match_files(file_pattern)),
      global_batch_size=global_batch_size,
      is_training=is_training,
      drop_remainder=True,
      shuffle_buffer_size=shuffle_buffer_size,
      cycle_length=cycle_length,
      deterministic=deterministic,
      seed=seed,
      **kwargs)


def _decode_fn(decoder) -> Callable[[Any], dict]:
  """The decoder as one `tf.function`, traced once for all sources."""
  return tf.function(decoder.decode if hasattr(decoder, 'decode') else decoder,
                     reduce_retracing=True, autograph=False)


@gin.configurable
def build_dataset(input_context: Optional[tf.distribute.InputContext] = None,
                  *,
                  file_pattern=gin.REQUIRED,
                  parser: Parser = gin.REQUIRED,
                  decoder: Any = gin.REQUIRED,
                  global_batch_size: int = gin.REQUIRED,
                  is_training: bool = True,
                  seed: Optional[int] = None,
                  deterministic: Optional[bool] = None,
                  shuffle_buffer_size: int = 1000,
                  cycle_length: Optional[int] = None,
                  dataset_fn: Callable[..., tf.data.Dataset] = (
                      files.tfrecord_dataset_with_filename),
                  ) -> tf.data.Dataset:
  """Human-only (teacher) or eval dataset.

  Args:
    input_context: per-replica input context, or None (one pipeline).
    file_pattern: TFRecord path/glob, comma-separated globs, or a list.
    parser: `parsers.DetectionParser` / `SegmentationParser` (or any decoded
      dict -> (images, labels) callable). Its `mode` decides augmentation.
    decoder: object with `.decode(record)` (decoders.py) or a callable.
    global_batch_size: batch size over all replicas.
    is_training: shuffle and repeat (else one pass, in file order).
    seed: shuffle / augmentation seed; None = random.
    deterministic: reproducible order and augmentation; default
      ``seed is not None or not is_training`` (see the module doc).
    shuffle_buffer_size: record shuffle buffer.
    cycle_length: files read in parallel; None = AUTOTUNE.
    dataset_fn: files -> records dataset (Model Garden InputReader contract).

  Returns:
    Dataset of (images uint8 [B, H, W, 3], labels dict of [B, ...]), B the
    per-replica batch size.
  """
  if deterministic is None:  # eval: file order; training: iff seeded
    deterministic = seed is not None or not is_training
  params = _data_config(cfg.DataConfig, file_pattern, global_batch_size,
                        is_training, seed, deterministic, shuffle_buffer_size,
                        cycle_length)
  reader = core_reader.InputReader(
      params, dataset_fn=dataset_fn, decoder_fn=_decode_fn(decoder),
      **_parse_stage(parser, seed, deterministic))
  return reader.read(input_context=input_context)


@gin.configurable
def build_self_training_dataset(
    input_context: Optional[tf.distribute.InputContext] = None,
    *,
    human_file_pattern=gin.REQUIRED,
    pseudo_file_pattern=gin.REQUIRED,
    parser: Parser = gin.REQUIRED,
    decoder: Any = gin.REQUIRED,
    human_batch_size: int = gin.REQUIRED,
    pseudo_batch_size: Optional[int] = None,
    seed: Optional[int] = None,
    deterministic: Optional[bool] = None,
    shuffle_buffer_size: int = 1000,
    cycle_length: Optional[int] = None,
    dataset_fn: Callable[..., tf.data.Dataset] = (
        files.tfrecord_dataset_with_filename),
) -> tf.data.Dataset:
  """Student dataset: human + pseudo examples in every batch.

  Args:
    input_context: per-replica input context, or None.
    human_file_pattern: human-labeled records (see `build_dataset`).
    pseudo_file_pattern: pseudo-labeled records (non-empty teacher id).
    parser: train-mode parser shared by both sources.
    decoder: decoder shared by both sources.
    human_batch_size: global human batch size.
    pseudo_batch_size: global pseudo batch size; default = human (1:1).
    seed, deterministic, shuffle_buffer_size, cycle_length, dataset_fn: as in
      `build_dataset`.

  Returns:
    Dataset of (images uint8 [b_h + b_p, H, W, 3], labels) with the human
    examples first; b_h, b_p are the per-replica batch sizes.
  """
  pseudo_batch_size = (human_batch_size if pseudo_batch_size is None
                       else pseudo_batch_size)
  if human_batch_size < 1 or pseudo_batch_size < 1:
    raise ValueError('human_batch_size and pseudo_batch_size must be >= 1, '
                     f'got {human_batch_size} and {pseudo_batch_size}')
  deterministic = seed is not None if deterministic is None else deterministic
  pseudo = _data_config(
      vision_cfg.PseudoLabelDataConfig, pseudo_file_pattern, pseudo_batch_size,
      True, seed, deterministic, shuffle_buffer_size, cycle_length,
      data_ratio=-1.0)  # < 0: use pseudo global_batch_size, not a ratio
  # Model Garden's reader reads `params.pseudo_label_data`, a field its base
  # DataConfig lacks: `_SelfTrainingDataConfig` adds it.
  params = _data_config(
      _SelfTrainingDataConfig, human_file_pattern,
      human_batch_size + pseudo_batch_size, True, seed, deterministic,
      shuffle_buffer_size, cycle_length, pseudo_label_data=pseudo)
  reader = _PrefetchingCombinationReader(
      params, dataset_fn=dataset_fn, pseudo_label_dataset_fn=dataset_fn,
      decoder_fn=_decode_fn(decoder),
      **_parse_stage(parser, seed, deterministic))
  return reader.read(input_context=input_context)


@gin.configurable
def build_mean_teacher_dataset(
    input_context: Optional[tf.distribute.InputContext] = None,
    *,
    human_dataset: Callable[..., tf.data.Dataset] = gin.REQUIRED,
    unlabeled_dataset: Callable[..., tf.data.Dataset] = gin.REQUIRED,
) -> tf.data.Dataset:
  """Mean-teacher student dataset: human batches zipped with two-view
  unlabeled batches (`st_tf.data.views.TwoViewParser`).

  Args:
    input_context: per-replica input context, or None.
    human_dataset: builds the human batches (`@human/build_dataset`, train
      mode), called with `input_context`.
    unlabeled_dataset: builds the unlabeled batches (`build_dataset` with a
      `TwoViewParser` parser), called with `input_context`.

  Returns:
    Dataset of `((images [b_h, H, W, 3], labels), views)`, `views` the
    batched `TwoViewParser` dict ('weak', 'strong' uint8 [b_u, H, W, 3],
    ...); b_h, b_u are the per-replica batch sizes (fixed shapes).
  """
  return tf.data.Dataset.zip(
      (human_dataset(input_context=input_context),
       unlabeled_dataset(input_context=input_context))).prefetch(
           tf.data.AUTOTUNE)


class _PrefetchingCombinationReader(
    vision_reader.CombinationDatasetInputReader):
  """Model Garden's reader + a prefetch on each source's batches.

  The reader zips the human and pseudo batches with no buffer in between, so
  each source's batching waits for the other; a per-source prefetch lets both
  run ahead (measured ~1.5x images/s on 2 CPU cores, see
  scripts/bench_input_pipeline.py).
  """

  def _decode_and_parse_dataset(self, *args, **kwargs) -> tf.data.Dataset:
    return super()._decode_and_parse_dataset(*args, **kwargs).prefetch(
        tf.data.AUTOTUNE)


@dataclasses.dataclass
class _SelfTrainingDataConfig(cfg.DataConfig):
  """Model Garden DataConfig + the pseudo-label source it expects."""
  pseudo_label_data: vision_cfg.PseudoLabelDataConfig = dataclasses.field(
      default_factory=vision_cfg.PseudoLabelDataConfig)
