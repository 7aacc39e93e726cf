"""The self-training report: `summary.json` and `summary.md` in model_dir.

`summary.json`::

  {"metric": "AP", "task": "detection",
   "teacher": {"value", "step", "metrics"[, "test_value", "test_metrics"]},
   "rounds": [{"round": 0, "mode": "offline" | "mean_teacher",
               "teacher": {"value", "step", "metrics"} | null,
               "student": {"value", "step", "metrics", "export_dir"},
               "gain": student - teacher | null, "test_gain",
               "pseudo_labels": {"images_in", "images_out", "labels",
                                 "labels_per_image", "quality", ...},
               mean teacher only: "ema_teacher": {"value", "step",
               "metrics", ...}, "ema_gain", "ema_test_gain"}],
   "baseline": {"value", "step", "metrics", "expected_steps",
                "steps_match", "student_minus_baseline",
                "test_student_minus_baseline"[,
                "ema_teacher_minus_baseline",
                "test_ema_teacher_minus_baseline"]} | null,
   "stages": [{"name": "round_0/teacher/train", "seconds", "status"}, ...],
   "total_seconds": float,
   "classes": {"<class id>": "<key>", ...}}

Every model entry (teacher, student, EMA teacher, baseline) also holds
"per_class": {"<key>": value} (and "test_per_class" with a test split):
detection: each category's COCO AP@[.5:.95] in [0, 1] (`'AP/<id>'` of
`eval_metrics.json`, only categories with ground truth), segmentation: each
class's IoU in [0, 1] (`'iou/<id>'`). The key is the class name (gin
`category_names`, the labeled records' metadata), the id as text where a
class has no name (' (id N)' appended where two classes would share one);
"classes" maps the ids to these keys. `summary.md` shows them as one table
(classes as rows, models as columns; val only).

Metric values are those of `eval_metrics.json` (COCO AP in [0, 1], mIoU in
[0, 1]); `value` is on val, `test_value` on the held-out test split (when
`self_train.test_dataset` is set); `labels` counts pseudo boxes (detection)
or pixels (segmentation). A mean-teacher round has no pseudo-label records:
its `pseudo_labels` holds the last training epoch's online means
(`online.pseudo_label_stats`; image and label totals are null);
`seconds` is the wall time of the run that produced the stage's output and
`status` says whether this run 'ran' or 'skipped' it.
"""
from __future__ import annotations

import os
import collections
import functools
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from st_tf import atomic_io
from st_tf import tasks
from st_tf.data import metadata as metadata_lib
from st_tf.self_train import stages

JSON_FILE = 'summary.json'
MARKDOWN_FILE = 'summary.md'

# Per task (`st_tf.tasks`): what `labels` counts (`Task.label_unit`) and
# the per-class metric of `eval_metrics.json` (`Task.per_class`: key
# prefix, name, what the per-class table's title adds).
# The model entries of a round.
_ROUND_MODELS = ('teacher', 'student', 'ema_teacher')


def model_entry(record: Optional[Dict[str, Any]], metric: str
                ) -> Optional[Dict[str, Any]]:
  """An eval record -> {'value', 'step', 'metrics'} (+ 'test_value',
  'test_metrics' when the record holds a test-split evaluation)."""
  if record is None:
    return None
  entry = {'value': float(record['metrics'][metric]),
           'step': int(record['step']), 'metrics': record['metrics']}
  if 'test' in record:
    entry.update(test_value=float(record['test']['metrics'][metric]),
                 test_metrics=record['test']['metrics'])
  return entry



def _difference(a: Optional[Dict[str, Any]], b: Optional[Dict[str, Any]],
                key: str) -> Optional[float]:
  if a is None or b is None or key not in a or key not in b:
    return None
  return a[key] - b[key]


def round_entry(index: int, teacher_record: Optional[Dict[str, Any]],
                student_record: Dict[str, Any], metric: str,
                pseudo_stats: Dict[str, Any], student_step: int,
                export_dir: Optional[str], mode: str = 'offline',
                extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  """One round: teacher / student eval records -> values and the gain.

  `mode` is the student's ('offline', 'mean_teacher'); `extra` adds entries
  (the mean teacher's 'ema_teacher': `model_entry` of its EMA teacher, with
  its gain over the round's teacher as 'ema_gain' / 'ema_test_gain').
  """
  teacher = model_entry(teacher_record, metric)
  student = dict(model_entry(student_record, metric), step=int(student_step),
                 export_dir=export_dir)
  entry = {'round': index, 'mode': mode, 'teacher': teacher,
           'student': student,
           'gain': _difference(student, teacher, 'value'),
           'test_gain': _difference(student, teacher, 'test_value'),
           'pseudo_labels': pseudo_stats}
  entry.update(extra or {})
  if entry.get('ema_teacher') is not None:
    entry['ema_gain'] = _difference(entry['ema_teacher'], teacher, 'value')
    entry['ema_test_gain'] = _difference(entry['ema_teacher'], teacher,
                                         'test_value')
  return entry


def baseline_entry(record: Dict[str, Any], metric: str, step: int,
                   expected_steps: Optional[int],
                   final_student: Optional[Dict[str, Any]],
                   final_ema_teacher: Optional[Dict[str, Any]] = None
                   ) -> Dict[str, Any]:
  """The supervised baseline and its comparison with the final student
  (None when the run trained no student) and, for a mean-teacher student,
  its EMA teacher (`ema_teacher_minus_baseline`, test too)."""
  entry = model_entry(record, metric)
  entry.update(step=int(step), expected_steps=expected_steps,
               steps_match=(None if expected_steps is None
                            else int(step) == int(expected_steps)),
               student_minus_baseline=_difference(final_student, entry,
                                                  'value'),
               test_student_minus_baseline=_difference(final_student, entry,
                                                       'test_value'))
  if final_ema_teacher is not None:
    entry.update(
        ema_teacher_minus_baseline=_difference(final_ema_teacher, entry,
                                               'value'),
        test_ema_teacher_minus_baseline=_difference(final_ema_teacher, entry,
                                                    'test_value'))
  return entry


def class_values(metrics: Optional[Mapping[str, float]], prefix: str
                 ) -> Dict[int, float]:
  """{class id: value} of the entries '<prefix><class id>' of `metrics`."""
  out = {}
  for key, value in (metrics or {}).items():
    if key.startswith(prefix) and key[len(prefix):].isdigit():
      out[int(key[len(prefix):])] = float(value)
  return out


def class_keys(ids: Iterable[int], names: Optional[Mapping[int, str]]
               ) -> Dict[int, str]:
  """{class id: key}: its name (`metadata.display_name`: the id as text
  without one); a key two classes would share gets ' (id N)' appended."""
  base = {int(i): metadata_lib.display_name(i, names) for i in ids}
  counts = collections.Counter(base.values())
  return {i: key if counts[key] == 1 else f'{key} (id {i})'
          for i, key in sorted(base.items())}


def _model_entries(summary: Dict[str, Any]) -> List[Dict[str, Any]]:
  """Every model entry of the summary (round teachers included)."""
  entries = [summary['teacher'], summary['baseline']]
  entries += [r.get(k) for r in summary['rounds'] for k in _ROUND_MODELS]
  return [e for e in entries if e is not None]


def _with_per_class(entry: Optional[Dict[str, Any]], prefix: str,
                    keys: Dict[int, str]) -> Optional[Dict[str, Any]]:
  """`entry` + 'per_class' (+ 'test_per_class'): {key: value}."""
  if entry is None:
    return None
  out = dict(entry)
  for field, metrics in (('per_class', 'metrics'),
                         ('test_per_class', 'test_metrics')):
    if metrics in entry:
      values = class_values(entry[metrics], prefix)
      out[field] = {keys[i]: v for i, v in sorted(values.items())}
  return out


def add_per_class(summary: Dict[str, Any],
                  category_names: Optional[Mapping[int, str]]
                  ) -> Dict[str, Any]:
  """The summary with 'classes' and every model's 'per_class' (see the
  module docstring); `category_names`: {class id: name} or None."""
  prefix = tasks.get(summary['task']).per_class()[0]
  ids = set()
  for entry in _model_entries(summary):
    for metrics in (entry.get('metrics'), entry.get('test_metrics')):
      ids.update(class_values(metrics, prefix))
  keys = class_keys(ids, category_names)
  add = functools.partial(_with_per_class, prefix=prefix, keys=keys)
  return dict(summary, teacher=add(summary['teacher']),
              baseline=add(summary['baseline']),
              rounds=[dict(r, **{k: add(r[k]) for k in _ROUND_MODELS
                                 if k in r}) for r in summary['rounds']],
              classes={str(i): key for i, key in keys.items()})


def build(metric: str, rounds: List[Dict[str, Any]],
          baseline: Optional[Dict[str, Any]],
          stage_table: List[Dict[str, Any]],
          teacher: Optional[Dict[str, Any]] = None,
          category_names: Optional[Mapping[int, str]] = None
          ) -> Dict[str, Any]:
  """The summary dict (see the module docstring); `category_names`
  ({class id: name}) names the per-class values."""
  task = (rounds[0]['pseudo_labels'].get('task') if rounds else None) or (
      tasks.for_metric(metric).name)
  return add_per_class(
      {'metric': metric, 'task': task, 'teacher': teacher,
       'rounds': rounds, 'baseline': baseline, 'stages': stage_table,
       'total_seconds': round(sum(s.get('seconds', 0.0)
                                  for s in stage_table), 2)},
      category_names)


def _fmt(value: Optional[float], signed: bool = False) -> str:
  if value is None:
    return 'n/a'
  return f'{value:+.4f}' if signed else f'{value:.4f}'


def _count(value: Any) -> str:
  return 'n/a' if value is None else str(value)


def _images(pseudo: Dict[str, Any]) -> str:
  """'out/in' pseudo-labeled images ('n/a': an online student's)."""
  if pseudo.get('images_in') is None:
    return 'n/a'
  return f'{pseudo.get("images_out")}/{pseudo["images_in"]}'


def _per_image(value: Optional[float]) -> str:
  return 'n/a' if value is None else f'{value:.2f}'


def _test(entry: Optional[Dict[str, Any]]) -> str:
  return _fmt(entry.get('test_value')) if entry else 'n/a'


def _round_row(r: Dict[str, Any]) -> str:
  """One row of the rounds table (online students: no pseudo records)."""
  teacher, student, pseudo = r['teacher'], r['student'], r['pseudo_labels']
  return (f'| {r["round"]} | {_fmt(teacher and teacher["value"])} | '
          f'{_fmt(student["value"])} | {_fmt(r["gain"], signed=True)} | '
          f'{_images(pseudo)} | '
          f'{_count(pseudo.get("labels"))} | '
          f'{_per_image(pseudo.get("labels_per_image"))} | '
          f'{teacher["step"] if teacher else "n/a"} | {student["step"]} | '
          f'{_test(teacher)} | {_test(student)} | '
          f'{_fmt(r.get("test_gain"), signed=True)} | '
          f'{r.get("mode", "offline")} |')


def _quality(pseudo: Dict[str, Any]) -> Dict[str, Any]:
  """The quality row at the threshold used (online students have one)."""
  quality = pseudo.get('quality') or {}
  return next(iter(quality.values())) if len(quality) == 1 else {}


def _mean_teacher_lines(summary: Dict[str, Any]) -> List[str]:
  """The EMA teachers' table (empty without a mean-teacher round)."""
  rows = [r for r in summary['rounds'] if r.get('ema_teacher') is not None]
  if not rows:
    return []
  metric, unit = summary['metric'], tasks.get(summary['task']).label_unit
  lines = ['', '## Mean teacher: the EMA teacher and its online pseudo '
           'labels (last epoch)', '',
           f'| round | EMA teacher {metric} | gain over round teacher | '
           f'EMA teacher test | student {metric} | pseudo {unit}/image | '
           'pseudo loss | precision | recall |',
           '|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    ema, pseudo = r['ema_teacher'], r['pseudo_labels']
    quality = _quality(pseudo)
    lines.append(
        f'| {r["round"]} | {_fmt(ema["value"])} | '
        f'{_fmt(r.get("ema_gain"), signed=True)} | {_test(ema)} | '
        f'{_fmt(r["student"]["value"])} | '
        f'{_per_image(pseudo.get("labels_per_image"))} | '
        f'{_fmt(pseudo.get("pseudo_loss"))} | '
        f'{_fmt(quality.get("precision"))} | {_fmt(quality.get("recall"))} |')
  return lines


def _baseline_lines(base: Dict[str, Any], metric: str) -> List[str]:
  match = {True: '', False: ' (MISMATCH: expected '
                            f'{base["expected_steps"]})',
           None: ''}[base['steps_match']]
  ema = 'ema_teacher_minus_baseline' in base
  lines = ['', '## Supervised baseline (human labels only, student '
           'augmentation)', '',
           f'| baseline {metric} | steps | final student - baseline | '
           f'baseline test {metric} | test: student - baseline |' +
           (' EMA teacher - baseline | test: EMA teacher - baseline |'
            if ema else ''),
           '|---|---|---|---|---|' + ('---|---|' if ema else ''),
           f'| {_fmt(base["value"])} | {base["step"]}{match} | '
           f'{_fmt(base["student_minus_baseline"], signed=True)} | '
           f'{_test(base)} | '
           f'{_fmt(base.get("test_student_minus_baseline"), signed=True)} |']
  if ema:
    lines[-1] += (
        f' {_fmt(base["ema_teacher_minus_baseline"], signed=True)} | '
        f'{_fmt(base.get("test_ema_teacher_minus_baseline"), signed=True)} |')
  return lines


def _table_models(summary: Dict[str, Any]
                  ) -> List[Tuple[str, Dict[str, Any]]]:
  """(column, entry) of each evaluated model once: the first teacher, each
  round's student (and EMA teacher), the baseline."""
  columns = [('teacher', summary['teacher'])]
  for r in summary['rounds']:
    columns.append((f'round {r["round"]} student', r['student']))
    columns.append((f'round {r["round"]} EMA teacher', r.get('ema_teacher')))
  columns.append(('baseline', summary['baseline']))
  return [(name, e) for name, e in columns
          if e is not None and e.get('per_class')]


def _per_class_lines(summary: Dict[str, Any]) -> List[str]:
  """The per-class table on val (empty when no model has per-class
  values, e.g. eval records written before they existed)."""
  models = _table_models(summary)
  classes = summary.get('classes') or {}
  if not models or not classes:
    return []
  _, name, what = tasks.get(summary['task']).per_class()
  lines = ['', f'## Per-class {name} (val{what})', '',
           '| id | class | ' + ' | '.join(m for m, _ in models) + ' |',
           '|---|---|' + '---|' * len(models)]
  for class_id, key in classes.items():
    cells = [_fmt(e['per_class'].get(key)) for _, e in models]
    lines.append(f'| {class_id} | {key} | ' + ' | '.join(cells) + ' |')
  return lines


def to_markdown(summary: Dict[str, Any]) -> str:
  """The report as Markdown tables (test columns read 'n/a' without one)."""
  metric, unit = summary['metric'], tasks.get(summary['task']).label_unit
  lines = [f'# Self-training summary ({summary["task"]}, {metric}: val, '
           'and test where evaluated)', '',
           f'| round | teacher {metric} | student {metric} | gain | '
           f'pseudo images | pseudo {unit} kept | {unit}/image | '
           'teacher step | student step | teacher test | student test | '
           'test gain | student |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|---|']
  lines += [_round_row(r) for r in summary['rounds']]
  lines += _mean_teacher_lines(summary)
  if summary['baseline'] is not None:
    lines += _baseline_lines(summary['baseline'], metric)
  lines += _per_class_lines(summary)
  lines += ['', '## Wall time per stage', '', '| stage | seconds | this run |',
            '|---|---|---|']
  for stage in summary['stages']:
    lines.append(f'| {stage["name"]} | {stage.get("seconds", 0.0):.1f} | '
                 f'{stage["status"]} |')
  lines.append(f'| total | {summary["total_seconds"]:.1f} | |')
  return '\n'.join(lines) + '\n'


def write(model_dir: str, summary: Dict[str, Any]) -> str:
  """Writes summary.json and summary.md; returns the Markdown."""
  stages.write_json(os.path.join(model_dir, JSON_FILE), summary)
  markdown = to_markdown(summary)
  atomic_io.write_text(os.path.join(model_dir, MARKDOWN_FILE), markdown)
  return markdown
