"""Teachers: checkpoint and SavedModel loading, ids, clear errors; the mode."""
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from st_tf import main
from st_tf.pseudo_label import teacher as teacher_lib
from st_tf.pseudo_label import writer
from tests.pseudo_label import tiny


def test_checkpoint_teacher_id_step_and_classes(detection_teacher_dir):
  teacher = teacher_lib.checkpoint_teacher(
      model_dir=detection_teacher_dir,
      model=lambda: tiny.teacher_model(bias_seed=5))
  assert teacher.task == 'detection' and teacher.step == 7
  assert teacher.input_size == (tiny.SIZE, tiny.SIZE)
  assert teacher.teacher_id.startswith('checkpoint:ckpt-7:')
  assert teacher.teacher_id.endswith('@step=7')
  teacher.check_num_classes(tiny.NUM_CLASSES)
  with pytest.raises(ValueError, match='predicts 11 classes'):
    teacher.check_num_classes(4)
  # The restored weights are the saved ones, not the fresh model's.
  bias = lambda m: [v.numpy() for v in m.variables
                    if v.name.endswith('scores/bias:0')][0]
  fresh = tiny.teacher_model(bias_seed=5)
  saved = tiny.teacher_model(bias_seed=0)
  np.testing.assert_allclose(bias(teacher.model), bias(saved))
  assert not np.allclose(bias(fresh), bias(saved))


def test_checkpoint_teacher_id_survives_moves_and_urls(
    tmp_path, detection_teacher_dir, monkeypatch):
  ids = {}
  moved = str(tmp_path / 'moved' / 'teacher')
  tf.io.gfile.makedirs(moved)
  remote = 'ram://teacher_id_test/teacher'  # Stands in for gs://.
  tf.io.gfile.makedirs(remote)
  for name in os.listdir(detection_teacher_dir):
    for target in (moved, remote):
      tf.io.gfile.copy(os.path.join(detection_teacher_dir, name),
                       f'{target}/{name}', overwrite=True)
  monkeypatch.chdir(tmp_path)
  model = tiny.teacher_model()  # Each teacher restores its checkpoint in it.
  for spelling in (detection_teacher_dir, moved, 'moved/teacher'):
    ids[spelling] = teacher_lib.checkpoint_teacher(
        model_dir=spelling, model=model).teacher_id
  # (ram:// cannot restore a checkpoint: its isdir('ckpt-7') is true.)
  ids[remote] = teacher_lib.checkpoint_id(f'{remote}/ckpt-7', 7)
  assert len(set(ids.values())) == 1, ids
  assert str(tmp_path) not in ids[remote]  # No cwd glued to a URL.
  # Other weights, other id.
  other = str(tmp_path / 'other')
  tiny.save_checkpoint(tiny.teacher_model(bias_seed=3), other, step=7)
  assert teacher_lib.checkpoint_teacher(
      model_dir=other, model=model).teacher_id != ids[moved]


def test_checkpoint_teacher_without_checkpoint_fails(tmp_path):
  with pytest.raises(FileNotFoundError, match='No checkpoint'):
    teacher_lib.checkpoint_teacher(model_dir=str(tmp_path),
                                   model=tiny.teacher_model)


def test_saved_model_teacher_matches_export(detection_saved_model):
  teacher = teacher_lib.saved_model_teacher(export_dir=detection_saved_model)
  assert teacher.task == 'detection'
  assert teacher.input_size == (tiny.SIZE, tiny.SIZE)
  fingerprint = tf.saved_model.experimental.read_fingerprint(
      detection_saved_model)
  assert teacher.teacher_id == (
      f'saved_model:{fingerprint.saved_model_checksum}')
  with pytest.raises(ValueError, match='is a detection model'):
    teacher_lib.saved_model_teacher(export_dir=detection_saved_model,
                                    task='segmentation')


def test_saved_model_without_serving_signature_fails(tmp_path):
  module = tf.Module()
  module.f = tf.function(lambda x: {'y': x + 1},
                         input_signature=[tf.TensorSpec([None], tf.float32)])
  path = str(tmp_path / 'other')
  tf.saved_model.save(module, path, signatures={'other': module.f})
  with pytest.raises(ValueError, match="no 'serving_default' signature"):
    teacher_lib.saved_model_teacher(export_dir=path)
  tf.saved_model.save(module, path + '2', signatures=module.f)
  with pytest.raises(ValueError, match='must take images=uint8'):
    teacher_lib.saved_model_teacher(export_dir=path + '2')
  with pytest.raises(ValueError, match='not a SavedModel'):
    teacher_lib.saved_model_teacher(export_dir=str(tmp_path))


def test_mode_pseudo_label_with_saved_model_teacher(
    tmp_path, unlabeled, detection_saved_model):
  out = str(tmp_path / 'out')
  gin_file = tmp_path / 'pseudo.gin'
  gin_file.write_text(
      f"pseudo_label.input_pattern = '{unlabeled}'\n"
      'pseudo_label.teacher = @saved_model_teacher\n'
      f"saved_model_teacher.export_dir = '{detection_saved_model}'\n"
      'pseudo_label.num_classes = 11\n'
      'pseudo_label.batch_size = 5\n'
      'pseudo_label.gallery_size = 0\n'
      'pseudo_label.flip_tta = True\n')
  main.parse_config([str(gin_file)])
  manifest = main.run('pseudo_label', model_dir=out)
  assert manifest['teacher_id'].startswith('saved_model:')
  assert manifest['settings']['flip_tta']
  outputs = tiny.read_records(writer.file_pattern(out))
  assert tiny.source_ids(outputs) == tiny.source_ids(
      tiny.read_records(unlabeled))
  assert os.path.exists(os.path.join(out, 'operative_config.pseudo_label.gin'))
  gin.clear_config()
