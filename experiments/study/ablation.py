"""The loss-normalization ablation: normalized vs weighted, a in {0.5..4}.

Issue text: "normalized vs weighted, for a in {0.5, 1, 2, 4}, on the S4
student. Report the final AP and whether training diverged or spiked."

Every ablation run is the S4 / 100 % / rand / seed-0 grid cell with another
student loss (`student/SelfTrainingModel.combiner = @weighted()` or
`@normalized()`, `PSEUDO_WEIGHT = a`) and that cell's trained teacher
(`self_train.teacher_model_dir = <cell>/round_0/teacher`), so only students
train. The teacher's evaluation and pseudo labels do not depend on the
student loss: they are taken from the base cell (eval_metrics.json copied,
pseudo-label files hard-linked, or copied across file systems) when the
base cell's pseudo labels are complete and used the same score threshold;
otherwise the run makes its own. Runs live in `<output_dir>/ablation/
<combiner>_a<a>/`; the student's `train_log.csv` (one row every
`loss_log_every` steps) feeds `stability.analyze`.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Any, Dict, List, Optional

from experiments.study import cells as cells_lib
from experiments.study import commands
from experiments.study import files
from experiments.study import stability
from st_tf import atomic_io
from st_tf.training import loss_log

COMBINERS = ('normalized', 'weighted')
PSEUDO_WEIGHTS = (0.5, 1.0, 2.0, 4.0)
BASE_CELL = cells_lib.Cell('S4', 100, 'rand', 0)
TRAIN_LOG = os.path.join('round_0', 'student', 'train_log.csv')


@dataclasses.dataclass(frozen=True)
class AblationCell:
  combiner: str
  pseudo_weight: float

  def __post_init__(self):
    if self.combiner not in COMBINERS:
      raise ValueError(f'unknown combiner {self.combiner!r}; expected '
                       f'{COMBINERS}')
    if self.pseudo_weight < 0:
      raise ValueError(f'a must be >= 0, got {self.pseudo_weight}')

  @property
  def folder(self) -> str:
    return f'{self.combiner}_a{self.pseudo_weight:g}'

  @property
  def name(self) -> str:
    """Display / --only name, e.g. 'ablation/weighted_a4'."""
    return f'ablation/{self.folder}'

  def as_dict(self) -> Dict[str, Any]:
    return {'name': self.name, 'combiner': self.combiner,
            'pseudo_weight': self.pseudo_weight,
            'policy': BASE_CELL.policy, 'fraction': BASE_CELL.fraction,
            'init': BASE_CELL.init, 'seed': BASE_CELL.seed}


def enumerate_ablation() -> List[AblationCell]:
  """The 8 runs, normalized first, a ascending."""
  return [AblationCell(c, a) for c in COMBINERS for a in PSEUDO_WEIGHTS]


def ablation_dir(settings: commands.Settings, cell: AblationCell) -> str:
  return os.path.join(settings.output_dir, 'ablation', cell.folder)


def base_teacher_dir(settings: commands.Settings) -> str:
  """The base cell's teacher checkpoints (self_train's stage layout)."""
  return os.path.join(commands.cell_dir(settings, BASE_CELL.name), 'round_0',
                      'teacher')


def base_teacher_ready(settings: commands.Settings) -> bool:
  """The base cell's teacher finished training (train_done.json)."""
  return os.path.exists(os.path.join(base_teacher_dir(settings),
                                     'train_done.json'))


def extra_bindings(settings: commands.Settings,
                   cell: AblationCell) -> List[str]:
  """Bindings added to the base cell's to make this ablation run (its `a`
  is the settings' pseudo_weight: see `run_settings`)."""
  return [f'student/SelfTrainingModel.combiner = @{cell.combiner}()',
          f'self_train.teacher_model_dir = {base_teacher_dir(settings)!r}']


def run_settings(settings: commands.Settings,
                 cell: AblationCell) -> commands.Settings:
  """The study settings with this run's `a` (PSEUDO_WEIGHT)."""
  return dataclasses.replace(settings, pseudo_weight=float(cell.pseudo_weight))


def _link_or_copy(src: str, dst: str) -> None:
  try:
    os.link(src, dst)
  except OSError:
    shutil.copy2(src, dst)


def _threshold_of(manifest: Dict[str, Any]) -> Optional[float]:
  selection = manifest.get('settings', {}).get('selection', {})
  value = selection.get('score_threshold')
  return None if value is None else float(value)


def reuse_teacher_outputs(settings: commands.Settings,
                          cell: AblationCell) -> Dict[str, bool]:
  """Gives the run the base cell's teacher eval and pseudo labels.

  Only fills what the run lacks, and only from complete base outputs with
  the same score threshold. Returns {'eval': reused, 'pseudo_labels':
  reused}.
  """
  base = os.path.dirname(base_teacher_dir(settings))  # <base>/round_0
  run = os.path.join(ablation_dir(settings, cell), 'round_0')
  reused = {'eval': False, 'pseudo_labels': False}
  src_eval = os.path.join(base, 'teacher', 'eval_metrics.json')
  dst_eval = os.path.join(run, 'teacher', 'eval_metrics.json')
  if os.path.exists(src_eval) and not os.path.exists(dst_eval):
    os.makedirs(os.path.dirname(dst_eval), exist_ok=True)
    files.write_json(dst_eval, files.read_json(src_eval))
    reused['eval'] = True
  src_pl = os.path.join(base, 'pseudo_labels')
  dst_pl = os.path.join(run, 'pseudo_labels')
  manifests = sorted(f for f in (os.listdir(src_pl) if os.path.isdir(src_pl)
                                 else []) if f.startswith('manifest-'))
  if not manifests or os.path.exists(dst_pl):
    return reused
  loaded = [files.read_json(os.path.join(src_pl, m)) for m in manifests]
  if not all(m.get('complete') for m in loaded) or any(
      _threshold_of(m) != float(settings.score_threshold) for m in loaded):
    return reused
  tmp = dst_pl + '.tmp'
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  for name in sorted(os.listdir(src_pl)):
    path = os.path.join(src_pl, name)
    if os.path.isfile(path):
      _link_or_copy(path, os.path.join(tmp, name))
  atomic_io.rename_dir(tmp, dst_pl)
  reused['pseudo_labels'] = True
  return reused


def ablation_record(record: Dict[str, Any], model_dir: str) -> Dict[str, Any]:
  """A run record + the stability of its student's training loss.

  `stability` judges the total loss, `stability_human` the human loss L_h
  (comparable across combiners); `final_pseudo_weight` is the effective
  weight of L_p in the loss at the last logged step (a for `weighted`,
  a / (1 + a) * m_h / m_p for `normalized`).
  """
  path = os.path.join(model_dir, TRAIN_LOG)
  rows = loss_log.read_log(path)
  weights = [r['pseudo_weight'] for r in sorted(rows, key=lambda r: r['step'])
             if 'pseudo_weight' in r]
  return dict(record, train_log=path,
              stability=stability.analyze(rows),
              stability_human=stability.analyze(rows, column='human_loss'),
              final_pseudo_weight=weights[-1] if weights else None)
