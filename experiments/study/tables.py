"""The paper's tables from the study's results: `tables.md` + `tables.json`.

Numbers are COCO AP (AP@[.5:.95]) x 100 on DigitScenes val, as the paper
prints them. Per (policy, fraction, init) the seeds are aggregated: mean,
spread = sample standard deviation over seeds (n - 1 denominator; absent
for n = 1) and n = number of seeds with a complete cell. A gain is
student AP - supervised AP of the same cell (paired per seed), then
aggregated the same way. Missing or failed cells print as '-'.

* Table 2: supervised AP by augmentation (S1-S4) x init, 100 % labels.
* Table 3: supervised AP by labeled fraction x init, S4.
* Table 4: self-training over each augmentation (100 % labels): rows Rand
  Init, Rand Init + self-training (gain), Pre-trained, Pre-trained +
  self-training (gain).
* Table 5: the same by labeled fraction (S4).
* Ablation: the S4 student's loss (normalized / weighted, a), final AP and
  stability (definitions in `stability.py`).
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Dict, List, Optional, Sequence, Tuple

from experiments.study import cells as cells_lib
from experiments.study import stability

UNITS = 'COCO AP@[.5:.95] x 100, DigitScenes val'
SPREAD = 'sample standard deviation over seeds (n - 1 denominator)'
SCALE = 100.0
MISSING = '-'

Key = Tuple[str, int, str]  # (policy, fraction, init)


def stat(values: Sequence[float]) -> Optional[Dict[str, Any]]:
  """{'mean', 'spread' (None for n < 2), 'n', 'values'} or None if empty."""
  values = [float(v) for v in values]
  if not values:
    return None
  return {'mean': statistics.fmean(values),
          'spread': statistics.stdev(values) if len(values) > 1 else None,
          'n': len(values), 'values': values}


def _ok(value: Any) -> bool:
  return value is not None and math.isfinite(float(value))


def group(results: Sequence[Dict[str, Any]]) -> Dict[Key, Dict[str, Any]]:
  """Complete grid records -> per (policy, fraction, init) stats (x 100).

  Returns:
    {key: {'supervised': stat, 'student': stat, 'gain': stat}}; a stat is
    None when no seed has the value. Gains are paired per seed.
  """
  raw: Dict[Key, Dict[str, List[float]]] = {}
  for r in results:
    if r.get('status') != 'complete':
      continue
    key = (r['policy'], int(r['fraction']), r['init'])
    entry = raw.setdefault(key, {'supervised': [], 'student': [], 'gain': []})
    sup, stu = r.get('supervised_ap'), r.get('student_ap')
    if _ok(sup):
      entry['supervised'].append(SCALE * sup)
    if _ok(stu):
      entry['student'].append(SCALE * stu)
    if _ok(sup) and _ok(stu):
      entry['gain'].append(SCALE * (stu - sup))
  return {k: {name: stat(v) for name, v in e.items()} for k, e in raw.items()}


def _cell(groups, key: Key, metric: str, with_gain: bool = False
          ) -> Optional[Dict[str, Any]]:
  entry = groups.get(key)
  if entry is None or entry[metric] is None:
    return None
  cell = {'ap': entry[metric]}
  if with_gain:
    cell['gain'] = entry['gain']
  return cell


def _table(title: str, caption: str, columns: List[str],
           rows: List[Tuple[str, List[Optional[Dict[str, Any]]]]]
           ) -> Dict[str, Any]:
  return {'title': title, 'caption': caption, 'columns': columns,
          'rows': [{'label': label, 'cells': cells} for label, cells in rows]}


def _self_training_rows(groups, keys_for_init) -> list:
  rows = []
  for init in cells_lib.INITS:
    keys = keys_for_init(init)
    label = cells_lib.INIT_LABELS[init]
    rows.append((label, [_cell(groups, k, 'supervised') for k in keys]))
    rows.append((f'{label} + self-training',
                 [_cell(groups, k, 'student', with_gain=True) for k in keys]))
  return rows


def build(results: Sequence[Dict[str, Any]],
          ablation: Sequence[Dict[str, Any]] = ()) -> Dict[str, Any]:
  """The tables as data (what tables.json holds)."""
  groups = group(results)
  policies, fractions = list(cells_lib.POLICIES), list(cells_lib.FRACTIONS)
  full, s4 = cells_lib.FULL_DATA, cells_lib.TABLE3_POLICY
  by_policy = lambda init: [(p, full, init) for p in policies]
  by_fraction = lambda init: [(s4, f, init) for f in fractions]
  fraction_cols = [f'{f}%' for f in fractions]
  tables = {
      'table2': _table(
          'Table 2: supervised AP by augmentation and init (100% labels)',
          'Teacher of each cell = supervised training on the human labels.',
          policies, [(cells_lib.INIT_LABELS[i],
                      [_cell(groups, k, 'supervised') for k in by_policy(i)])
                     for i in cells_lib.INITS]),
      'table3': _table(
          f'Table 3: supervised AP by labeled fraction and init ({s4})',
          'Fraction of the labeled split used (its first N records).',
          fraction_cols,
          [(cells_lib.INIT_LABELS[i],
            [_cell(groups, k, 'supervised') for k in by_fraction(i)])
           for i in cells_lib.INITS]),
      'table4': _table(
          'Table 4: self-training over each augmentation (100% labels)',
          'Self-training rows: student AP (gain = student - supervised AP '
          'of the same init, policy and seed). Student: same init, policy '
          'and steps as the supervised run, normalized loss.',
          policies, _self_training_rows(groups, by_policy)),
      'table5': _table(
          f'Table 5: self-training by labeled fraction ({s4})',
          'As Table 4, over the labeled fraction.', fraction_cols,
          _self_training_rows(groups, by_fraction)),
  }
  return {'units': UNITS, 'spread': SPREAD,
          'multi_seed': any(s and s['n'] > 1 for g in groups.values()
                            for s in g.values()),
          'tables': tables, 'ablation': ablation_rows(ablation)}


def ablation_rows(ablation: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
  """The ablation table as data."""
  rows = []
  for r in ablation:
    stab = r.get('stability') or {}
    human = r.get('stability_human') or {}
    rows.append({
        'name': r['name'], 'combiner': r['combiner'],
        'pseudo_weight': r['pseudo_weight'], 'status': r.get('status'),
        'student_ap': (SCALE * r['student_ap'] if _ok(r.get('student_ap'))
                       else None),
        'teacher_ap': (SCALE * r['supervised_ap']
                       if _ok(r.get('supervised_ap')) else None),
        'first_loss': stab.get('first_loss'),
        'final_loss': stab.get('final_loss'),
        'max_spike_ratio': stab.get('max_spike_ratio'),
        'diverged': stab.get('diverged'), 'spiked': stab.get('spiked'),
        'spike_steps': stab.get('spike_steps', []),
        'human_first_loss': human.get('first_loss'),
        'human_final_loss': human.get('final_loss'),
        'human_diverged': human.get('diverged'),
        'human_spiked': human.get('spiked'),
        'final_pseudo_weight': r.get('final_pseudo_weight')})
  return {'title': 'Ablation: self-training loss on the S4 student '
                   '(100% labels, rand init, seed 0, shared teacher)',
          'caption': (f'{stability.DIVERGED_DEFINITION}; '
                      f'{stability.SPIKED_DEFINITION}. Logged loss = total '
                      'training loss averaged over each logging interval; '
                      'the L_h columns apply the same definitions to the '
                      'human loss alone, which is comparable across losses '
                      '(the normalized total is rescaled by m_h / m_p as '
                      'training goes). Final L_p weight = effective weight '
                      'of the pseudo loss at the last logged step.'),
          'rows': rows}


# ---------------------------------------------------------------- markdown ---
def _num(value: Optional[float], signed: bool = False, digits: int = 1) -> str:
  if value is None:
    return MISSING
  return f'{value:+.{digits}f}' if signed else f'{value:.{digits}f}'


def _stat_text(s: Optional[Dict[str, Any]], signed: bool = False) -> str:
  if s is None:
    return MISSING
  text = _num(s['mean'], signed)
  if s['spread'] is not None:
    text += f' ± {s["spread"]:.1f}'
  return text


def format_cell(cell: Optional[Dict[str, Any]], multi_seed: bool) -> str:
  """'36.0', '36.0 (+0.9)', '36.0 ± 0.3 (+0.9 ± 0.2) n=2' or '-'."""
  if cell is None:
    return MISSING
  text = _stat_text(cell['ap'])
  if 'gain' in cell:
    text += f' ({_stat_text(cell["gain"], signed=True)})'
  if multi_seed:
    text += f' n={cell["ap"]["n"]}'
  return text


def _markdown_table(table: Dict[str, Any], multi_seed: bool) -> List[str]:
  lines = [f'### {table["title"]}', '', f'_{table["caption"]}_', '',
           '| | ' + ' | '.join(table['columns']) + ' |',
           '|---|' + '---|' * len(table['columns'])]
  for row in table['rows']:
    lines.append(f'| {row["label"]} | ' + ' | '.join(
        format_cell(c, multi_seed) for c in row['cells']) + ' |')
  return lines + ['']


def _flag(value: Optional[bool]) -> str:
  return MISSING if value is None else ('yes' if value else 'no')


def _ablation_markdown(abl: Dict[str, Any]) -> List[str]:
  lines = [f'### {abl["title"]}', '', f'_{abl["caption"]}_', '',
           '| loss | a | student AP | teacher AP | first loss | final loss | '
           'max loss / window median | diverged | spiked | first L_h | '
           'final L_h | L_h diverged | L_h spiked | final L_p weight | '
           'status |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
  for r in abl['rows']:
    lines.append(
        f'| {r["combiner"]} | {r["pseudo_weight"]:g} | '
        f'{_num(r["student_ap"])} | {_num(r["teacher_ap"])} | '
        f'{_num(r["first_loss"], digits=3)} | '
        f'{_num(r["final_loss"], digits=3)} | '
        f'{_num(r["max_spike_ratio"], digits=2)} | {_flag(r["diverged"])} | '
        f'{_flag(r["spiked"])} | '
        f'{_num(r.get("human_first_loss"), digits=3)} | '
        f'{_num(r.get("human_final_loss"), digits=3)} | '
        f'{_flag(r.get("human_diverged"))} | '
        f'{_flag(r.get("human_spiked"))} | '
        f'{_num(r.get("final_pseudo_weight"), digits=2)} | {r["status"]} |')
  if not abl['rows']:
    lines.append('| (not run) |' + ' |' * 14)
  return lines + ['']


def _cells_markdown(results: Sequence[Dict[str, Any]]) -> List[str]:
  lines = ['### Cells', '',
           '_One self_train run each; AP x 100; wall = sum of the stage wall '
           'times (s)._', '',
           '| cell | status | supervised AP | self-trained AP | gain | '
           'pseudo boxes/image | wall s |', '|---|---|---|---|---|---|---|']
  for r in results:
    sup, stu = r.get('supervised_ap'), r.get('student_ap')
    lines.append(
        f'| {r["name"]} | {r["status"]} | '
        f'{_num(SCALE * sup if _ok(sup) else None)} | '
        f'{_num(SCALE * stu if _ok(stu) else None)} | '
        f'{_num(SCALE * r["gain"] if _ok(r.get("gain")) else None, True)} | '
        f'{_num(r.get("pseudo_boxes_per_image"), digits=2)} | '
        f'{_num(r.get("wall_seconds"), digits=0)} |')
  return lines + ['']


def to_markdown(tables: Dict[str, Any],
                results: Sequence[Dict[str, Any]] = ()) -> str:
  """tables.md: the paper's tables, the ablation, then every cell."""
  multi = tables['multi_seed']
  lines = ['# Pre-training vs self-training on DigitScenes detection', '',
           f'Values: {tables["units"]}.' + (
               f' With several seeds: mean ± spread, spread = '
               f'{tables["spread"]}; n = seeds with a complete cell.'
               if multi else ' One seed per cell.'), '']
  for key in ('table2', 'table3', 'table4', 'table5'):
    lines += _markdown_table(tables['tables'][key], multi)
  lines += _ablation_markdown(tables['ablation'])
  if results:
    lines += _cells_markdown(results)
  return '\n'.join(lines)
