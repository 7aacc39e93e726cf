"""Initialisation registry: random, backbone-only, full."""
import numpy as np
import pytest
import tensorflow as tf

from st_tf.training import init as init_lib
from tests.training import tiny


def _weights(layer):
  return [v.numpy() for v in layer.variables]


def test_backbone_only_restores_backbone_not_head(tmp_path):
  pretrained = tiny.tiny_model()
  path = tf.train.Checkpoint(backbone=pretrained.backbone).save(
      str(tmp_path / 'imagenet' / 'ckpt'))
  model = tiny.tiny_model()
  head_before = _weights(model.head)
  init_lib.initialize_model(model, method='backbone', checkpoint=path)
  for a, b in zip(_weights(model.backbone), _weights(pretrained.backbone)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(_weights(model.head), head_before):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(_weights(model.head)[0],
                            _weights(pretrained.head)[0])


def test_backbone_from_directory_and_inner_attribute(tmp_path):
  pretrained = tiny.tiny_model()
  tf.train.Checkpoint(backbone=pretrained.backbone).save(
      str(tmp_path / 'ckpt'))

  class Wrapper(tf.Module):

    def __init__(self, inner):
      super().__init__()
      self.network = inner

  model = tiny.tiny_model()
  init_lib.initialize_model(Wrapper(model), method='backbone',
                            checkpoint=str(tmp_path))
  np.testing.assert_array_equal(_weights(model.backbone)[0],
                                _weights(pretrained.backbone)[0])


def test_full_restores_everything(tmp_path):
  teacher = tiny.tiny_model()
  path = tf.train.Checkpoint(model=teacher, step=tf.Variable(3)).save(
      str(tmp_path / 'ckpt'))
  student = tiny.tiny_model()
  init_lib.initialize_model(student, method='full', checkpoint=path)
  for a, b in zip(_weights(student), _weights(teacher)):
    np.testing.assert_array_equal(a, b)


def test_random_keeps_weights():
  model = tiny.tiny_model()
  before = _weights(model)
  init_lib.initialize_model(model)
  for a, b in zip(_weights(model), before):
    np.testing.assert_array_equal(a, b)


def test_errors_name_the_problem(tmp_path):
  model = tiny.tiny_model()
  with pytest.raises(ValueError, match='does not exist'):
    init_lib.initialize_model(model, 'backbone', str(tmp_path / 'missing'))
  with pytest.raises(ValueError, match='No checkpoint found'):
    init_lib.initialize_model(model, 'full', str(tmp_path))
  with pytest.raises(ValueError, match='required'):
    init_lib.initialize_model(model, 'full', None)
  with pytest.raises(ValueError, match="'imagenet'"):
    init_lib.initialize_model(model, 'imagenet', None)
  wrong = tf.train.Checkpoint(other=tf.Variable(1.0)).save(
      str(tmp_path / 'wrong' / 'ckpt'))
  with pytest.raises(ValueError, match='does not hold this backbone'):
    init_lib.initialize_model(model, 'backbone', wrong)
  with pytest.raises(ValueError, match='no `model` matching'):
    init_lib.initialize_model(model, 'full', wrong)
  with pytest.raises(ValueError, match='Cannot find a backbone'):
    init_lib.find_backbone(tiny.tf_keras.Sequential())
