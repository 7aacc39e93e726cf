"""Tables and plot of scripts/bench_self_training.py (from run summaries).

Inputs are the `summary.json` of each self_train run (st_tf/self_train/
summary.py): per seed, 'base' (teacher + 1x baseline), 'base_2x' and one per
recipe. Values are AP (or mIoU) in [0, 1]; tables print them x 100.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, Optional, Sequence

from st_tf import atomic_io
from st_tf import tasks

Runs = Dict[int, Dict[str, Optional[dict]]]


def mean_std(values: Sequence[float]) -> Dict[str, Optional[float]]:
  """Mean, sample std (None for n < 2) and n."""
  values = [float(v) for v in values if v is not None]
  n = len(values)
  if not n:
    return {'mean': None, 'std': None, 'n': 0}
  mean = sum(values) / n
  std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
         if n > 1 else None)
  return {'mean': mean, 'std': std, 'n': n}


def _quality_at(pseudo: dict, threshold: Optional[float]) -> dict:
  """The manifest's quality row closest to the threshold used."""
  quality = pseudo.get('quality') or {}
  if threshold is None or not quality:
    return {}
  key = min(quality, key=lambda k: abs(float(k) - threshold))
  return dict(quality[key], at=float(key))


def _stage_seconds(summary: dict, name: str) -> Optional[float]:
  for stage in summary.get('stages', []):
    if stage['name'] == name:
      return stage.get('seconds')
  return None


def _paired_gains(out: Dict[str, Any], base: Optional[dict],
                  base2x: Optional[dict]) -> Dict[str, Any]:
  """Adds the test / val gains over the same seed's 1x and 2x baselines."""
  for tag, ref in (('1x', base), ('2x', base2x)):
    b = ref and ref.get('baseline')
    out[f'gain_{tag}'] = (None if not b or out['test'] is None else
                          out['test'] - b['test_value'])
    out[f'val_gain_{tag}'] = None if not b else out['val'] - b['value']
  return out


def _ema_seed(summary: dict, base: Optional[dict], base2x: Optional[dict]
              ) -> Optional[Dict[str, Any]]:
  """A mean-teacher recipe's EMA teacher on one seed (None: not one)."""
  ema = summary['rounds'][0].get('ema_teacher')
  if ema is None:
    return None
  return _paired_gains({'val': ema['value'], 'test': ema.get('test_value')},
                       base, base2x)


def _recipe_seed(summary: dict, base: Optional[dict], base2x: Optional[dict]
                 ) -> Dict[str, Any]:
  """One recipe on one seed: values and paired gains."""
  student = summary['rounds'][0]['student']
  pseudo = summary['rounds'][0]['pseudo_labels']
  quality = _quality_at(pseudo, pseudo.get('score_threshold'))
  out = {'val': student['value'], 'test': student.get('test_value'),
         'threshold': pseudo.get('score_threshold'),
         'labels_per_image': pseudo['labels_per_image'],
         'precision': quality.get('precision'),
         'recall': quality.get('recall'),
         'coverage': quality.get('coverage'),
         'kept_miou': quality.get('mean_iou'),
         'student_seconds': _stage_seconds(summary, 'round_0/student/train')}
  return _paired_gains(out, base, base2x)


def collect(runs: Runs, recipes: Sequence[str], task: dict) -> Dict[str, Any]:
  """Per-seed values and mean +- std per recipe (see the module doc)."""
  per_seed: Dict[str, Dict[int, dict]] = {r: {} for r in recipes}
  refs: Dict[str, Dict[int, dict]] = {'teacher': {}, 'baseline_1x': {},
                                      'baseline_2x': {}}
  plateau = {}
  for seed, seed_runs in runs.items():
    base, base2x = seed_runs.get('base'), seed_runs.get('base_2x')
    if base:
      t, b = base['teacher'], base['baseline']
      refs['teacher'][seed] = {'val': t['value'], 'test': t.get('test_value'),
                               'step': t['step']}
      refs['baseline_1x'][seed] = {'val': b['value'],
                                   'test': b.get('test_value'),
                                   'step': b['step']}
      plateau[seed] = [(t['step'], t['value']), (b['step'], b['value'])]
    if base2x and base2x.get('baseline'):
      b = base2x['baseline']
      refs['baseline_2x'][seed] = {'val': b['value'],
                                   'test': b.get('test_value'),
                                   'step': b['step']}
      plateau.setdefault(seed, []).append((b['step'], b['value']))
    for name in recipes:
      if seed_runs.get(name):
        per_seed[name][seed] = _recipe_seed(seed_runs[name], base, base2x)
        ema = _ema_seed(seed_runs[name], base, base2x)
        if ema is not None:  # a mean-teacher recipe: its EMA teacher too
          per_seed.setdefault(f'{name} (EMA teacher)', {})[seed] = ema
  rows = {}
  for name, group in list(refs.items()) + list(per_seed.items()):
    values = list(group.values())
    keys = sorted({k for v in values for k in v if k != 'step'})
    rows[name] = {k: mean_std([v.get(k) for v in values]) for k in keys}
  return {'task': task['name'], 'metric': task['metric'],
          'seeds': sorted(runs), 'recipes': list(recipes), 'rows': rows,
          'ema_rows': [k for k in per_seed if k not in recipes],
          'per_seed': {**{k: v for k, v in refs.items()}, **per_seed},
          'plateau': plateau}


def _fmt(stat: Optional[dict], scale: float = 100.0, signed: bool = False,
         digits: int = 1) -> str:
  if not stat or stat.get('mean') is None:
    return 'n/a'
  mean = stat['mean'] * scale
  text = f'{mean:+.{digits}f}' if signed else f'{mean:.{digits}f}'
  if stat.get('std') is not None:
    text += f' ± {stat["std"] * scale:.{digits}f}'
  return text


def to_markdown(results: Dict[str, Any]) -> str:
  """The table (values x 100; ± = sample std over seeds)."""
  metric, rows = results['metric'], results['rows']
  unit = tasks.get(results['task']).label_unit  # 'boxes' | 'pixels'
  lines = [f'# Self-training benchmark: {results["task"]}, {metric} x 100, '
           f'seeds {results["seeds"]}', '',
           f'| model | n | test {metric} | paired gain vs baseline 1x '
           '(test) | vs baseline 2x (test) | val | val gain vs 1x | '
           f'threshold | pseudo {unit}/img | precision | recall | '
           'student s |', '|---|---|---|---|---|---|---|---|---|---|---|---|']
  for name in (['teacher', 'baseline_1x', 'baseline_2x'] + results['recipes']
               + results.get('ema_rows', [])):
    r = rows.get(name, {})
    n = max((s.get('n', 0) for s in r.values()), default=0)
    lines.append(
        f'| {name} | {n} | {_fmt(r.get("test"))} | '
        f'{_fmt(r.get("gain_1x"), signed=True)} | '
        f'{_fmt(r.get("gain_2x"), signed=True)} | {_fmt(r.get("val"))} | '
        f'{_fmt(r.get("val_gain_1x"), signed=True)} | '
        f'{_fmt(r.get("threshold"), 1.0, digits=2)} | '
        f'{_fmt(r.get("labels_per_image"), 1.0, digits=2)} | '
        f'{_fmt(r.get("precision"), 1.0, digits=2)} | '
        f'{_fmt(r.get("recall"), 1.0, digits=2)} | '
        f'{_fmt(r.get("student_seconds"), 1.0, digits=0)} |')
  lines += ['', '## The supervised run against steps (val, the plateau check)',
            '', '| seed | (step, val) teacher -> baseline 1x -> baseline 2x |',
            '|---|---|']
  for seed, points in sorted(results['plateau'].items()):
    lines.append(f'| {seed} | ' + ' -> '.join(
        f'({s}, {v * 100:.1f})' for s, v in points) + ' |')
  return '\n'.join(lines) + '\n'


def plot(results: Dict[str, Any], path: str) -> None:
  """Paired test gains (mean ± std) and the supervised curve per seed."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  names = results['recipes']
  for offset, tag in ((-0.2, '1x'), (0.2, '2x')):
    stats = [results['rows'].get(n, {}).get(f'gain_{tag}') or {}
             for n in names]
    means = [100 * (s.get('mean') or 0.0) for s in stats]
    errs = [100 * (s.get('std') or 0.0) for s in stats]
    left.bar([i + offset for i in range(len(names))], means, 0.4, yerr=errs,
             capsize=3, label=f'vs baseline {tag}')
  left.axhline(0, color='k', lw=0.8)
  left.set_xticks(range(len(names)))
  left.set_xticklabels(names, rotation=30, ha='right')
  left.set_ylabel(f'paired test {results["metric"]} gain (x100)')
  left.legend()
  for seed, points in sorted(results['plateau'].items()):
    right.plot([p[0] for p in points], [100 * p[1] for p in points], 'o-',
               label=f'seed {seed}')
  right.set_xlabel('human-label training steps')
  right.set_ylabel(f'val {results["metric"]} (x100)')
  right.set_title('teacher -> baseline 1x -> 2x')
  right.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write(out_dir: str, results: Dict[str, Any], task: dict) -> str:
  """results.json, table.md and bench.png in `out_dir`; returns the table."""
  del task
  os.makedirs(out_dir, exist_ok=True)
  atomic_io.write_text(os.path.join(out_dir, 'results.json'), json.dumps(
      results, indent=1, sort_keys=True, default=str))
  markdown = to_markdown(results)
  atomic_io.write_text(os.path.join(out_dir, 'table.md'), markdown)
  plot(results, os.path.join(out_dir, 'bench.png'))
  return markdown

