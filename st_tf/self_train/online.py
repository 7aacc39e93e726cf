"""The online student: a mean teacher (an EMA of the student) labels each
batch in the train step (`st_tf.mean_teacher`), no offline pseudo labels.

    self_train.student = @MeanTeacherStudent()

Per round (stages, in `round_<r>/`):

  1. `student/train`: `MeanTeacherModel` ('student' gin scope) on
     `build_mean_teacher_dataset` batches (human + two-view unlabeled),
     initialised from the round's teacher with `init_student_from_teacher`
     (the EMA then starts from the same weights: `burn_in_steps = 0`), else
     from the student's gin init (use a burn-in). With `eval_every_epochs`
     the student's and the EMA teacher's val metrics go to TensorBoard
     during training (`eval_callback.PeriodicEval`);
  2. `student/eval` (and `_test`): the student, as any student;
  3. `ema_teacher/checkpoint`: the EMA teacher as a trainer checkpoint of
     its own, `student/ema_teacher/ckpt-<step>` (`extract.py`);
  4. `ema_teacher/eval` (and `_test`): its metrics, in
     `student/ema_teacher/eval_metrics.json` and TensorBoard
     `student/ema_teacher/eval/` (under the student's model_dir).

The summary's round has the student, the EMA teacher (`ema_teacher`) and,
as `pseudo_labels`, the last epoch's online pseudo-label logs (boxes or
pixels per image, pseudo loss, precision / recall when the unlabeled
records hold ground truth), from `student/online_student.json`. The
student (not the EMA teacher) is the next round's teacher.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional

import gin
import tensorflow as tf
import tf_keras

from st_tf import model as model_lib
from st_tf.data import pipeline
from st_tf.mean_teacher import eval_callback
from st_tf.mean_teacher import extract
from st_tf.mean_teacher import model as mt_model
from st_tf.self_train import models
from st_tf.self_train import stages
from st_tf.self_train import summary as summary_lib

ONLINE_FILE = 'online_student.json'
# Last-epoch logs of the train step kept in ONLINE_FILE.
_LOG_KEYS = ('loss', 'human_loss', 'pseudo_loss', 'pseudo_weight',
             'pseudo_boxes_per_image', 'pseudo_precision', 'pseudo_recall')


def _settings(model: tf_keras.Model) -> Dict[str, Any]:
  """The model's pseudo-target settings (`DetectionTargets.settings()`)."""
  settings = getattr(getattr(model, 'targets', None), 'settings', None)
  out = dict(settings()) if callable(settings) else {}
  out.update(ema_decay=getattr(model, 'ema_decay', None),
             burn_in_steps=getattr(model, 'burn_in_steps', None))
  return out


def pseudo_label_stats(student_dir: str) -> Dict[str, Any]:
  """The summary's `pseudo_labels` entry of an online student.

  `labels_per_image` is the last epoch's mean of hard boxes (detection) or
  labeled pixels (segmentation) per unlabeled image; `quality` is keyed by
  the threshold, as offline manifests are ({'precision', 'recall'}; None
  without ground truth on the unlabeled records). Values are None when the
  stage's record is missing.
  """
  record = stages.read_json_or_none(os.path.join(student_dir, ONLINE_FILE))
  record = record or {}
  logs, settings = record.get('logs', {}), record.get('settings', {})
  threshold = settings.get('score_threshold',
                           settings.get('pixel_threshold'))
  quality = None
  if 'pseudo_precision' in logs and threshold is not None:
    quality = {str(threshold): {'precision': logs['pseudo_precision'],
                                'recall': logs.get('pseudo_recall')}}
  return {'mode': MeanTeacherStudent.mode, 'dir': None,
          'task': settings.get('task'), 'images_in': None,
          'images_out': None, 'labels': None,
          'labels_per_image': logs.get('pseudo_boxes_per_image'),
          'pseudo_loss': logs.get('pseudo_loss'),
          'score_threshold': threshold, 'quality': quality,
          'settings': settings}


@gin.configurable
class MeanTeacherStudent:
  """Trains the round's student with an online EMA teacher (module doc)."""

  mode = 'mean_teacher'

  def __init__(self,
               model: Callable[[], tf_keras.Model] = (
                   mt_model.MeanTeacherModel),
               dataset: Callable[..., tf.data.Dataset] = (
                   pipeline.build_mean_teacher_dataset),
               teacher_model: Callable[[], tf_keras.Model] = (
                   model_lib.SelfTrainingModel),
               eval_every_epochs: Optional[int] = None,
               eval_dataset: Optional[Callable[[], Any]] = None,
               eval_metric_fn: Optional[Callable[..., Any]] = None):
    """Creates the student.

    Args:
      model: builds the `MeanTeacherModel` (gin `@MeanTeacherModel`, no
        parentheses; called in the 'student' scope, strategy scope).
      dataset: the trainer's dataset builder (`input_context=`):
        `((images, labels), views)` batches (gin
        `@build_mean_teacher_dataset`).
      teacher_model: builds the `SelfTrainingModel` that holds the EMA
        teacher for eval and export (as `evaluate.model`).
      eval_every_epochs: if set, evaluate student and EMA teacher on
        `eval_dataset` every this many epochs during training (TensorBoard
        only; the final evaluations are stages).
      eval_dataset, eval_metric_fn: the periodic evaluation's dataset
        factory (gin `@eval/build_dataset`) and metric function
        (`@evaluate_detection`); required with `eval_every_epochs`.
    """
    if eval_every_epochs is not None and (eval_dataset is None or
                                          eval_metric_fn is None):
      raise ValueError(
          'MeanTeacherStudent.eval_every_epochs needs '
          'MeanTeacherStudent.eval_dataset (e.g. @eval/build_dataset) and '
          'MeanTeacherStudent.eval_metric_fn (e.g. @evaluate_detection).')
    self.model = model
    self.dataset = dataset
    self.teacher_model = teacher_model
    self.eval_every_epochs = eval_every_epochs
    self.eval_dataset = eval_dataset
    self.eval_metric_fn = eval_metric_fn

  def _callbacks(self, student_dir: str) -> List[tf_keras.callbacks.Callback]:
    if self.eval_every_epochs is None:
      return []
    return [eval_callback.PeriodicEval(student_dir, self.eval_dataset,
                                       self.eval_metric_fn,
                                       self.eval_every_epochs)]

  def train(self, round_: models.Round) -> None:
    """Stage: trains the mean-teacher student (resuming); records the last
    epoch's logs and the target settings in ONLINE_FILE."""
    student_dir = round_.student_dir
    built: Dict[str, tf_keras.Model] = {}

    def make() -> tf_keras.Model:
      built['model'] = self.model()
      return built['model']

    def record(logs: Dict[str, float]) -> None:
      path = os.path.join(student_dir, ONLINE_FILE)
      if not logs and stages.read_json_or_none(path) is not None:
        return  # already final: keep the record of the run that trained it
      stages.write_json(path, {
          'settings': _settings(built['model']),
          'logs': {k: logs[k] for k in _LOG_KEYS if k in logs}})

    models.train_stage(
        round_.log, f'{round_.prefix}/student/train', student_dir,
        models.STUDENT_SCOPE, after=record, model=make,
        train_dataset=self.dataset,
        callbacks=self._callbacks(student_dir), **round_.init_kwargs())

  def ema_teacher(self, round_: models.Round) -> models.TrainedModel:
    """Stage: the EMA teacher's own checkpoint (`extract.py`)."""
    student_dir = round_.student_dir
    ema_dir = os.path.join(student_dir, eval_callback.EMA_SUBDIR)

    def write():
      with gin.config_scope(models.STUDENT_SCOPE):
        extract.write_teacher_checkpoint(student_dir, ema_dir,
                                         self.teacher_model)

    def complete() -> bool:
      step = stages.final_step(ema_dir)
      return step is not None and step == stages.final_step(student_dir)

    round_.log.run(f'{round_.prefix}/ema_teacher/checkpoint', complete,
                   write)
    return models.TrainedModel(models.STUDENT_SCOPE, checkpoint_dir=ema_dir,
                               eval_dir=ema_dir)

  def run(self, round_: models.Round) -> models.StudentResult:
    """Student training, its eval, the EMA teacher's checkpoint and eval."""
    self.train(round_)
    student = models.TrainedModel(models.STUDENT_SCOPE,
                                  checkpoint_dir=round_.student_dir,
                                  eval_dir=round_.student_dir)
    record = models.eval_stage(round_.log, f'{round_.prefix}/student/eval',
                               student, round_.metric, round_.test)
    ema = self.ema_teacher(round_)
    ema_record = models.eval_stage(
        round_.log, f'{round_.prefix}/ema_teacher/eval', ema, round_.metric,
        round_.test)
    return models.StudentResult(
        student, record, pseudo_label_stats(round_.student_dir),
        extra={'ema_teacher': summary_lib.model_entry(ema_record,
                                                      round_.metric)})
