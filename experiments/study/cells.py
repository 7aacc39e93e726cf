"""The study's grid: which (policy, labeled fraction, init, seed) cells run.

Zoph et al. 2020 compare pre-training and self-training over augmentation
strength (Tables 2 and 4: policies S1-S4, all labeled data) and labeled-data
size (Tables 3 and 5: S4 with 20/50/100 % of the labels). A cell is one
`--mode=self_train` run: its teacher is the supervised result and its
student the self-trained one (same init, policy and steps).

* `small`: the union of the Table 2 slice (S1-S4 at 100 %, both inits) and
  the Table 3 slice (S4 at 20, 50, 100 %, both inits): 12 (policy,
  fraction, init) combinations per seed.
* `full`: the product S1-S4 x {20, 50, 100} % x {rand, pretrained}: 24.

Cell names (`S4_p20_pretrained_s0`) are the cells' folder names: stable
across runs and unique within a grid.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Dict, List, Sequence, Tuple

POLICIES = ('S1', 'S2', 'S3', 'S4')
FRACTIONS = (20, 50, 100)  # percent of the labeled split
INITS = ('rand', 'pretrained')
FULL_DATA = 100
TABLE3_POLICY = 'S4'  # the policy of the data-size tables (3 and 5)

# Human-readable init names (table rows).
INIT_LABELS = {'rand': 'Rand Init', 'pretrained': 'Pre-trained'}


@dataclasses.dataclass(frozen=True, order=True)
class Cell:
  """One grid cell.

  Attributes:
    policy: augmentation policy of teacher and student ('S1'..'S4').
    fraction: labeled data used, in percent of the labeled split (1..100).
    init: 'rand' (random init) or 'pretrained' (backbone from pre-training).
    seed: replicate index (see gin/study/digitscenes_cell.gin for what it
      seeds).
  """
  policy: str
  fraction: int
  init: str
  seed: int

  def __post_init__(self):
    if self.policy not in POLICIES:
      raise ValueError(f'unknown policy {self.policy!r}; expected {POLICIES}')
    if not 0 < self.fraction <= 100:
      raise ValueError(f'fraction must be in (0, 100] percent, got '
                       f'{self.fraction}')
    if self.init not in INITS:
      raise ValueError(f'unknown init {self.init!r}; expected {INITS}')
    if self.seed < 0:
      raise ValueError(f'seed must be >= 0, got {self.seed}')

  @property
  def name(self) -> str:
    return f'{self.policy}_p{self.fraction}_{self.init}_s{self.seed}'

  def as_dict(self) -> Dict[str, object]:
    return {'name': self.name, 'policy': self.policy,
            'fraction': self.fraction, 'init': self.init, 'seed': self.seed}


def _small() -> List[Tuple[str, int, str]]:
  table2 = [(p, FULL_DATA, i) for p in POLICIES for i in INITS]
  table3 = [(TABLE3_POLICY, f, i) for f in FRACTIONS for i in INITS]
  return sorted(set(table2) | set(table3))


def _full() -> List[Tuple[str, int, str]]:
  return list(itertools.product(POLICIES, FRACTIONS, INITS))


GRIDS = {'small': _small, 'full': _full}
# Default training steps per grid (teacher = student steps).
DEFAULT_STEPS = {'small': 1000, 'full': 3000}


def enumerate_cells(grid: str, seeds: Sequence[int]) -> List[Cell]:
  """The cells of `grid` for every seed, in run order.

  Order: seed, then init (random first: the pre-trained cells wait for the
  pre-training run), then policy, then fraction from 100 % down.
  """
  if grid not in GRIDS:
    raise ValueError(f'unknown grid {grid!r}; expected {sorted(GRIDS)}')
  if not seeds:
    raise ValueError('at least one seed is required')
  if len(set(seeds)) != len(seeds):
    raise ValueError(f'seeds must be unique, got {list(seeds)}')
  combos = GRIDS[grid]()
  cells = [Cell(p, f, i, s) for s in seeds for (p, f, i) in combos]
  return sorted(cells, key=lambda c: (c.seed, INITS.index(c.init), c.policy,
                                      -c.fraction))


def filter_cells(cells: Sequence[Cell], only: str) -> List[Cell]:
  """Cells whose name contains `only` (all when empty)."""
  return [c for c in cells if not only or only in c.name]
