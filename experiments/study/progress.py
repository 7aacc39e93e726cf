"""Progress lines for the study: per cell start / end, wall time, AP, ETA.

The ETA is the mean wall time of the cells run so far in this invocation
times the cells still to run (complete cells are skipped and not counted);
unknown until one cell has run.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional


def format_seconds(seconds: Optional[float]) -> str:
  """'1h02m', '5m07s', '42s' or '?'."""
  if seconds is None:
    return '?'
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  if hours:
    return f'{hours}h{minutes:02d}m'
  if minutes:
    return f'{minutes}m{secs:02d}s'
  return f'{secs}s'


def _ap(value: Optional[float]) -> str:
  return 'n/a' if value is None else f'{value:.3f}'


class Progress:
  """Prints one line when a cell starts and one when it ends."""

  def __init__(self, to_run: int, print_fn: Callable[[str], Any] = print):
    self.to_run = to_run
    self.done = 0
    self.durations: List[float] = []
    self._print = print_fn
    self._start = time.time()

  def eta(self) -> Optional[float]:
    if not self.durations:
      return None
    return (sum(self.durations) / len(self.durations) *
            max(self.to_run - self.done, 0))

  def skip(self, name: str, record: Dict[str, Any]) -> None:
    self._print(f'[skip] {name}: {record["status"]} (supervised AP '
                f'{_ap(record.get("supervised_ap"))}, self-trained AP '
                f'{_ap(record.get("student_ap"))})')

  def start(self, name: str) -> None:
    self._print(f'[{self.done + 1}/{self.to_run}] {name}: start '
                f'({time.strftime("%H:%M:%S")}; grid ETA '
                f'{format_seconds(self.eta())})')

  def end(self, name: str, record: Dict[str, Any]) -> None:
    self.done += 1
    seconds = float(record.get('run_seconds') or 0.0)
    self.durations.append(seconds)
    if record['status'] == 'complete':
      gain = record.get('gain')
      result = (f'supervised AP {_ap(record.get("supervised_ap"))}, '
                f'self-trained AP {_ap(record.get("student_ap"))}'
                + ('' if gain is None else f' ({gain:+.3f})'))
    else:
      first = (record.get('error') or '').splitlines()[:1]
      result = 'FAILED: ' + (first[0] if first else 'unknown error')
    self._print(f'[{self.done}/{self.to_run}] {name}: {result}; '
                f'{format_seconds(seconds)}; ETA '
                f'{format_seconds(self.eta())}')
