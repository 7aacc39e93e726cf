"""scripts/bench_tables.py: paired gains, mean +- std, table and plot."""
import json
import os

import pytest

from scripts import bench_tables

_TASK = {'name': 'detection', 'metric': 'AP'}


def _model(val, test, step):
  return {'value': val, 'test_value': test, 'step': step, 'metrics': {}}


def _base(teacher, baseline):
  return {'teacher': _model(*teacher, 3000),
          'baseline': dict(_model(*baseline, 4500))}


def _recipe(val, test, threshold=0.31):
  return {'rounds': [{'student': _model(val, test, 1500), 'pseudo_labels': {
      'score_threshold': threshold, 'labels_per_image': 3.0,
      'quality': {'0.3': {'precision': 0.5, 'recall': 0.6},
                  '0.5': {'precision': 0.9, 'recall': 0.2}}}}],
          'stages': [{'name': 'round_0/student/train', 'seconds': 100.0}]}


def test_collect_pairs_gains_by_seed_and_writes_outputs(tmp_path):
  runs = {
      0: {'base': _base((0.20, 0.21), (0.22, 0.23)),
          'base_2x': {'baseline': _model(0.23, 0.24, 6000)},
          'r': _recipe(0.25, 0.27)},
      1: {'base': _base((0.30, 0.31), (0.32, 0.33)),
          'base_2x': {'baseline': _model(0.33, 0.32, 6000)},
          'r': _recipe(0.34, 0.39)},
      2: {'base': _base((0.1, 0.1), (0.1, 0.1)), 'base_2x': None, 'r': None},
  }
  results = bench_tables.collect(runs, ['r'], _TASK)
  gain = results['rows']['r']['gain_1x']
  # Paired per seed: (0.27 - 0.23, 0.39 - 0.33) = (0.04, 0.06).
  assert gain['n'] == 2
  assert gain['mean'] == pytest.approx(0.05)
  assert gain['std'] == pytest.approx(0.0141421, rel=1e-4)
  assert results['rows']['r']['gain_2x']['mean'] == pytest.approx(
      ((0.27 - 0.24) + (0.39 - 0.32)) / 2)
  assert results['rows']['r']['precision']['mean'] == 0.5  # nearest row
  assert results['rows']['baseline_1x']['test']['n'] == 3
  assert results['plateau'][0] == [(3000, 0.20), (4500, 0.22), (6000, 0.23)]
  markdown = bench_tables.write(str(tmp_path), results, _TASK)
  assert '| r | 2 | 33.0 ± 8.5 | +5.0 ± 1.4 |' in markdown
  assert '| 0 | (3000, 20.0) -> (4500, 22.0) -> (6000, 23.0) |' in markdown
  with open(tmp_path / 'results.json') as f:
    assert json.load(f)['rows']['r']['gain_1x']['n'] == 2
  assert os.path.getsize(tmp_path / 'bench.png') > 1000


def test_mean_std_handles_missing_and_single_values():
  assert bench_tables.mean_std([]) == {'mean': None, 'std': None, 'n': 0}
  assert bench_tables.mean_std([0.5, None]) == {'mean': 0.5, 'std': None,
                                                'n': 1}


def test_mean_teacher_recipe_gets_an_ema_teacher_row(tmp_path):
  online = _recipe(0.25, 0.27, threshold=0.3)
  online['rounds'][0]['ema_teacher'] = _model(0.26, 0.29, 1500)
  runs = {0: {'base': _base((0.20, 0.21), (0.22, 0.23)), 'base_2x': None,
              'mean_teacher': online}}
  results = bench_tables.collect(runs, ['mean_teacher'], _TASK)
  assert results['ema_rows'] == ['mean_teacher (EMA teacher)']
  ema = results['rows']['mean_teacher (EMA teacher)']
  assert ema['gain_1x']['mean'] == pytest.approx(0.29 - 0.23)
  markdown = bench_tables.to_markdown(results)
  assert '| mean_teacher (EMA teacher) | 1 | 29.0 | +6.0 |' in markdown
  assert '| mean_teacher | 1 | 27.0 | +4.0 |' in markdown
