"""Running one study cell as a subprocess, resumably, and reading its result.

A cell is complete when its `summary.json` (written by self_train at its
end) holds the student's metric: it is then never rerun. Otherwise the
subprocess is started; self_train skips the stages that are already
complete (stages.py), so a half-finished cell resumes where it stopped.

Files a cell adds to its model_dir (besides self_train's own):
  cell.json     the cell and the exact argv it runs with
  command.txt   the same command as a copy-pasteable shell line
  log.txt       stdout + stderr of every attempt, appended

A cell folder whose `cell.json` records different arguments (e.g. another
--steps) is not reused: the cell fails with a message (mixing stages of two
configs would be silently wrong); use a new --output_dir.

The subprocess launcher is injectable (`Runner`) so tests can fake it.
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import math
import os
import subprocess
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from experiments.study import commands
from experiments.study import files

CELL_FILE = 'cell.json'
COMMAND_FILE = 'command.txt'
LOG_FILE = 'log.txt'
SUMMARY_FILE = 'summary.json'
STAGES_FILE = 'stages.json'
ERROR_TAIL_LINES = 25

# (argv, log_path, cwd) -> exit code.
Runner = Callable[[Sequence[str], str, str], int]

COMPLETE, FAILED, NOT_RUN, INCOMPLETE = ('complete', 'failed', 'not_run',
                                         'incomplete')


class _StageWatcher:
  """Prints each self_train stage as it completes (from stages.json)."""

  def __init__(self, model_dir: str, print_fn: Callable[[str], Any]):
    self._path = os.path.join(model_dir, STAGES_FILE)
    self._print = print_fn
    self._seen = set(self._read())

  def _read(self) -> Dict[str, Any]:
    try:
      return files.read_json(self._path)
    except (OSError, ValueError):
      return {}

  def poll(self) -> None:
    for name, rec in self._read().items():
      if name not in self._seen:
        self._seen.add(name)
        self._print(f'    stage {name} done in '
                    f'{float(rec.get("seconds", 0.0)):.0f} s')


def subprocess_runner(argv: Sequence[str], log_path: str, cwd: str,
                      poll_seconds: float = 10.0) -> int:
  """Runs `argv` in `cwd`, appending its stdout and stderr to `log_path`.

  While it runs, prints each self_train stage of the log's folder as it
  completes. The child is killed if this process is interrupted.
  """
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  watcher = _StageWatcher(os.path.dirname(log_path),
                          functools.partial(print, flush=True))
  with open(log_path, 'a') as log:
    log.write(f'\n==== {datetime.datetime.now().isoformat(timespec="seconds")}'
              f' {commands.shell_line(argv)}\n')
    log.flush()
    proc = subprocess.Popen(list(argv), cwd=cwd, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
      while True:
        try:
          code = proc.wait(timeout=poll_seconds)
          watcher.poll()
          return code
        except subprocess.TimeoutExpired:
          watcher.poll()
    except BaseException:
      proc.kill()
      proc.wait()
      raise


@dataclasses.dataclass
class CellSpec:
  """A runnable cell: its name, folder, argv and descriptive fields.

  `meta` goes into the result record as is (policy, fraction, init, seed,
  or the ablation's combiner and a).
  """
  name: str
  model_dir: str
  argv: List[str]
  meta: Dict[str, Any] = dataclasses.field(default_factory=dict)


def _finite(value: Any) -> Optional[float]:
  if value is None:
    return None
  value = float(value)
  return value if math.isfinite(value) else None


def read_summary(model_dir: str) -> Optional[Dict[str, Any]]:
  """The cell's summary.json, or None when missing or unreadable."""
  path = os.path.join(model_dir, SUMMARY_FILE)
  if not os.path.exists(path):
    return None
  try:
    return files.read_json(path)
  except (OSError, ValueError):
    return None


def is_complete(model_dir: str) -> bool:
  """summary.json exists and holds the student's metric value."""
  summary = read_summary(model_dir)
  try:
    return summary['rounds'][0]['student']['value'] is not None
  except (TypeError, KeyError, IndexError):
    return False


def stage_seconds(model_dir: str) -> Dict[str, float]:
  """Wall seconds per self_train stage (stages.json; {} when none ran)."""
  path = os.path.join(model_dir, STAGES_FILE)
  if not os.path.exists(path):
    return {}
  return {name: float(rec.get('seconds', 0.0))
          for name, rec in files.read_json(path).items()}


def read_result(model_dir: str) -> Dict[str, Any]:
  """Metrics of a complete cell from its summary.json.

  Returns:
    supervised_ap (the teacher's val AP, in [0, 1]), student_ap, gain
    (student - supervised), pseudo_boxes_per_image (boxes kept per
    unlabeled image), teacher_step, student_step, wall_seconds (sum of the
    stage wall times, over every attempt that produced them), stages.
  """
  summary = read_summary(model_dir)
  first = summary['rounds'][0]
  teacher, student = first.get('teacher'), first['student']
  supervised = _finite(teacher['value']) if teacher else None
  student_ap = _finite(student['value'])
  return {
      'supervised_ap': supervised,
      'student_ap': student_ap,
      'gain': (None if supervised is None or student_ap is None
               else student_ap - supervised),
      'pseudo_boxes_per_image': _finite(
          first['pseudo_labels'].get('labels_per_image')),
      'teacher_step': teacher['step'] if teacher else None,
      'student_step': student.get('step'),
      'wall_seconds': float(summary.get('total_seconds', 0.0)),
      'stages': stage_seconds(model_dir),
  }


def _base_record(spec: CellSpec) -> Dict[str, Any]:
  return dict(spec.meta, name=spec.name, model_dir=spec.model_dir,
              command=commands.shell_line(spec.argv), status=NOT_RUN,
              supervised_ap=None, student_ap=None, gain=None,
              pseudo_boxes_per_image=None, wall_seconds=None,
              run_seconds=0.0, ran=False, error=None)


def _recorded_args(model_dir: str) -> Optional[List[str]]:
  path = os.path.join(model_dir, CELL_FILE)
  if not os.path.exists(path):
    return None
  return files.read_json(path).get('args')


def _config_error(spec: CellSpec) -> Optional[str]:
  recorded = _recorded_args(spec.model_dir)
  if recorded is None or recorded == list(spec.argv[1:]):
    return None
  return (f'{spec.model_dir} was run with other arguments (see its '
          f'{CELL_FILE}); not reusing it. Delete the folder or use another '
          '--output_dir.')


def status_record(spec: CellSpec) -> Dict[str, Any]:
  """The cell's state on disk, without running anything."""
  record = _base_record(spec)
  error = _config_error(spec)
  if error is not None:
    record.update(status=FAILED, error=error)
  elif is_complete(spec.model_dir):
    record.update(read_result(spec.model_dir), status=COMPLETE)
  elif os.path.isdir(spec.model_dir):
    record.update(status=INCOMPLETE, stages=stage_seconds(spec.model_dir))
  return record


def log_tail(path: str, offset: int = 0,
             lines: int = ERROR_TAIL_LINES) -> str:
  """The last `lines` lines written to `path` after byte `offset`."""
  if not os.path.exists(path):
    return ''
  with open(path, 'rb') as f:
    f.seek(offset)
    text = f.read().decode('utf-8', errors='replace')
  return '\n'.join(text.rstrip().splitlines()[-lines:])


def run_logged(argv: Sequence[str], model_dir: str, runner: Runner,
               cwd: str = commands.REPO_ROOT
               ) -> Tuple[Optional[str], float, str]:
  """Writes command.txt, runs `argv` with its output in model_dir/log.txt.

  Returns:
    (failure: None on exit code 0, else 'exit code N' or the launch error;
     wall seconds; the tail of this attempt's log).
  """
  os.makedirs(model_dir, exist_ok=True)
  files.write_text(os.path.join(model_dir, COMMAND_FILE),
                   f'cd {commands.shell_line([cwd])} && '
                   f'{commands.shell_line(argv)}\n')
  log_path = os.path.join(model_dir, LOG_FILE)
  offset = os.path.getsize(log_path) if os.path.exists(log_path) else 0
  start = time.time()
  try:
    code = runner(argv, log_path, cwd)
    failure = None if code == 0 else f'exit code {code}'
  except OSError as e:  # e.g. the interpreter cannot be started
    failure = f'{type(e).__name__}: {e}'
  return failure, round(time.time() - start, 2), log_tail(log_path, offset)


def run_cell(spec: CellSpec, runner: Runner = subprocess_runner,
             cwd: str = commands.REPO_ROOT) -> Dict[str, Any]:
  """Runs `spec` unless complete; returns its result record.

  The record holds `spec.meta`, name, model_dir, command, status
  ('complete' or 'failed'), ran (whether a subprocess ran now),
  run_seconds (its wall time), error (exit code + log tail, or None) and,
  when complete, the `read_result` fields.
  """
  record = status_record(spec)
  if record['status'] in (COMPLETE, FAILED):
    return record
  os.makedirs(spec.model_dir, exist_ok=True)
  files.write_json(os.path.join(spec.model_dir, CELL_FILE),
                   dict(spec.meta, name=spec.name, args=list(spec.argv[1:]),
                        argv=list(spec.argv)))
  failure, seconds, tail = run_logged(spec.argv, spec.model_dir, runner, cwd)
  record = status_record(spec)
  record.update(ran=True, run_seconds=seconds)
  if failure is None and record['status'] == COMPLETE:
    return record
  failure = failure or 'exited 0 but summary.json has no student metric'
  record.update(status=FAILED, wall_seconds=seconds,
                error=failure + (f'\n{tail}' if tail else ''))
  return record
