"""The models of a self-training pipeline and the stages that train and
evaluate them (`runner.py` and the students of `offline.py` / `online.py`).

A stage trains or evaluates inside one gin scope ('teacher', 'student',
'baseline'), so one gin file configures all of them; a stage whose output
is complete is skipped (`stages.StageLog`).
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Dict, Optional, Protocol

import gin

from st_tf.evaluation import runner as eval_runner
from st_tf.pseudo_label import teacher as teacher_lib
from st_tf.self_train import stages
from st_tf.training import init as init_lib
from st_tf.training import trainer

TEACHER_SCOPE = 'teacher'
STUDENT_SCOPE = 'student'
BASELINE_SCOPE = 'baseline'


@dataclasses.dataclass
class TrainedModel:
  """A model of the pipeline, as a teacher or an evaluated result.

  Attributes:
    scope: gin scope its model is built in.
    checkpoint_dir: trainer checkpoints (None for a SavedModel teacher).
    eval_dir: where its `eval_metrics.json` goes (None: not evaluated).
    export_dir: SavedModel directory (SavedModel teachers only).
  """
  scope: str
  checkpoint_dir: Optional[str] = None
  eval_dir: Optional[str] = None
  export_dir: Optional[str] = None

  def teacher_factory(self) -> teacher_lib.TeacherFactory:
    """Builds the pseudo-labeling teacher (called in the strategy scope)."""
    if self.checkpoint_dir is not None:
      return functools.partial(teacher_lib.checkpoint_teacher,
                               model_dir=self.checkpoint_dir)
    return functools.partial(teacher_lib.saved_model_teacher,
                             export_dir=self.export_dir)


@dataclasses.dataclass
class TestSplit:
  """The held-out split every model is also evaluated on (no choice looks
  at it): `dataset` and `metric_fn` as `evaluate`'s (gin references)."""
  dataset: Callable[[], Any]
  metric_fn: Callable[..., Dict[str, float]]


def train_stage(log: stages.StageLog, name: str, train_dir: str, scope: str,
                after: Optional[Callable[[Dict[str, float]], None]] = None,
                **train_kwargs) -> None:
  """Trains in `train_dir` (resuming) and marks the stage complete.

  Args:
    log, name: the stage log and the stage's name.
    train_dir: the trainer's model_dir.
    scope: gin scope of the training.
    after: called with `trainer.train`'s logs (the last epoch's metrics;
      empty when the checkpoints were already final) before the stage is
      marked complete.
    **train_kwargs: forwarded to `trainer.train` (override gin).
  """

  def fn():
    with gin.config_scope(scope):
      logs = trainer.train(model_dir=train_dir, **train_kwargs)
    if after is not None:
      after(logs)
    stages.mark_trained(train_dir)

  log.run(name, lambda: stages.train_complete(train_dir), fn)


def _evaluate_once(log: stages.StageLog, name: str, model: TrainedModel,
                   eval_dir: str, metric: str, **overrides) -> Dict[str, Any]:
  """Evaluates `model` into `eval_dir` (skipped when done); its record."""

  def fn():
    with gin.config_scope(model.scope):
      eval_runner.evaluate(model_dir=eval_dir,
                           checkpoint=model.checkpoint_dir, **overrides)

  log.run(name, lambda: stages.eval_complete(eval_dir, model.checkpoint_dir),
          fn)
  record = stages.read_metrics(eval_dir)
  if metric not in record['metrics']:
    raise ValueError(f'self_train.metric={metric!r} is not an eval metric of '
                     f'{eval_dir}; choose one of '
                     f'{sorted(record["metrics"])}')
  return record


def eval_stage(log: stages.StageLog, name: str, model: TrainedModel,
               metric: str, test: Optional[TestSplit] = None
               ) -> Dict[str, Any]:
  """Evaluates `model` on val (and `test`, in `<eval_dir>/test`).

  Returns the val eval record; with `test`, its `test` key holds the test
  record.
  """
  record = _evaluate_once(log, name, model, model.eval_dir, metric)
  if test is not None:
    record = dict(record, test=_evaluate_once(
        log, f'{name}_test', model, os.path.join(model.eval_dir, 'test'),
        metric, dataset=test.dataset(), metric_fn=test.metric_fn))
  return record


@dataclasses.dataclass
class Round:
  """What a student of round `index` is given by the runner.

  Attributes:
    index: the round (0, 1, ...).
    log: the pipeline's stage log.
    round_dir: `<model_dir>/round_<index>`.
    teacher: this round's teacher.
    init_from_teacher: initialise the student's network from the teacher's
      (init method 'full'; needs `teacher.checkpoint_dir`).
    metric: the eval metric reported ('AP', 'mean_iou').
    test: the held-out split, or None.
  """
  index: int
  log: stages.StageLog
  round_dir: str
  teacher: TrainedModel
  init_from_teacher: bool
  metric: str
  test: Optional[TestSplit] = None

  @property
  def prefix(self) -> str:
    """Stage-name prefix, 'round_<index>'."""
    return f'round_{self.index}'

  @property
  def student_dir(self) -> str:
    return os.path.join(self.round_dir, 'student')

  def init_kwargs(self) -> Dict[str, Any]:
    """`trainer.train` kwargs that initialise the student from the teacher
    (empty without `init_from_teacher`)."""
    if not self.init_from_teacher:
      return {}
    return {'init': functools.partial(init_lib.initialize_model,
                                      method='full',
                                      checkpoint=self.teacher.checkpoint_dir)}


@dataclasses.dataclass
class StudentResult:
  """A trained and evaluated student of one round.

  Attributes:
    model: the student (the next round's teacher).
    record: its val eval record (`eval_stage`'s).
    pseudo_labels: the round's pseudo-label stats for the summary
      (`stages.pseudo_label_stats`, or the online student's).
    extra: more summary entries of the round (e.g. 'ema_teacher').
  """
  model: TrainedModel
  record: Dict[str, Any]
  pseudo_labels: Dict[str, Any]
  extra: Dict[str, Any] = dataclasses.field(default_factory=dict)


class Student(Protocol):
  """How a round trains its student (`self_train.student`): the paper's
  offline pseudo labels (`offline.OfflineStudent`) or an online EMA teacher
  (`online.MeanTeacherStudent`)."""

  mode: str  # reported in the summary ('offline', 'mean_teacher')

  def run(self, round_: Round) -> StudentResult:
    """Trains (resuming) and evaluates the student of `round_`."""
