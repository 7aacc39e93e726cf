"""gin/study/digitscenes_cell.gin: macros, scopes, and the same-init rule."""
import os

import gin
import pytest

from st_tf import main
from experiments.study import cells
from experiments.study import commands
from st_tf.training import init as init_lib

_CELL_GIN = os.path.join(commands.REPO_ROOT, commands.CELL_GIN)


def _parse(bindings):
  main.parse_config([_CELL_GIN], bindings)


def _settings(tmp_path):
  return commands.Settings(output_dir=str(tmp_path / 'out'),
                           data_dir=str(tmp_path / 'data'), steps=60)


def test_script_bindings_parse_and_set_the_pipeline(tmp_path):
  cell = cells.Cell('S3', 20, 'rand', 2)
  _parse(commands.cell_bindings(cell, _settings(tmp_path), '/l.tfrecord'))
  assert gin.query_parameter('self_train.init_student_from_teacher') is False
  assert gin.query_parameter('self_train.baseline') is False
  assert gin.query_parameter('self_train.export_student') is False
  assert gin.query_parameter('POLICY/gin.macro.value') == 'S3'
  assert gin.query_parameter('TRAIN_STEPS/gin.macro.value') == 60
  assert gin.query_parameter('STEPS_PER_EPOCH/gin.macro.value') == 60
  assert gin.query_parameter('SEED/gin.macro.value') == 2
  assert gin.query_parameter(
      'LABELED_PATTERN/gin.macro.value') == '/l.tfrecord'
  combiner = gin.query_parameter('student/SelfTrainingModel.combiner')
  assert combiner.configurable.name == 'normalized'
  teacher = gin.query_parameter('SelfTrainingModel.combiner')
  assert teacher.configurable.name == 'human_only'
  for part in ('human', 'pseudo'):  # 16 human + 16 pseudo per step
    ref = gin.query_parameter(
        f'build_self_training_dataset.{part}_batch_size')
    assert ref.scoped_selector == 'BATCH_SIZE/gin.macro'
  assert gin.query_parameter('BATCH_SIZE/gin.macro.value') == 16


@pytest.mark.parametrize('scope', ['teacher', 'student'])
def test_pretrained_init_reaches_teacher_and_student(tmp_path, monkeypatch,
                                                     scope):
  seen = []
  registry = init_lib._INITS  # pylint: disable=protected-access
  monkeypatch.setitem(registry, 'backbone',
                      lambda model, checkpoint: seen.append(checkpoint))
  cell = cells.Cell('S4', 100, 'pretrained', 0)
  _parse(commands.cell_bindings(cell, _settings(tmp_path), '/l',
                                init_checkpoint='/pre/backbone'))
  with gin.config_scope(scope):
    init_lib.initialize_model(None)  # what the trainer calls for a stage
  assert seen == ['/pre/backbone']
