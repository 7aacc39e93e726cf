"""`ap_vs_fraction.png`: AP vs labeled fraction (S4), four lines.

Lines: Rand Init, Pre-trained (supervised), Rand Init + self-training,
Pre-trained + self-training. AP x 100 on DigitScenes val; a point is the
mean over seeds, error bars the sample standard deviation when n >= 2.
Missing cells leave gaps. Matplotlib with the Agg backend (no display).
"""
from __future__ import annotations

import io
import os
from typing import Any, Dict, Sequence

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from experiments.study import cells as cells_lib
from experiments.study import tables as tables_lib
from st_tf import atomic_io

_LINES = (('rand', 'supervised', 'Rand Init', 'tab:blue', '--'),
          ('pretrained', 'supervised', 'Pre-trained', 'tab:orange', '--'),
          ('rand', 'student', 'Rand Init + self-training', 'tab:blue', '-'),
          ('pretrained', 'student', 'Pre-trained + self-training',
           'tab:orange', '-'))


def series(results: Sequence[Dict[str, Any]]) -> Dict[str, Dict[str, list]]:
  """{line label: {'fraction', 'mean', 'spread'}} of the S4 cells."""
  groups = tables_lib.group(results)
  out = {}
  for init, metric, label, _, _ in _LINES:
    points = {'fraction': [], 'mean': [], 'spread': []}
    for f in cells_lib.FRACTIONS:
      entry = groups.get((cells_lib.TABLE3_POLICY, f, init))
      s = entry and entry[metric]
      if s:
        points['fraction'].append(f)
        points['mean'].append(s['mean'])
        points['spread'].append(s['spread'] or 0.0)
    out[label] = points
  return out


def plot_ap_vs_fraction(results: Sequence[Dict[str, Any]], path: str) -> None:
  """Writes the PNG atomically to `path`."""
  data = series(results)
  fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
  try:
    drawn = 0
    for _, _, label, color, style in _LINES:
      points = data[label]
      if not points['fraction']:
        continue
      ax.errorbar(points['fraction'], points['mean'], yerr=points['spread'],
                  label=label, color=color, linestyle=style, marker='o',
                  capsize=3)
      drawn += 1
    ax.set_xlabel('labeled data used (% of the labeled split)')
    ax.set_ylabel('val AP x 100')
    ax.set_title(f'DigitScenes detection, {cells_lib.TABLE3_POLICY}: '
                 'AP vs labeled data')
    ax.set_xticks(list(cells_lib.FRACTIONS))
    ax.grid(alpha=0.3)
    if drawn:
      ax.legend(fontsize=8)
    else:
      ax.text(0.5, 0.5, 'no completed cell yet', ha='center', va='center',
              transform=ax.transAxes)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png')
    atomic_io.write_bytes(path, buffer.getvalue())
  finally:
    plt.close(fig)
