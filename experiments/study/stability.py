"""Did a training run diverge or spike? Read from its `train_log.csv`.

Definitions (also printed under the ablation table), on the logged total
training loss (`loss` column: mean over each logging interval, see
st_tf/training/loss_log.py):

* diverged: some logged loss is non-finite (NaN / inf), or the final logged
  loss is greater than the first logged loss.
* spiked: some logged loss is greater than `SPIKE_FACTOR` (3) times the
  median of the finite logged losses of the preceding `SPIKE_WINDOW` (100)
  steps, i.e. rows with step in [s - 100, s), when that window holds at
  least `MIN_WINDOW_ROWS` (3) rows. A non-finite loss after finite ones
  counts as a spike too.
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Dict, List, Sequence

SPIKE_FACTOR = 3.0
SPIKE_WINDOW = 100  # steps
MIN_WINDOW_ROWS = 3

DIVERGED_DEFINITION = ('diverged: a logged training loss is non-finite, or '
                       'the final logged loss exceeds the first')
SPIKED_DEFINITION = (f'spiked: a logged training loss exceeds '
                     f'{SPIKE_FACTOR:g}x the median of the logged losses of '
                     f'the preceding {SPIKE_WINDOW} steps (at least '
                     f'{MIN_WINDOW_ROWS} rows), or turns non-finite')


def analyze(rows: Sequence[Dict[str, float]], column: str = 'loss'
            ) -> Dict[str, Any]:
  """Divergence and spikes of a loss log.

  Args:
    rows: `loss_log.read_log` rows (dicts with 'step' and `column`), any
      order.
    column: the logged quantity to judge: 'loss' (the total loss that was
      minimised) or 'human_loss' (L_h, which means the same thing under
      every combiner: the `normalized` total is rescaled by m_h / m_p as
      training goes, so its level is not comparable across runs).

  Returns:
    {'num_rows', 'first_loss', 'final_loss', 'non_finite' (bool),
     'diverged' (bool or None without rows), 'spiked' (bool or None),
     'max_spike_ratio' (largest loss / preceding-window median, None when no
     window qualified), 'spike_steps' (steps flagged, first 20)}.
  """
  rows = sorted((r for r in rows if column in r), key=lambda r: r['step'])
  if not rows:
    return {'num_rows': 0, 'first_loss': None, 'final_loss': None,
            'non_finite': False, 'diverged': None, 'spiked': None,
            'max_spike_ratio': None, 'spike_steps': []}
  losses = [float(r[column]) for r in rows]
  steps = [int(r['step']) for r in rows]
  non_finite = not all(math.isfinite(v) for v in losses)
  first, final = losses[0], losses[-1]
  diverged = non_finite or final > first
  spike_steps: List[int] = []
  max_ratio = None
  for i, (step, loss) in enumerate(zip(steps, losses)):
    window = [v for s, v in zip(steps[:i], losses[:i])
              if step - SPIKE_WINDOW <= s < step and math.isfinite(v)]
    if len(window) < MIN_WINDOW_ROWS:
      continue
    median = statistics.median(window)
    if not math.isfinite(loss):
      spike_steps.append(step)
      continue
    if median > 0:
      ratio = loss / median
      max_ratio = ratio if max_ratio is None else max(max_ratio, ratio)
      if ratio > SPIKE_FACTOR:
        spike_steps.append(step)
  return {'num_rows': len(rows),
          'first_loss': first if math.isfinite(first) else None,
          'final_loss': final if math.isfinite(final) else None,
          'non_finite': non_finite, 'diverged': diverged,
          'spiked': bool(spike_steps), 'max_spike_ratio': max_ratio,
          'spike_steps': spike_steps[:20]}
