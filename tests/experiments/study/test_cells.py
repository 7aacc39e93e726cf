"""Grid enumeration: sizes, names unique and stable, filters, commands."""
import pytest

from experiments.study import ablation
from experiments.study import cells
from experiments.study import commands


def _combos(cell_list):
  return {(c.policy, c.fraction, c.init) for c in cell_list}


def test_small_grid_is_table2_plus_table3_slices():
  grid = cells.enumerate_cells('small', [0])
  assert len(grid) == 12
  table2 = {(p, 100, i) for p in ('S1', 'S2', 'S3', 'S4')
            for i in ('rand', 'pretrained')}
  table3 = {('S4', f, i) for f in (20, 50, 100)
            for i in ('rand', 'pretrained')}
  assert _combos(grid) == table2 | table3
  # Random-init cells first (the pre-trained ones wait for pre-training).
  assert [c.init for c in grid] == ['rand'] * 6 + ['pretrained'] * 6


def test_full_grid_is_the_product_and_seeds_multiply():
  grid = cells.enumerate_cells('full', [0, 3])
  assert len(grid) == 48
  assert len(_combos(grid)) == 24
  assert {c.seed for c in grid} == {0, 3}
  assert _combos(cells.enumerate_cells('small', [0])) < _combos(grid)


def test_names_unique_and_stable():
  grid = cells.enumerate_cells('full', [0, 1])
  names = [c.name for c in grid]
  assert len(set(names)) == len(names)
  # Names are folder names of finished runs: they must never change.
  assert cells.Cell('S4', 20, 'pretrained', 1).name == 'S4_p20_pretrained_s1'
  assert cells.Cell('S1', 100, 'rand', 0).name == 'S1_p100_rand_s0'
  assert names == [c.name for c in cells.enumerate_cells('full', [0, 1])]
  abl = [c.name for c in ablation.enumerate_ablation()]
  assert abl == ['ablation/normalized_a0.5', 'ablation/normalized_a1',
                 'ablation/normalized_a2', 'ablation/normalized_a4',
                 'ablation/weighted_a0.5', 'ablation/weighted_a1',
                 'ablation/weighted_a2', 'ablation/weighted_a4']


def test_filter_and_bad_input():
  grid = cells.enumerate_cells('small', [0])
  assert [c.name for c in cells.filter_cells(grid, 'S1_p100_rand')] == [
      'S1_p100_rand_s0']
  assert len(cells.filter_cells(grid, '')) == 12
  with pytest.raises(ValueError, match='unknown grid'):
    cells.enumerate_cells('huge', [0])
  with pytest.raises(ValueError, match='unique'):
    cells.enumerate_cells('small', [0, 0])
  with pytest.raises(ValueError, match='policy'):
    cells.Cell('S5', 100, 'rand', 0)


def test_schedule_fits_short_runs():
  assert commands.steps_per_epoch(1000) == 250
  assert commands.steps_per_epoch(60) == 60
  assert commands.steps_per_epoch(1001) == 143
  assert commands.warmup_steps(3000) == 100
  assert commands.warmup_steps(60) == 6


def test_cell_bindings(tmp_path):
  settings = commands.Settings(output_dir=str(tmp_path / 'out'),
                               data_dir=str(tmp_path / 'data'), steps=60,
                               score_threshold=0.4)
  rand = commands.cell_bindings(cells.Cell('S2', 50, 'rand', 1), settings,
                                '/x/labeled_p50.tfrecord', '/ckpt')
  assert "POLICY = 'S2'" in rand and 'TRAIN_STEPS = 60' in rand
  assert "INIT_METHOD = 'random'" in rand and 'INIT_CHECKPOINT = None' in rand
  assert 'SEED = 1' in rand and 'SCORE_THRESHOLD = 0.4' in rand
  assert "LABELED_PATTERN = '/x/labeled_p50.tfrecord'" in rand
  pre = commands.cell_bindings(cells.Cell('S2', 50, 'pretrained', 1),
                               settings, '/x', '/ckpt')
  assert "INIT_METHOD = 'backbone'" in pre
  assert "INIT_CHECKPOINT = '/ckpt'" in pre
  with pytest.raises(ValueError, match='pre-trained backbone'):
    commands.cell_bindings(cells.Cell('S2', 50, 'pretrained', 1), settings,
                           '/x')
  with pytest.raises(ValueError, match='absolute'):
    commands.Settings(output_dir='rel', data_dir='/d', steps=1)
