"""`--mode=self_train` end to end on gin/demo/digitscenes_smoke.gin."""
import json
import os
import time

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from st_tf import main
from st_tf.self_train import runner
from st_tf.training import init as init_lib
from st_tf.self_train import stages
from tests.pseudo_label import tiny
from tests.self_train import smoke


_STAGES = ['round_0/teacher/train', 'round_0/teacher/eval',
           'round_0/teacher/eval_test',
           'round_0/pseudo_labels', 'round_0/student/train',
           'round_0/student/eval', 'round_0/student/eval_test',
           'round_0/student/export',
           'baseline/train', 'baseline/eval', 'baseline/eval_test']


def _parse_smoke(tmp_path):
  smoke.parse(str(tmp_path / 'data'))


def _mtimes(model_dir):
  return {os.path.join(d, f): os.path.getmtime(os.path.join(d, f))
          for d, _, files in os.walk(model_dir) for f in files
          if not f.startswith(('summary.', 'operative_config.self_train'))}


def test_smoke_pipeline_runs_then_resumes_by_skipping(tmp_path):
  _parse_smoke(tmp_path)
  model_dir = str(tmp_path / 'run')
  result = main.run('self_train', model_dir)

  # Every stage's output, in its own sub-folder.
  teacher = os.path.join(model_dir, 'round_0', 'teacher')
  student = os.path.join(model_dir, 'round_0', 'student')
  baseline = os.path.join(model_dir, 'baseline')
  assert stages.final_step(teacher) == 4
  assert stages.final_step(student) == 4
  # The baseline continues from the teacher, like the student.
  assert stages.final_step(baseline) == 4
  assert result['baseline']['step'] == 8  # teacher + own steps
  for d in (teacher, student, baseline):
    assert stages.train_complete(d) and stages.eval_complete(d, d)
  assert stages.pseudo_labels_complete(
      os.path.join(model_dir, 'round_0', 'pseudo_labels'))
  export_dir = os.path.join(student, 'export', '4')
  assert os.path.exists(os.path.join(export_dir, 'saved_model.pb'))
  # The student trained on human + pseudo batches with the normalized loss.
  with open(os.path.join(student, 'operative_config.gin')) as f:
    student_config = f.read()
  assert 'student/SelfTrainingModel.combiner = @normalized()' in student_config
  assert 'pseudo_file_pattern' not in student_config  # passed at run time

  with open(os.path.join(model_dir, 'summary.json')) as f:
    summary = json.load(f)
  assert summary == json.loads(json.dumps(result))
  assert summary['task'] == 'detection' and summary['metric'] == 'AP'
  (round0,) = summary['rounds']
  with open(os.path.join(student, 'eval_metrics.json')) as f:
    assert round0['student']['value'] == json.load(f)['metrics']['AP']
  assert round0['gain'] == pytest.approx(
      round0['student']['value'] - round0['teacher']['value'])
  # Every model is also scored on the test split, in <eval dir>/test.
  with open(os.path.join(student, 'test', 'eval_metrics.json')) as f:
    assert round0['student']['test_value'] == json.load(f)['metrics']['AP']
  assert round0['test_gain'] == pytest.approx(
      round0['student']['test_value'] - round0['teacher']['test_value'])
  assert summary['teacher']['test_value'] == round0['teacher']['test_value']
  assert summary['baseline']['test_student_minus_baseline'] == pytest.approx(
      round0['student']['test_value'] - summary['baseline']['test_value'])
  pseudo = round0['pseudo_labels']
  assert pseudo['images_in'] == pseudo['images_out'] == 32
  assert 0 < pseudo['labels'] <= 32 * 5  # max_boxes = 5 per image
  assert round0['student']['export_dir'] == export_dir
  assert summary['baseline']['steps_match'] is True
  assert [s['name'] for s in summary['stages']] == _STAGES
  assert all(s['status'] == 'ran' and s['seconds'] > 0
             for s in summary['stages'])
  with open(os.path.join(model_dir, 'summary.md')) as f:
    markdown = f.read()
  assert '| round | teacher AP | student AP | gain |' in markdown
  assert f'| {pseudo["labels"]} |' in markdown
  assert '| baseline/eval |' in markdown
  # Per-category AP of every model, named by the DigitScenes metadata the
  # template points `category_names` at (class id i is the digit i - 1).
  classes = summary['classes']
  assert classes and all(name == str(int(i) - 1)
                         for i, name in classes.items())
  with open(os.path.join(student, 'eval_metrics.json')) as f:
    student_metrics = json.load(f)['metrics']
  for class_id, name in classes.items():
    if f'AP/{class_id}' in student_metrics:
      assert round0['student']['per_class'][name] == (
          student_metrics[f'AP/{class_id}'])
  for entry in (summary['teacher'], round0['student'], summary['baseline']):
    assert set(entry['per_class']) <= set(classes.values())
    assert entry['per_class'] and 'test_per_class' in entry
  assert ('| id | class | teacher | round 0 student | baseline |'
          in markdown)
  first_id, first_name = next(iter(classes.items()))
  assert f'| {first_id} | {first_name} | ' in markdown

  # A rerun skips every stage and rewrites nothing but the summary.
  before = _mtimes(model_dir)
  start = time.time()
  again = main.run('self_train', model_dir)
  assert time.time() - start < 30
  assert {s['status'] for s in again['stages']} == {'skipped'}
  assert again['rounds'] == summary['rounds']
  assert _mtimes(model_dir) == before

def test_bad_arguments_fail_before_any_work(tmp_path):
  with pytest.raises(ValueError, match='num_rounds'):
    runner.self_train(model_dir=str(tmp_path), num_rounds=0)
  with pytest.raises(ValueError, match='not both'):
    runner.self_train(model_dir=str(tmp_path), teacher_model_dir='a',
                      teacher_export_dir='b')
  with pytest.raises(ValueError, match='checkpoint teacher'):
    runner.self_train(model_dir=str(tmp_path), teacher_export_dir='b',
                      init_student_from_teacher=True)
  with pytest.raises(ValueError, match='no checkpoint'):
    runner.self_train(model_dir=str(tmp_path),
                      teacher_model_dir=str(tmp_path))
  assert not os.listdir(tmp_path)


def test_student_init_restores_teacher_network_not_optimizer(tmp_path):
  teacher = tiny.segmentation_model()
  teacher.compile(optimizer=tf_keras.optimizers.SGD(0.1))
  teacher.optimizer.iterations.assign(9)  # tracked by the compiled model
  tiny.save_checkpoint(teacher, str(tmp_path), step=9)
  student = tiny.segmentation_model()
  student.compile(optimizer=tf_keras.optimizers.SGD(0.1))
  for var in student.network.weights:
    var.assign(tf.zeros_like(var))
  init_lib.initialize_model(student, 'full', str(tmp_path))
  for mine, theirs in zip(student.network.weights, teacher.network.weights):
    np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
  assert int(student.optimizer.iterations.numpy()) == 0
  with pytest.raises(ValueError, match='does not exist'):
    init_lib.initialize_model(student, 'full', str(tmp_path / 'none'))
