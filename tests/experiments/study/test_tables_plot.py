"""Tables and plot from synthetic results: right cells, gains, mean/spread."""
import json
import os
import statistics

from PIL import Image
import pytest

from experiments.study import plot
from experiments.study import tables


def _rec(policy, fraction, init, seed, sup, stu, status='complete'):
  return {'name': f'{policy}_p{fraction}_{init}_s{seed}', 'policy': policy,
          'fraction': fraction, 'init': init, 'seed': seed, 'status': status,
          'supervised_ap': sup, 'student_ap': stu,
          'gain': None if sup is None else stu - sup,
          'pseudo_boxes_per_image': 3.0, 'wall_seconds': 100.0}


def _results():
  return [
      # Table 2 / 4 row "Rand Init", column S1: one seed.
      _rec('S1', 100, 'rand', 0, 0.30, 0.32),
      # S4 / 100 % / rand: two seeds -> mean, spread, n = 2.
      _rec('S4', 100, 'rand', 0, 0.40, 0.43),
      _rec('S4', 100, 'rand', 1, 0.42, 0.44),
      _rec('S4', 20, 'pretrained', 0, 0.25, 0.24),
      _rec('S4', 50, 'rand', 0, 0.35, 0.37),
      # Failed and incomplete cells are not counted.
      _rec('S2', 100, 'rand', 0, 0.9, 0.9, status='failed'),
      _rec('S3', 100, 'rand', 0, None, None, status='not_run'),
  ]


def _row(table, label):
  return next(r for r in table['rows'] if r['label'] == label)


def test_numbers_land_in_the_right_cells():
  t = tables.build(_results())
  t2, t3 = t['tables']['table2'], t['tables']['table3']
  t4, t5 = t['tables']['table4'], t['tables']['table5']
  assert t2['columns'] == ['S1', 'S2', 'S3', 'S4']
  rand2 = _row(t2, 'Rand Init')['cells']
  assert rand2[0]['ap']['mean'] == pytest.approx(30.0)
  assert rand2[1] is None and rand2[2] is None  # failed, not run
  assert rand2[3]['ap']['mean'] == pytest.approx(41.0)
  assert all(c is None for c in _row(t2, 'Pre-trained')['cells'])
  assert t3['columns'] == ['20%', '50%', '100%']
  assert _row(t3, 'Pre-trained')['cells'][0]['ap']['mean'] == pytest.approx(
      25.0)
  assert _row(t3, 'Rand Init')['cells'][1]['ap']['mean'] == pytest.approx(
      35.0)
  # Table 4: self-training rows hold the student AP and its gain.
  st = _row(t4, 'Rand Init + self-training')['cells']
  assert st[0]['ap']['mean'] == pytest.approx(32.0)
  assert st[0]['gain']['mean'] == pytest.approx(2.0)
  assert _row(t4, 'Rand Init')['cells'][0]['ap']['mean'] == pytest.approx(
      30.0)
  # Table 5: a negative gain (student - supervised) for pre-trained at 20 %.
  pre = _row(t5, 'Pre-trained + self-training')['cells'][0]
  assert pre['gain']['mean'] == pytest.approx(-1.0)
  assert [r['label'] for r in t5['rows']] == [
      'Rand Init', 'Rand Init + self-training', 'Pre-trained',
      'Pre-trained + self-training']


def test_two_seeds_mean_spread_and_n():
  t = tables.build(_results())
  cell = _row(t['tables']['table4'], 'Rand Init + self-training')['cells'][3]
  assert cell['ap']['n'] == 2
  assert cell['ap']['mean'] == pytest.approx(43.5)
  assert cell['ap']['spread'] == pytest.approx(statistics.stdev([43., 44.]))
  # Gains are paired per seed: (3, 2) -> 2.5 +- 0.71.
  assert cell['gain']['mean'] == pytest.approx(2.5)
  assert cell['gain']['spread'] == pytest.approx(statistics.stdev([3., 2.]))
  assert t['multi_seed']
  assert tables.format_cell(cell, True) == '43.5 ± 0.7 (+2.5 ± 0.7) n=2'
  one = _row(t['tables']['table4'], 'Rand Init + self-training')['cells'][0]
  assert one['ap']['spread'] is None
  assert tables.format_cell(one, False) == '32.0 (+2.0)'
  assert tables.format_cell(None, True) == '-'


def test_markdown_and_json(tmp_path):
  results = _results()
  abl = [{'name': 'ablation/weighted_a4', 'combiner': 'weighted',
          'pseudo_weight': 4.0, 'status': 'complete', 'student_ap': 0.1,
          'supervised_ap': 0.4,
          'stability': {'first_loss': 2.0, 'final_loss': 3.0,
                        'max_spike_ratio': 5.0, 'diverged': True,
                        'spiked': True, 'spike_steps': [300]},
          'stability_human': {'first_loss': 1.5, 'final_loss': 1.25,
                              'diverged': False, 'spiked': False},
          'final_pseudo_weight': 4.0}]
  t = tables.build(results, abl)
  md = tables.to_markdown(t, results)
  for title in ('Table 2', 'Table 3', 'Table 4', 'Table 5', 'Ablation'):
    assert title in md
  assert '| Rand Init | 30.0 n=1 | - | - | 41.0 ± 1.4 n=2 |' in md
  assert ('| weighted | 4 | 10.0 | 40.0 | 2.000 | 3.000 | 5.00 | yes | yes | '
          '1.500 | 1.250 | no | no | 4.00 | complete |') in md
  assert 'sample standard deviation' in md and '3x the median' in md
  json.loads(json.dumps(t))  # JSON-able as is


def test_plot_writes_png(tmp_path):
  path = str(tmp_path / 'ap.png')
  data = plot.series(_results())
  assert data['Rand Init']['fraction'] == [50, 100]
  assert data['Rand Init']['mean'] == pytest.approx([35.0, 41.0])
  assert data['Pre-trained + self-training']['mean'] == pytest.approx([24.0])
  plot.plot_ap_vs_fraction(_results(), path)
  with Image.open(path) as image:
    assert image.format == 'PNG' and image.size[0] > 300
  assert os.listdir(tmp_path) == ['ap.png']
  plot.plot_ap_vs_fraction([], str(tmp_path / 'empty.png'))  # no data: ok
  assert os.path.exists(tmp_path / 'empty.png')
