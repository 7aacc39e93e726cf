"""The paper's student (Zoph et al. 2020): offline pseudo labels, then
training on human + pseudo batches.

Per round: the round's teacher pseudo-labels the unlabeled split once
(`round_<r>/pseudo_labels`, one job, in the teacher's gin scope), then the
student trains on human + pseudo batches (`round_<r>/student`, 'student'
scope) from scratch or from the teacher's weights, and is evaluated. This
is the default `self_train.student`.
"""
from __future__ import annotations

import functools
import os
from typing import Callable

import gin
import tensorflow as tf

from st_tf.data import pipeline
from st_tf.pseudo_label import runner as pseudo_runner
from st_tf.pseudo_label import writer as writer_lib
from st_tf.self_train import models
from st_tf.self_train import stages


@gin.configurable
class OfflineStudent:
  """Pseudo-label once with a fixed teacher, then train the student."""

  mode = 'offline'

  def __init__(self,
               dataset: Callable[..., tf.data.Dataset] = (
                   pipeline.build_self_training_dataset)):
    """`dataset`: the student dataset builder, called by the trainer as
    `dataset(input_context=..., pseudo_file_pattern=<the round's pseudo
    labels>)` in the 'student' scope (`self_train.student_dataset`)."""
    self.dataset = dataset

  def pseudo_label(self, round_: models.Round) -> str:
    """Stage: the teacher labels the unlabeled split; returns the folder."""
    teacher = round_.teacher
    pseudo_dir = os.path.join(round_.round_dir, 'pseudo_labels')

    def label():
      with gin.config_scope(teacher.scope):
        pseudo_runner.pseudo_label(output_dir=pseudo_dir,
                                   teacher=teacher.teacher_factory(),
                                   shard_index=0, num_shards=1)

    round_.log.run(f'{round_.prefix}/pseudo_labels',
                   lambda: stages.pseudo_labels_complete(pseudo_dir), label)
    return pseudo_dir

  def run(self, round_: models.Round) -> models.StudentResult:
    """Pseudo labels, student training and its evaluation."""
    pseudo_dir = self.pseudo_label(round_)
    student_dir = round_.student_dir
    models.train_stage(
        round_.log, f'{round_.prefix}/student/train', student_dir,
        models.STUDENT_SCOPE,
        train_dataset=functools.partial(
            self.dataset,
            pseudo_file_pattern=writer_lib.file_pattern(pseudo_dir)),
        **round_.init_kwargs())
    student = models.TrainedModel(models.STUDENT_SCOPE,
                                  checkpoint_dir=student_dir,
                                  eval_dir=student_dir)
    record = models.eval_stage(round_.log, f'{round_.prefix}/student/eval',
                               student, round_.metric, round_.test)
    return models.StudentResult(student, record,
                                stages.pseudo_label_stats(pseudo_dir))
