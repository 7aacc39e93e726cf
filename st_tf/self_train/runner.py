r"""`--mode=self_train`: the whole method (Zoph et al. 2020) from one gin file.

    python -m st_tf.main --gin_file=gin/demo/digitscenes_detection.gin \
        --mode=self_train --model_dir=runs/self_train

Per round r (`num_rounds`; the student of round r is the teacher of r + 1):

  1. round 0 only: train the teacher on human labels (`round_0/teacher`),
     unless a trained one is given (`teacher_model_dir`: trainer checkpoints,
     or `teacher_export_dir`: a SavedModel);
  2. evaluate it;
  3. pseudo-label the unlabeled split (`round_r/pseudo_labels`; one job);
  4. train the student on human + pseudo batches (`round_r/student`), from
     scratch or from the teacher's weights (`init_student_from_teacher`);
  5. evaluate it; 6. export it (SavedModel in `round_r/student/export/<step>`).

Then, optionally (`baseline = True`), a supervised baseline on human labels
only (`baseline/`), whose step count should equal the teacher's plus the
students' (reported in the summary). `summary.md` / `summary.json` are
written to model_dir and the table is printed. Complete stages are skipped
(see `stages.py`), so rerunning a killed pipeline resumes it.

Gin scopes: teacher stages run inside `gin.config_scope('teacher')`, student
stages inside 'student', the baseline inside 'baseline', so one gin file
configures all of them, e.g.::

    student/train.train_steps = 1500
    student/warmup_cosine.total_steps = 1500
    student/SelfTrainingModel.combiner = @normalized()
    baseline/train.train_dataset = @baseline/build_dataset
    checkpoint_teacher.model = @SelfTrainingModel   # the pseudo-labeler
    pseudo_label.input_pattern = 'data/digitscenes/unlabeled-*'

Runtime paths are passed as call arguments: each stage's `model_dir`, the
pseudo-label output dir and teacher, and the student dataset's
`pseudo_file_pattern` (`student_dataset` is called with it).
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Dict, List, Optional

from absl import logging
import gin
import tensorflow as tf

from st_tf.data import pipeline
from st_tf.evaluation import runner as eval_runner
from st_tf.export import saved_model
from st_tf.pseudo_label import runner as pseudo_runner
from st_tf.pseudo_label import teacher as teacher_lib
from st_tf.pseudo_label import writer as writer_lib
from st_tf.self_train import stages
from st_tf.self_train import summary as summary_lib
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


def _train_stage(log: stages.StageLog, name: str, train_dir: str, scope: str,
                 **train_kwargs) -> None:
  """Trains in `train_dir` (resuming) and marks the stage complete."""

  def fn():
    with gin.config_scope(scope):
      trainer.train(model_dir=train_dir, **train_kwargs)
    stages.mark_trained(train_dir)

  log.run(name, lambda: stages.train_complete(train_dir), fn)


@dataclasses.dataclass
class TestSplit:
  """The held-out split every model is also evaluated on (no choice looks
  at it): `dataset` and `metric_fn` as `evaluate`'s (gin references)."""
  dataset: Callable[[], Any]
  metric_fn: Callable[..., Dict[str, float]]


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


def _eval_stage(log: stages.StageLog, name: str, model: TrainedModel,
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


def _first_teacher(log: stages.StageLog, round_dir: str,
                   teacher_model_dir: Optional[str],
                   teacher_export_dir: Optional[str]) -> TrainedModel:
  """Stage 1: the round-0 teacher (trained here or given)."""
  teacher_dir = os.path.join(round_dir, 'teacher')
  if teacher_export_dir:
    return TrainedModel(TEACHER_SCOPE, export_dir=teacher_export_dir)
  if teacher_model_dir:
    if tf.train.latest_checkpoint(teacher_model_dir) is None:
      raise ValueError('self_train.teacher_model_dir has no checkpoint: '
                       f'{teacher_model_dir}')
    return TrainedModel(TEACHER_SCOPE, checkpoint_dir=teacher_model_dir,
                        eval_dir=teacher_dir)
  _train_stage(log, 'round_0/teacher/train', teacher_dir, TEACHER_SCOPE)
  return TrainedModel(TEACHER_SCOPE, checkpoint_dir=teacher_dir,
                      eval_dir=teacher_dir)


def _check_args(num_rounds: int, teacher_model_dir: Optional[str],
                teacher_export_dir: Optional[str],
                init_student_from_teacher: bool, baseline: bool) -> None:
  if num_rounds < 0 or (num_rounds == 0 and not baseline):
    raise ValueError(f'self_train.num_rounds must be >= 1 (or 0 with '
                     f'self_train.baseline = True), got {num_rounds}')
  if teacher_model_dir and teacher_export_dir:
    raise ValueError('give self_train.teacher_model_dir or '
                     'self_train.teacher_export_dir, not both')
  if teacher_export_dir and init_student_from_teacher:
    raise ValueError('init_student_from_teacher needs a checkpoint teacher; '
                     f'teacher_export_dir={teacher_export_dir} is a SavedModel')


@gin.configurable
def self_train(model_dir: str = gin.REQUIRED,
               num_rounds: int = 1,
               metric: str = 'AP',
               teacher_model_dir: Optional[str] = None,
               teacher_export_dir: Optional[str] = None,
               init_student_from_teacher: bool = False,
               student_dataset: Callable[..., tf.data.Dataset] = (
                   pipeline.build_self_training_dataset),
               export_student: bool = True,
               baseline: bool = False,
               test_dataset: Optional[Callable[[], Any]] = None,
               test_metric_fn: Optional[Callable[..., Any]] = None
               ) -> Dict[str, Any]:
  """Runs (or resumes) the self-training pipeline in `model_dir`.

  Args:
    model_dir: the pipeline folder (layout in `stages.py`).
    num_rounds: teacher -> student rounds; each student teaches the next.
      0 (with `baseline`): only the teacher and the supervised baseline.
    metric: eval metric reported and compared (`AP` for COCO detection,
      `mean_iou` for segmentation).
    teacher_model_dir: use this trained teacher (trainer checkpoints, model
      built in the 'teacher' scope) instead of training one.
    teacher_export_dir: use this SavedModel as the round-0 teacher (not
      evaluated; no `init_student_from_teacher`).
    init_student_from_teacher: initialise each student's network with its
      teacher's network weights (init method 'full'); else the student's
      gin init (default: from scratch).
    student_dataset: student dataset builder, called by the trainer as
      `student_dataset(input_context=..., pseudo_file_pattern=<round's
      pseudo labels>)` in the 'student' scope.
    export_student: export each student as a SavedModel.
    baseline: also train and evaluate the supervised baseline ('baseline'
      scope, in `model_dir/baseline`).
    test_dataset: if set (with `test_metric_fn`), every model is also
      evaluated on this held-out split (a dataset factory, e.g. gin
      `@test/build_dataset`) into `<its eval dir>/test/`; the summary
      reports both. Choose recipes on val, report on test.
    test_metric_fn: the test split's metric function (e.g.
      `@test/evaluate_detection` with the test annotations).

  Returns:
    The summary (also written to `summary.json`; see `summary.py`).
  """
  _check_args(num_rounds, teacher_model_dir, teacher_export_dir,
              init_student_from_teacher, baseline)
  if (test_dataset is None) != (test_metric_fn is None):
    raise ValueError('give both self_train.test_dataset and '
                     'self_train.test_metric_fn, or neither')
  test = (TestSplit(test_dataset, test_metric_fn)
          if test_dataset is not None else None)
  log = stages.StageLog(model_dir)
  teacher = _first_teacher(log, os.path.join(model_dir, 'round_0'),
                           teacher_model_dir, teacher_export_dir)
  teacher_record = (_eval_stage(log, 'round_0/teacher/eval', teacher, metric,
                                test) if teacher.eval_dir else None)
  teacher_steps = (stages.final_step(teacher.checkpoint_dir)
                   if teacher.checkpoint_dir else None)
  first_teacher_dir = teacher.checkpoint_dir
  first_teacher_record = teacher_record
  rounds: List[Dict[str, Any]] = []
  for r in range(num_rounds):
    prefix = f'round_{r}'
    round_dir = os.path.join(model_dir, prefix)
    pseudo_dir = os.path.join(round_dir, 'pseudo_labels')

    def label(teacher=teacher, pseudo_dir=pseudo_dir):
      with gin.config_scope(teacher.scope):
        pseudo_runner.pseudo_label(output_dir=pseudo_dir,
                                   teacher=teacher.teacher_factory(),
                                   shard_index=0, num_shards=1)

    log.run(f'{prefix}/pseudo_labels',
            lambda d=pseudo_dir: stages.pseudo_labels_complete(d), label)

    student_dir = os.path.join(round_dir, 'student')
    kwargs = {'train_dataset': functools.partial(
        student_dataset,
        pseudo_file_pattern=writer_lib.file_pattern(pseudo_dir))}
    if init_student_from_teacher:
      kwargs['init'] = functools.partial(init_lib.initialize_model,
                                         method='full',
                                         checkpoint=teacher.checkpoint_dir)
    _train_stage(log, f'{prefix}/student/train', student_dir, STUDENT_SCOPE,
                 **kwargs)
    student = TrainedModel(STUDENT_SCOPE, checkpoint_dir=student_dir,
                           eval_dir=student_dir)
    student_record = _eval_stage(log, f'{prefix}/student/eval', student,
                                 metric, test)
    export_path = None
    if export_student:
      def export(student_dir=student_dir):
        with gin.config_scope(STUDENT_SCOPE):
          saved_model.export(model_dir=student_dir)

      log.run(f'{prefix}/student/export',
              lambda d=student_dir: stages.export_complete(d), export)
      export_path = stages.export_dir_for(student_dir)
    rounds.append(summary_lib.round_entry(
        r, teacher_record, student_record, metric,
        stages.pseudo_label_stats(pseudo_dir),
        stages.final_step(student_dir), export_path))
    teacher, teacher_record = student, student_record

  baseline_entry = None
  if baseline:
    baseline_model = TrainedModel(
        BASELINE_SCOPE, checkpoint_dir=os.path.join(model_dir, 'baseline'),
        eval_dir=os.path.join(model_dir, 'baseline'))
    # With students initialised from their teacher, the baseline continues
    # from the round-0 teacher too (the same schedule without pseudo labels)
    # and its step count includes the teacher's.
    from_teacher = init_student_from_teacher and teacher_steps is not None
    baseline_kwargs = {}
    if from_teacher:
      baseline_kwargs['init'] = functools.partial(
          init_lib.initialize_model, method='full',
          checkpoint=first_teacher_dir)
    _train_stage(log, 'baseline/train', baseline_model.checkpoint_dir,
                 BASELINE_SCOPE, **baseline_kwargs)
    baseline_entry = summary_lib.baseline_entry(
        _eval_stage(log, 'baseline/eval', baseline_model, metric, test),
        metric,
        stages.final_step(baseline_model.checkpoint_dir) +
        (teacher_steps if from_teacher else 0),
        expected_steps=(None if teacher_steps is None else
                        teacher_steps + sum(r['student']['step']
                                            for r in rounds)),
        final_student=rounds[-1]['student'] if rounds else None)
  result = summary_lib.build(metric, rounds, baseline_entry, log.table(),
                             teacher=summary_lib.model_entry(
                                 first_teacher_record, metric))
  markdown = summary_lib.write(model_dir, result)
  print(markdown)
  logging.info('self_train summary:\n%s', markdown)
  return result
