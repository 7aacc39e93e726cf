r"""`--mode=self_train`: the whole method (Zoph et al. 2020) from one gin file.

    python -m st_tf.main --gin_file=gin/demo/digitscenes_detection.gin \
        --mode=self_train --model_dir=runs/self_train

Per round r (`num_rounds`; the student of round r is the teacher of r + 1):

  1. round 0 only: train the teacher on human labels (`round_0/teacher`),
     unless a trained one is given (`teacher_model_dir`: trainer checkpoints,
     or `teacher_export_dir`: a SavedModel);
  2. evaluate it;
  3. train and evaluate the student (`self_train.student`), from scratch
     or from the teacher's weights (`init_student_from_teacher`):
     - offline (default, the paper; `offline.py`): pseudo-label the
       unlabeled split (`round_r/pseudo_labels`; one job), then train on
       human + pseudo batches (`round_r/student`);
     - `@MeanTeacherStudent()` (`online.py`): train a `MeanTeacherModel`
       whose EMA teacher labels each unlabeled batch in the train step
       (`round_r/student`), then evaluate its EMA teacher too
       (`round_r/student/ema_teacher`);
  4. export it (SavedModel in `round_r/student/export/<step>`).

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

import functools
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from absl import logging
import gin
import tensorflow as tf

from st_tf.data import metadata as metadata_lib
from st_tf.data import pipeline
from st_tf.export import saved_model
from st_tf.self_train import models
from st_tf.self_train import offline
from st_tf.self_train import stages
from st_tf.self_train import summary as summary_lib
from st_tf.training import init as init_lib

# The stages' model types and functions live in models.py.
from st_tf.self_train.models import (  # pylint: disable=g-importing-member
    BASELINE_SCOPE, STUDENT_SCOPE, TEACHER_SCOPE, TestSplit, TrainedModel,
    eval_stage, train_stage)


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
  train_stage(log, 'round_0/teacher/train', teacher_dir, TEACHER_SCOPE)
  return TrainedModel(TEACHER_SCOPE, checkpoint_dir=teacher_dir,
                      eval_dir=teacher_dir)


def _round_0_teacher(log: stages.StageLog, model_dir: str,
                     teacher_model_dir: Optional[str],
                     teacher_export_dir: Optional[str], metric: str,
                     test: Optional[TestSplit]
                     ) -> Tuple[TrainedModel, Optional[Dict[str, Any]]]:
  """Stages 1-2: the round-0 teacher and its eval record (None when it is
  not evaluated: a SavedModel teacher)."""
  teacher = _first_teacher(log, os.path.join(model_dir, 'round_0'),
                           teacher_model_dir, teacher_export_dir)
  return teacher, (eval_stage(log, 'round_0/teacher/eval', teacher, metric,
                              test) if teacher.eval_dir else None)


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


def _test_split(test_dataset: Optional[Callable[[], Any]],
                test_metric_fn: Optional[Callable[..., Any]]
                ) -> Optional[TestSplit]:
  """The held-out split (None without one); ValueError for half of one."""
  if (test_dataset is None) != (test_metric_fn is None):
    raise ValueError('give both self_train.test_dataset and '
                     'self_train.test_metric_fn, or neither')
  return (TestSplit(test_dataset, test_metric_fn)
          if test_dataset is not None else None)


def _student(student: Optional[models.Student],
             student_dataset: Callable[..., tf.data.Dataset]
             ) -> models.Student:
  """`self_train.student`, or the paper's offline student by default."""
  if student is None:
    return offline.OfflineStudent(dataset=student_dataset)
  if student_dataset is not pipeline.build_self_training_dataset:
    raise ValueError(
        'self_train.student_dataset is the offline student\'s dataset; with '
        f'self_train.student = {type(student).__name__} bind that student\'s '
        'own dataset instead (e.g. MeanTeacherStudent.dataset), or give the '
        'offline student its dataset: OfflineStudent.dataset.')
  if not callable(getattr(student, 'run', None)):
    raise TypeError(
        f'self_train.student must be a student object such as '
        f'@OfflineStudent() or @MeanTeacherStudent() (with parentheses), got '
        f'{student!r}')
  return student


def _export(log: stages.StageLog, prefix: str, student_dir: str) -> str:
  """Stage: the student's SavedModel; returns its folder."""

  def export():
    with gin.config_scope(STUDENT_SCOPE):
      saved_model.export(model_dir=student_dir)

  log.run(f'{prefix}/student/export',
          lambda: stages.export_complete(student_dir), export)
  return stages.export_dir_for(student_dir)


def _rounds(log: stages.StageLog, model_dir: str, student: models.Student,
            teacher: TrainedModel, teacher_record: Optional[Dict[str, Any]],
            num_rounds: int, init_student_from_teacher: bool, metric: str,
            test: Optional[TestSplit], export_student: bool
            ) -> List[Dict[str, Any]]:
  """The rounds' summary entries (the student of r teaches r + 1)."""
  rounds: List[Dict[str, Any]] = []
  for r in range(num_rounds):
    round_ = models.Round(r, log, os.path.join(model_dir, f'round_{r}'),
                          teacher, init_student_from_teacher, metric, test)
    result = student.run(round_)
    export_path = (_export(log, round_.prefix, round_.student_dir)
                   if export_student else None)
    rounds.append(summary_lib.round_entry(
        r, teacher_record, result.record, metric, result.pseudo_labels,
        stages.final_step(round_.student_dir), export_path,
        mode=student.mode, extra=result.extra))
    teacher, teacher_record = result.model, result.record
  return rounds


def _baseline(log: stages.StageLog, model_dir: str, metric: str,
              test: Optional[TestSplit], first_teacher: TrainedModel,
              init_student_from_teacher: bool,
              rounds: List[Dict[str, Any]]) -> Dict[str, Any]:
  """Trains and evaluates the supervised baseline; its summary entry."""
  baseline_model = TrainedModel(
      BASELINE_SCOPE, checkpoint_dir=os.path.join(model_dir, 'baseline'),
      eval_dir=os.path.join(model_dir, 'baseline'))
  teacher_steps = (stages.final_step(first_teacher.checkpoint_dir)
                   if first_teacher.checkpoint_dir else None)
  # With students initialised from their teacher, the baseline continues
  # from the round-0 teacher too (the same schedule without pseudo labels)
  # and its step count includes the teacher's.
  from_teacher = init_student_from_teacher and teacher_steps is not None
  kwargs = {}
  if from_teacher:
    kwargs['init'] = functools.partial(
        init_lib.initialize_model, method='full',
        checkpoint=first_teacher.checkpoint_dir)
  train_stage(log, 'baseline/train', baseline_model.checkpoint_dir,
              BASELINE_SCOPE, **kwargs)
  final = rounds[-1] if rounds else {}
  return summary_lib.baseline_entry(
      eval_stage(log, 'baseline/eval', baseline_model, metric, test),
      metric,
      stages.final_step(baseline_model.checkpoint_dir) +
      (teacher_steps if from_teacher else 0),
      expected_steps=(None if teacher_steps is None else
                      teacher_steps + sum(r['student']['step']
                                          for r in rounds)),
      final_student=final.get('student'),
      final_ema_teacher=final.get('ema_teacher'))


def _report(log: stages.StageLog, model_dir: str, metric: str,
            teacher_record: Optional[Dict[str, Any]],
            rounds: List[Dict[str, Any]],
            baseline_entry: Optional[Dict[str, Any]],
            category_names: metadata_lib.CategoryNames
            ) -> Dict[str, Any]:
  """Writes `summary.json` / `summary.md`, prints and logs the Markdown;
  returns the summary."""
  result = summary_lib.build(metric, rounds, baseline_entry, log.table(),
                             teacher=summary_lib.model_entry(
                                 teacher_record, metric),
                             category_names=category_names)
  markdown = summary_lib.write(model_dir, result)
  print(markdown)
  logging.info('self_train summary:\n%s', markdown)
  return result


@gin.configurable
def self_train(model_dir: str = gin.REQUIRED,
               num_rounds: int = 1,
               metric: str = 'AP',
               teacher_model_dir: Optional[str] = None,
               teacher_export_dir: Optional[str] = None,
               init_student_from_teacher: bool = False,
               student_dataset: Callable[..., tf.data.Dataset] = (
                   pipeline.build_self_training_dataset),
               student: Optional[models.Student] = None,
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
      gin init (default: from scratch). A mean-teacher student's EMA starts
      from the same weights.
    student_dataset: the offline student's dataset builder, called by the
      trainer as `student_dataset(input_context=...,
      pseudo_file_pattern=<round's pseudo labels>)` in the 'student' scope.
    student: how each round trains its student: None (default) = the
      paper's offline pseudo labels (`offline.OfflineStudent` with
      `student_dataset`); `@MeanTeacherStudent()` = an online EMA teacher
      (`online.py`; no pseudo-label stage).
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
    The summary (also written to `summary.json`; see `summary.py`), with
    per-class values named by gin `category_names`.
  """
  _check_args(num_rounds, teacher_model_dir, teacher_export_dir,
              init_student_from_teacher, baseline)
  test = _test_split(test_dataset, test_metric_fn)
  student = _student(student, student_dataset)
  # The class names of the summary's per-class table (gin `category_names`,
  # the labeled records' metadata in the templates); read before any work.
  category_names = metadata_lib.configured_category_names()
  log = stages.StageLog(model_dir)
  teacher, teacher_record = _round_0_teacher(
      log, model_dir, teacher_model_dir, teacher_export_dir, metric, test)
  rounds = _rounds(log, model_dir, student, teacher, teacher_record,
                   num_rounds, init_student_from_teacher, metric, test,
                   export_student)
  baseline_entry = (_baseline(log, model_dir, metric, test, teacher,
                              init_student_from_teacher, rounds)
                    if baseline else None)
  return _report(log, model_dir, metric, teacher_record, rounds,
                 baseline_entry, category_names)
