r"""Reproduces the paper's pre-training vs self-training study on DigitScenes.

  python scripts/reproduce_paper.py [--grid=small|full] [--seeds=0,1] \
      [--steps=1000] [--output_dir=runs/reproduce_paper] [--only=S4_p20] \
      [--noablation] [--dry_run]

Every grid cell (augmentation policy, labeled fraction, init, seed) is one
`python -m st_tf.main --gin_file=gin/study/digitscenes_cell.gin
--mode=self_train` subprocess whose teacher is the supervised result and
whose student is the self-trained one; then the loss-normalization
ablation. Resumable: rerun the same command and finished cells are skipped.
Writes results.json, tables.md, tables.json and ap_vs_fraction.png to
--output_dir. Logic: experiments/study/ (study.py is the driver).
"""
import os
import sys

# Runnable as `python scripts/reproduce_paper.py` from a source checkout.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from experiments.study import cells
from experiments.study import commands
from experiments.study import study

_GRID = flags.DEFINE_enum(
    'grid', 'small', sorted(cells.GRIDS),
    'small: Table 2 slice (S1-S4 at 100%) + Table 3 slice (S4 at 20/50/100%)'
    ', both inits (12 cells per seed); full: S1-S4 x 20/50/100% x both inits '
    '(24 per seed).')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', 'runs/reproduce_paper',
                                  'Study folder (cells, outputs).')
_SEEDS = flags.DEFINE_list('seeds', ['0'], 'Comma-separated seeds '
                           '(replicates; see gin/study/digitscenes_cell.gin).')
_STEPS = flags.DEFINE_integer(
    'steps', None, 'Teacher = student training steps (default: '
    + ', '.join(f'{k} {v}' for k, v in sorted(cells.DEFAULT_STEPS.items()))
    + ').')
_SCORE_THRESHOLD = flags.DEFINE_float('score_threshold', 0.3,
                                      'Pseudo-label score threshold.')
_DATA_DIR = flags.DEFINE_string('data_dir', 'data/digitscenes',
                                'DigitScenes folder (made if missing).')
_DRY_RUN = flags.DEFINE_bool('dry_run', False,
                             'Print the cells and commands only.')
_ONLY = flags.DEFINE_string('only', '', 'Only cells whose name contains this '
                            '(grid: S4_p20_rand_s0; ablation: '
                            'ablation/weighted_a4).')
_ABLATION = flags.DEFINE_bool(
    'ablation', True, 'Also run the loss ablation (normalized vs weighted, '
    'a in 0.5, 1, 2, 4, on the S4 / 100% / rand / seed-0 student).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    seeds = [int(s) for s in _SEEDS.value]
  except ValueError as e:
    raise app.UsageError(f'--seeds must be integers: {_SEEDS.value}') from e
  steps = _STEPS.value or cells.DEFAULT_STEPS[_GRID.value]
  settings = commands.Settings(
      output_dir=os.path.abspath(_OUTPUT_DIR.value),
      data_dir=os.path.abspath(_DATA_DIR.value), steps=steps,
      score_threshold=_SCORE_THRESHOLD.value)
  options = study.Options(grid=_GRID.value, seeds=seeds, settings=settings,
                          only=_ONLY.value, ablation=_ABLATION.value,
                          dry_run=_DRY_RUN.value)
  sys.exit(study.run_study(options))


if __name__ == '__main__':
  app.run(main)
