"""`--mode=self_train` with the mean-teacher student on the smoke data.

gin/demo/digitscenes_smoke.gin + gin/demo/mean_teacher_detection_student.gin
(the overlay of the detection mean-teacher demo): a given (untrained)
teacher checkpoint -> mean-teacher student (4 steps, 2 epochs) from it ->
its EMA teacher as a checkpoint -> both evaluated -> export (the
baseline's EMA rows: tests/self_train/test_stages.py).
"""
import json
import os

import gin
import pytest
import tensorflow as tf

from st_tf import main
from st_tf import model as model_lib
from st_tf.self_train import online
from st_tf.self_train import runner
from st_tf.self_train import stages
from tests.pseudo_label import tiny
from tests.self_train import smoke

# Slow (> 1 min of CPU): not in the default run (pyproject addopts);
# `python -m pytest -m slow tests` runs them.
pytestmark = pytest.mark.slow

_OVERLAY = os.path.join(os.path.dirname(smoke.SMOKE_GIN),
                        'mean_teacher_detection_student.gin')
_STAGES = ['round_0/teacher/eval',
           'round_0/student/train', 'round_0/student/eval',
           'round_0/ema_teacher/checkpoint', 'round_0/ema_teacher/eval',
           'round_0/student/export']


def _teacher(model_dir):
  """The gin teacher, untrained, saved as a trainer checkpoint at step 4
  (training one would double the test's time)."""
  with gin.config_scope('teacher'):
    model = model_lib.SelfTrainingModel()
  model(tf.zeros([1, 64, 64, 3], tf.uint8), training=False)
  tiny.save_checkpoint(model, model_dir, step=4)
  return model_dir


def _parse(data, teacher_dir):
  main.parse_config([smoke.SMOKE_GIN, _OVERLAY], smoke.data_bindings(data) + [
      f"self_train.teacher_model_dir = '{teacher_dir}'",
      # No test split, no RandAugment trace: the pipeline, not the scores.
      'self_train.test_dataset = None', 'self_train.test_metric_fn = None',
      'self_train.baseline = False',
      'TwoViewParser.strong_augmenter = None',
      'TwoViewParser.max_num_instances = 8',
      # An untrained teacher scores ~0.01: a low threshold keeps boxes.
      'DetectionTargets.score_threshold = 0.01',
      'DetectionTargets.band_low = 0.005', 'DetectionTargets.max_boxes = 5',
      # Two epochs: one periodic eval (after epoch 1), then the stages'.
      'student/train.steps_per_epoch = 2', 'MT_EVAL_EVERY_EPOCHS = 1'])


def _scalars(log_dir):
  """{tag: {step: value}} of the TensorBoard event files in `log_dir`."""
  out = {}
  for path in tf.io.gfile.glob(os.path.join(log_dir, 'events.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        out.setdefault(value.tag, {})[event.step] = float(
            tf.make_ndarray(value.tensor))
  return out


def test_mean_teacher_student_pipeline(tmp_path):
  _parse(str(tmp_path / 'data'), str(tmp_path / 'teacher'))
  _teacher(str(tmp_path / 'teacher'))
  model_dir = str(tmp_path / 'run')
  summary = main.run('self_train', model_dir)

  student_dir = os.path.join(model_dir, 'round_0', 'student')
  ema_dir = os.path.join(student_dir, 'ema_teacher')
  assert not os.path.exists(os.path.join(model_dir, 'round_0',
                                         'pseudo_labels'))
  assert stages.final_step(student_dir) == stages.final_step(ema_dir) == 4
  with open(os.path.join(student_dir, 'operative_config.gin')) as f:
    assert 'MeanTeacherModel.ema_decay = 0.999' in f.read()
  assert [s['name'] for s in summary['stages']] == _STAGES
  (round0,) = summary['rounds']
  assert round0['mode'] == 'mean_teacher'
  with open(os.path.join(student_dir, 'eval_metrics.json')) as f:
    assert round0['student']['value'] == json.load(f)['metrics']['AP']
  with open(os.path.join(ema_dir, 'eval_metrics.json')) as f:
    assert round0['ema_teacher']['value'] == json.load(f)['metrics']['AP']
  assert round0['ema_gain'] == pytest.approx(
      round0['ema_teacher']['value'] - round0['teacher']['value'])
  pseudo = round0['pseudo_labels']
  assert pseudo['task'] == 'detection' and pseudo['score_threshold'] == 0.01
  assert 0 < pseudo['labels_per_image'] <= 5
  quality = pseudo['quality']['0.01']
  assert 0 <= quality['precision'] <= 1 and 0 <= quality['recall'] <= 1
  assert os.path.exists(os.path.join(student_dir, 'export', '4',
                                     'saved_model.pb'))
  with open(os.path.join(model_dir, 'summary.md')) as f:
    markdown = f.read()
  assert '| mean_teacher |' in markdown
  assert '| round | EMA teacher AP | gain over round teacher |' in markdown

  # TensorBoard under the student's model_dir: the online pseudo labels
  # per epoch, the student's and EMA teacher's val AP at each eval.
  train = _scalars(os.path.join(student_dir, 'train'))
  for tag in ('pseudo_loss', 'pseudo_boxes_per_image', 'pseudo_precision',
              'pseudo_recall'):
    assert sorted(train[tag]) == [2, 4], tag
  teacher_ap = _scalars(os.path.join(ema_dir, 'eval'))['AP']
  assert sorted(teacher_ap) == [2, 4]
  assert teacher_ap[4] == pytest.approx(round0['ema_teacher']['value'])
  assert sorted(_scalars(os.path.join(student_dir, 'eval'))['AP']) == [2, 4]

  # A rerun skips every stage and reports the same rounds.
  again = main.run('self_train', model_dir)
  assert {s['status'] for s in again['stages']} == {'skipped'}
  assert again['rounds'] == summary['rounds']


def test_student_dataset_belongs_to_the_offline_student(tmp_path):
  with pytest.raises(ValueError, match='MeanTeacherStudent.dataset'):
    runner.self_train(model_dir=str(tmp_path),
                      student=online.MeanTeacherStudent(),
                      student_dataset=lambda **kw: None)
  with pytest.raises(ValueError, match='eval_dataset'):
    online.MeanTeacherStudent(eval_every_epochs=1)
  assert not os.listdir(tmp_path)
