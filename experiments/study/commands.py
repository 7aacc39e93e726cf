"""Command lines of the study: one `python -m st_tf.main` per cell.

A grid cell is one self_train run of `gin/study/digitscenes_cell.gin` with
its macros bound on the command line (see that file for what each macro
configures)::

  python -m st_tf.main --gin_file=gin/study/digitscenes_cell.gin \
      --gin_bindings="POLICY = 'S4'" ... --mode=self_train \
      --model_dir=<output_dir>/cells/<cell name>

The pre-training run (once, for the 'pretrained' cells)::

  python -m st_tf.main --gin_file=gin/demo/digitscenes_pretrain.gin \
      --gin_bindings="DATA_DIR = '<data_dir>'" --mode=pretrain \
      --model_dir=<output_dir>/pretrain

Subprocesses run with the repository root as working directory (gin
includes and the default data paths are relative to it); every path passed
is absolute.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from typing import List, Optional, Sequence

from st_tf import paths
from experiments.study import cells as cells_lib

REPO_ROOT = paths.REPO_ROOT
CELL_GIN = 'gin/study/digitscenes_cell.gin'
PRETRAIN_GIN = 'gin/demo/digitscenes_pretrain.gin'
PRETRAIN_METRICS = 'pretrain_metrics.json'
# The demo's schedule: checkpoint/summary interval and LR warmup, capped so
# short runs (e.g. --steps=60) stay valid.
MAX_STEPS_PER_EPOCH = 250
MAX_WARMUP_STEPS = 100
# Gin init method per cell init.
INIT_METHODS = {'rand': 'random', 'pretrained': 'backbone'}


@dataclasses.dataclass(frozen=True)
class Settings:
  """What every cell of one study shares.

  Attributes:
    output_dir: absolute study folder.
    data_dir: absolute DigitScenes folder.
    steps: optimizer steps of the teacher and of the student.
    score_threshold: pseudo-label score threshold.
    pseudo_weight: the normalized loss' `a` in the grid cells.
    loss_log_every: `train.loss_log_every` of every cell (train_log.csv).
    python: interpreter running the cells.
  """
  output_dir: str
  data_dir: str
  steps: int
  score_threshold: float = 0.3
  pseudo_weight: float = 1.0
  loss_log_every: int = 10
  python: str = sys.executable

  def __post_init__(self):
    if self.steps < 1:
      raise ValueError(f'steps must be >= 1, got {self.steps}')
    if not 0.0 <= self.score_threshold <= 1.0:
      raise ValueError('score_threshold must be in [0, 1], got '
                       f'{self.score_threshold}')
    for name in ('output_dir', 'data_dir'):
      if not os.path.isabs(getattr(self, name)):
        raise ValueError(f'{name} must be absolute, got '
                         f'{getattr(self, name)!r}')


def steps_per_epoch(steps: int) -> int:
  """The largest divisor of `steps` that is <= 250 (the trainer needs
  train_steps to be a multiple of steps_per_epoch)."""
  return max(d for d in range(1, min(steps, MAX_STEPS_PER_EPOCH) + 1)
             if steps % d == 0)


def warmup_steps(steps: int) -> int:
  """The demo's 100 warmup steps, at most a tenth of a short run."""
  return min(MAX_WARMUP_STEPS, steps // 10)


def cells_dir(settings: Settings) -> str:
  return os.path.join(settings.output_dir, 'cells')


def cell_dir(settings: Settings, name: str) -> str:
  return os.path.join(cells_dir(settings), name)


def data_subset_dir(settings: Settings) -> str:
  return os.path.join(settings.output_dir, 'data')


def pretrain_dir(settings: Settings) -> str:
  return os.path.join(settings.output_dir, 'pretrain')


def pretrain_backbone(settings: Settings) -> str:
  """The backbone checkpoint folder the pre-training run writes."""
  return os.path.join(pretrain_dir(settings), 'backbone')


def pretrain_done(settings: Settings) -> bool:
  return os.path.exists(os.path.join(pretrain_dir(settings),
                                     PRETRAIN_METRICS))


def _gin(value) -> str:
  """A Python value as a gin literal (strings quoted, None, numbers)."""
  return repr(value)


def cell_bindings(cell: cells_lib.Cell, settings: Settings,
                  labeled_pattern: str,
                  init_checkpoint: Optional[str] = None,
                  extra: Sequence[str] = ()) -> List[str]:
  """Gin bindings of `cell` (macros of gin/study/digitscenes_cell.gin).

  Args:
    cell: the grid cell.
    settings: the study settings.
    labeled_pattern: the cell's human-labeled records (full split or its
      subset file).
    init_checkpoint: backbone checkpoint of 'pretrained' cells.
    extra: bindings appended last (the ablation's combiner and teacher).
  """
  if cell.init == 'pretrained' and not init_checkpoint:
    raise ValueError(f'cell {cell.name} needs the pre-trained backbone '
                     'checkpoint')
  data = settings.data_dir
  checkpoint = init_checkpoint if cell.init == 'pretrained' else None
  bindings = [
      f'DATA_DIR = {_gin(data)}',
      f'LABELED_PATTERN = {_gin(labeled_pattern)}',
      f'UNLABELED_PATTERN = {_gin(os.path.join(data, "unlabeled-*"))}',
      f'VAL_PATTERN = {_gin(os.path.join(data, "val-*"))}',
      f'VAL_ANNOTATIONS = {_gin(os.path.join(data, "val.json"))}',
      f'POLICY = {_gin(cell.policy)}',
      f'TRAIN_STEPS = {settings.steps}',
      f'STEPS_PER_EPOCH = {steps_per_epoch(settings.steps)}',
      f'WARMUP_STEPS = {warmup_steps(settings.steps)}',
      f'SCORE_THRESHOLD = {_gin(float(settings.score_threshold))}',
      f'PSEUDO_WEIGHT = {_gin(float(settings.pseudo_weight))}',
      f'INIT_METHOD = {_gin(INIT_METHODS[cell.init])}',
      f'INIT_CHECKPOINT = {_gin(checkpoint)}',
      f'SEED = {cell.seed}',
      f'LOSS_LOG_EVERY = {settings.loss_log_every}',
  ]
  return bindings + list(extra)


def self_train_argv(settings: Settings, bindings: Sequence[str],
                    model_dir: str) -> List[str]:
  """argv of one cell's self_train run."""
  return ([settings.python, '-m', 'st_tf.main', f'--gin_file={CELL_GIN}'] +
          [f'--gin_bindings={b}' for b in bindings] +
          ['--mode=self_train', f'--model_dir={model_dir}'])


def pretrain_argv(settings: Settings) -> List[str]:
  """argv of the pre-training run."""
  return [settings.python, '-m', 'st_tf.main', f'--gin_file={PRETRAIN_GIN}',
          f'--gin_bindings=DATA_DIR = {_gin(settings.data_dir)}',
          '--mode=pretrain', f'--model_dir={pretrain_dir(settings)}']


def shell_line(argv: Sequence[str]) -> str:
  """argv as one copy-pasteable shell line (run from the repo root)."""
  return ' '.join(shlex.quote(a) for a in argv)
