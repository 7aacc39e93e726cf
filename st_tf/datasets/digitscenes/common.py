"""What the DigitScenes scenes and classification crops share.

Both generators write named parts (``labeled``, ..., ``classification``,
...) of deterministic items: item ``index`` of a part is drawn from
``np.random.default_rng([seed, split_code, index])``, its source id is
``split_code * SOURCE_ID_BLOCK + index``, its records are the shards
``<output_dir>/<split>-0000i-of-0000n.tfrecord`` beside their class-name
sidecar ``<split>.metadata.json`` (`st_tf.data.metadata`), and a JSON file
in `output_dir` written last marks a complete copy. `Parts` holds one
generator's codes and names and does these steps for it.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from st_tf.data import metadata
from st_tf.data import sharded_writer

SOURCE_ID_BLOCK = 1_000_000
IMAGE_FORMATS = ('jpeg', 'png')


@dataclasses.dataclass(frozen=True)
class Parts:
  """The parts one DigitScenes generator writes.

  Attributes:
    kind: name in error messages ('DigitScenes', 'DigitScenes
      classification').
    item: what an example is, in error messages ('scene', 'crop').
    codes: split -> split code (source ids and random streams).
    metadata_file: the JSON written last in `output_dir`.
    task: the records' task in their sidecars ('detection+segmentation',
      'classification').
    class_names: class id -> name (in the sidecars).
    source: the sidecars' `source`.
    make_flags: extra `scripts/make_digitscenes.py` flags that write the
      parts (named when `metadata_file` is missing).
    min_items_per_worker: one writer process below this many items per part
      (a process costs ~10 s of TF import).
  """
  kind: str
  item: str
  codes: Mapping[str, int]
  metadata_file: str
  task: str
  class_names: Sequence[str]
  source: str
  make_flags: str = ''
  min_items_per_worker: int = 10000

  @property
  def splits(self) -> Tuple[str, ...]:
    return tuple(self.codes)

  def check_split(self, split: str) -> None:
    """ValueError naming the known splits unless `split` is one."""
    if split not in self.codes:
      raise ValueError(f'unknown {self.kind} split {split!r}; expected '
                       f'{self.splits}')

  def offset(self, split: str) -> int:
    """Source id of item 0 of `split`."""
    return self.codes[split] * SOURCE_ID_BLOCK

  def source_id(self, split: str, index: int) -> int:
    """Numeric source id of item `index` of `split`."""
    self.check_split(split)
    if not 0 <= index < SOURCE_ID_BLOCK:
      raise ValueError(f'{self.item} index {index} outside [0, '
                       f'{SOURCE_ID_BLOCK})')
    return self.offset(split) + index

  def rng(self, seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of item `index` of `split` for `seed`."""
    return np.random.default_rng([seed, self.codes[split], index])

  def file_pattern(self, output_dir: str, split: str) -> str:
    """Glob of the TFRecord shards of `split` in `output_dir`."""
    self.check_split(split)
    return os.path.join(output_dir, f'{split}-*.tfrecord')

  def load_metadata(self, output_dir: str) -> dict:
    """Reads `metadata_file`; FileNotFoundError naming it and the fix."""
    path = os.path.join(output_dir, self.metadata_file)
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(
          f'{path} not found: run scripts/make_digitscenes.py '
          f'--output_dir={output_dir}{self.make_flags}')
    with tf.io.gfile.GFile(path) as f:
      return json.load(f)

  def write(self, output_dir: str, split: str, items: Sequence[dict],
            make_example: Callable[[dict], tf.train.Example],
            num_shards: int, num_workers: Optional[int]
            ) -> Tuple[sharded_writer.WriteResult, Dict[str, Any]]:
    """Writes `items` of `split` as at most `num_shards` shards + sidecar.

    Returns:
      (the writer's result, the part's metadata entry {'num_examples',
      'files' (basenames)}).
    """
    result = sharded_writer.write_sharded(
        items, make_example, os.path.join(output_dir, split),
        num_shards=max(1, min(num_shards, len(items))),
        num_workers=num_workers,
        min_items_per_worker=self.min_items_per_worker,
        desc=f'digitscenes/{split}')
    metadata.write_metadata(
        os.path.join(output_dir, split), task=self.task,
        category_names=list(self.class_names),
        num_examples=result.num_written, files=result.paths,
        source=self.source)
    return result, {'num_examples': result.num_written,
                    'files': [os.path.basename(p) for p in result.paths]}


def check_count(what: str, count: int, minimum: int) -> None:
  """ValueError unless `minimum` <= `count` < SOURCE_ID_BLOCK."""
  if not minimum <= count < SOURCE_ID_BLOCK:
    raise ValueError(f'{what} must be in [{minimum}, {SOURCE_ID_BLOCK}), '
                     f'got {count}')


def check_generate_args(seed: int, num_shards: int, image_format: str
                        ) -> None:
  """ValueError for a negative seed, no shard or an unknown image format."""
  if seed < 0:
    raise ValueError(f'seed must be >= 0, got {seed}')
  if num_shards < 1:
    raise ValueError(f'num_shards must be >= 1, got {num_shards}')
  if image_format not in IMAGE_FORMATS:
    raise ValueError(f"image_format must be 'jpeg' or 'png', got "
                     f'{image_format!r}')


def part_complete(output_dir: str, info: Mapping[str, Any],
                  num_examples: Optional[int],
                  extra_files: Sequence[str] = ()) -> bool:
  """True if a part's metadata entry `info` holds `num_examples` (when not
  None) and its files and `extra_files` exist in `output_dir`."""
  if num_examples is not None and info['num_examples'] != num_examples:
    return False
  return all(tf.io.gfile.exists(os.path.join(output_dir, name))
             for name in list(info['files']) + list(extra_files))
