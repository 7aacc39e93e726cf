"""The self-training report: `summary.json` and `summary.md` in model_dir.

`summary.json`::

  {"metric": "AP", "task": "detection",
   "rounds": [{"round": 0,
               "teacher": {"value", "step", "metrics"} | null,
               "student": {"value", "step", "metrics", "export_dir"},
               "gain": student - teacher | null,
               "pseudo_labels": {"images_in", "images_out", "labels",
                                 "labels_per_image", "quality", ...}}],
   "baseline": {"value", "step", "metrics", "expected_steps",
                "steps_match", "student_minus_baseline"} | null,
   "stages": [{"name": "round_0/teacher/train", "seconds", "status"}, ...],
   "total_seconds": float}

Metric values are those of `eval_metrics.json` (COCO AP in [0, 1], mIoU in
[0, 1]); `labels` counts pseudo boxes (detection) or pixels (segmentation);
`seconds` is the wall time of the run that produced the stage's output and
`status` says whether this run 'ran' or 'skipped' it.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from st_tf import atomic_io
from st_tf.self_train import stages

JSON_FILE = 'summary.json'
MARKDOWN_FILE = 'summary.md'

# What `labels` counts, per task.
LABEL_UNITS = {'detection': 'boxes', 'segmentation': 'pixels'}


def _model(record: Optional[Dict[str, Any]], metric: str
           ) -> Optional[Dict[str, Any]]:
  if record is None:
    return None
  return {'value': float(record['metrics'][metric]),
          'step': int(record['step']), 'metrics': record['metrics']}


def round_entry(index: int, teacher_record: Optional[Dict[str, Any]],
                student_record: Dict[str, Any], metric: str,
                pseudo_stats: Dict[str, Any], student_step: int,
                export_dir: Optional[str]) -> Dict[str, Any]:
  """One round: teacher / student eval records -> values and the gain."""
  teacher = _model(teacher_record, metric)
  student = dict(_model(student_record, metric), step=int(student_step),
                 export_dir=export_dir)
  return {'round': index, 'teacher': teacher, 'student': student,
          'gain': (None if teacher is None
                   else student['value'] - teacher['value']),
          'pseudo_labels': pseudo_stats}


def baseline_entry(record: Dict[str, Any], metric: str, step: int,
                   expected_steps: Optional[int],
                   final_student_value: float) -> Dict[str, Any]:
  """The supervised baseline and its comparison with the final student."""
  entry = _model(record, metric)
  entry.update(step=int(step), expected_steps=expected_steps,
               steps_match=(None if expected_steps is None
                            else int(step) == int(expected_steps)),
               student_minus_baseline=final_student_value - entry['value'])
  return entry


def build(metric: str, rounds: List[Dict[str, Any]],
          baseline: Optional[Dict[str, Any]],
          stage_table: List[Dict[str, Any]]) -> Dict[str, Any]:
  """The summary dict (see the module docstring)."""
  return {'metric': metric, 'task': rounds[0]['pseudo_labels']['task'],
          'rounds': rounds, 'baseline': baseline, 'stages': stage_table,
          'total_seconds': round(sum(s.get('seconds', 0.0)
                                     for s in stage_table), 2)}


def _fmt(value: Optional[float], signed: bool = False) -> str:
  if value is None:
    return 'n/a'
  return f'{value:+.4f}' if signed else f'{value:.4f}'


def to_markdown(summary: Dict[str, Any]) -> str:
  """The report as Markdown tables."""
  metric, unit = summary['metric'], LABEL_UNITS[summary['task']]
  lines = [f'# Self-training summary ({summary["task"]}, val {metric})', '',
           f'| round | teacher {metric} | student {metric} | gain | '
           f'pseudo images | pseudo {unit} kept | {unit}/image | '
           'teacher step | student step |',
           '|---|---|---|---|---|---|---|---|---|']
  for r in summary['rounds']:
    teacher, student, pseudo = r['teacher'], r['student'], r['pseudo_labels']
    lines.append(
        f'| {r["round"]} | {_fmt(teacher and teacher["value"])} | '
        f'{_fmt(student["value"])} | {_fmt(r["gain"], signed=True)} | '
        f'{pseudo["images_out"]}/{pseudo["images_in"]} | {pseudo["labels"]} | '
        f'{pseudo["labels_per_image"]:.2f} | '
        f'{teacher["step"] if teacher else "n/a"} | {student["step"]} |')
  base = summary['baseline']
  if base is not None:
    match = {True: '', False: ' (MISMATCH: expected '
                              f'{base["expected_steps"]})',
             None: ''}[base['steps_match']]
    lines += ['', '## Supervised baseline (human labels only, student '
              'augmentation)', '',
              f'| baseline {metric} | steps | final student - baseline |',
              '|---|---|---|',
              f'| {_fmt(base["value"])} | {base["step"]}{match} | '
              f'{_fmt(base["student_minus_baseline"], signed=True)} |']
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
