"""Sharded, parallel, crash-safe TFRecord writing with a progress bar.

Every converter in `scripts/` and the DigitScenes maker write through
`write_sharded`, so they share one behaviour:

* items are split round-robin into `num_shards` shards, written by a pool of
  `num_workers` processes;
* each shard is written to ``<name>.tmp`` and renamed when complete, so a
  crash never leaves a truncated shard under its final name;
* a tqdm bar shows progress, and a final count is logged and returned.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import queue as queue_lib
from typing import Callable, Iterable, List, Optional, Sequence

from absl import logging
import tensorflow as tf
import tqdm

from st_tf import atomic_io


_MIN_ITEMS_PER_WORKER = 2000


@dataclasses.dataclass
class WriteResult:
  """What `write_sharded` wrote."""
  paths: List[str]
  num_written: int
  num_skipped: int


def shard_paths(output_prefix: str, num_shards: int) -> List[str]:
  """Names shards Model Garden style: ``prefix-00000-of-00004.tfrecord``."""
  return [f'{output_prefix}-{i:05d}-of-{num_shards:05d}.tfrecord'
          for i in range(num_shards)]


def _write_one_shard(path: str, items: Sequence, make_example: Callable,
                     progress_queue=None) -> tuple:
  """Writes one shard atomically; returns (written, skipped, skip reasons)."""
  tmp_path = path + '.tmp'
  written, skipped, reasons = 0, 0, []
  with tf.io.TFRecordWriter(tmp_path) as writer:
    for item in items:
      try:
        example = make_example(item)
      except SkipItem as e:
        skipped += 1
        reasons.append(str(e))
        example = None
      if example is not None:
        writer.write(example.SerializeToString())
        written += 1
      if progress_queue is not None:
        progress_queue.put(1)
  atomic_io.rename(tmp_path, path)
  return written, skipped, reasons


class SkipItem(Exception):
  """Raised by a `make_example` function to skip (and count) one item."""


def write_sharded(items: Iterable,
                  make_example: Callable,
                  output_prefix: str,
                  num_shards: int = 1,
                  num_workers: Optional[int] = None,
                  desc: str = 'writing',
                  min_items_per_worker: int = _MIN_ITEMS_PER_WORKER
                  ) -> WriteResult:
  """Writes `make_example(item)` for every item into sharded TFRecords.

  Args:
    items: picklable work items (e.g. file paths or small dicts).
    make_example: picklable (module-level) function item -> tf.train.Example.
      It may raise `SkipItem(reason)` to skip an item; skips are counted and
      logged. Any other exception aborts the write and names the item.
    output_prefix: path prefix of the shards; parent folders are created.
    num_shards: number of output shards (>= 1).
    num_workers: worker processes; default min(num_shards, cpu count).
      1 writes in this process. Small jobs default to 1.
    desc: label of the progress bar.
    min_items_per_worker: below this many items the default is 1 worker
      (a worker process costs ~10 s of TF import).

  Returns:
    A `WriteResult` with the shard paths and counts.
  """
  items = list(items)
  if num_shards < 1:
    raise ValueError(f'num_shards must be >= 1, got {num_shards}')
  parent = os.path.dirname(output_prefix)
  if parent:
    tf.io.gfile.makedirs(parent)
  paths = shard_paths(output_prefix, num_shards)
  shards = [items[i::num_shards] for i in range(num_shards)]
  if num_workers is None:
    num_workers = (1 if len(items) < min_items_per_worker else
                   min(num_shards, os.cpu_count() or 1))
  results = []
  with tqdm.tqdm(total=len(items), desc=desc, unit='img') as bar:
    if num_workers <= 1:
      for path, shard in zip(paths, shards):
        results.append(_write_one_shard(path, shard, make_example))
        bar.update(len(shard))
    else:
      ctx = _mp_context()
      with ctx.Manager() as manager:
        queue = manager.Queue()
        with concurrent.futures.ProcessPoolExecutor(
            num_workers, mp_context=ctx) as pool:
          futures = [pool.submit(_write_one_shard, path, shard, make_example,
                                 queue) for path, shard in zip(paths, shards)]
          done = 0
          while done < len(items):
            try:
              queue.get(timeout=0.2)
            except queue_lib.Empty:
              if any(f.done() and f.exception() for f in futures):
                break  # f.result() below re-raises the worker's error
              continue
            done += 1
            bar.update(1)
          results = [f.result() for f in futures]
  written = sum(r[0] for r in results)
  skipped = sum(r[1] for r in results)
  for reason in [r for res in results for r in res[2]][:20]:
    logging.warning('skipped: %s', reason)
  logging.info('%s: wrote %d records in %d shards (%s-*), skipped %d', desc,
               written, num_shards, output_prefix, skipped)
  print(f'{desc}: wrote {written} records to {num_shards} shards '
        f'({output_prefix}-*), skipped {skipped}')
  return WriteResult(paths=paths, num_written=written, num_skipped=skipped)


def _mp_context():
  """'spawn' keeps TensorFlow's threads out of forked children."""
  import multiprocessing  # pylint: disable=g-import-not-at-top
  return multiprocessing.get_context('spawn')
