"""--mode=pretrain end to end: tiny run, backbone init of RetinaNet, resume,
errors."""
import json
import os

import numpy as np
import pytest

from st_tf import main
from st_tf.data import metadata
from st_tf.datasets.digitscenes import classification as dsc
from st_tf.losses import self_training
from st_tf.model import SelfTrainingModel
from st_tf.modeling import backbones
from st_tf.modeling import detection
from st_tf.pretrain import inputs
from st_tf.pretrain import model as model_lib
from st_tf.pretrain import runner
from st_tf.training import checkpoints
from st_tf.training import init as init_lib

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_GIN = os.path.join(_ROOT, 'gin', 'demo', 'digitscenes_pretrain.gin')


def _weights(layer):
  return [v.numpy() for v in layer.variables]


def _tiny_bindings(data_dir):
  return [f"DATA_DIR = '{data_dir}'",
          'PRETRAIN_STEPS = 2',
          'pretrain.steps_per_epoch = 2',
          'pretrain.batch_size = 4',
          'pretrain.eval_batch_size = 4',
          'pretrain.shuffle_buffer_size = 8',
          'warmup_cosine.warmup_steps = 1',
          'ensure_digitscenes_classification.num_train = 8',
          'ensure_digitscenes_classification.num_val = 6']


def test_pretrain_writes_backbone_that_initializes_retinanet(tmp_path):
  data_dir, model_dir = str(tmp_path / 'data'), str(tmp_path / 'run')
  main.parse_config([_GIN], _tiny_bindings(data_dir))
  metrics = main.run('pretrain', model_dir)  # prepare() makes the data

  assert dsc.is_classification_complete(data_dir, num_train=8, num_val=6)
  assert metrics['steps'] == 2 and 0.0 <= metrics['top1'] <= 1.0
  assert metrics['num_eval_examples'] == 6  # last partial batch counted
  assert metrics['num_train_examples'] == 8  # from the records' sidecar
  with open(os.path.join(model_dir, runner.METRICS_FILE)) as f:
    assert json.load(f) == metrics
  for name in ('ckpt-2.index', 'operative_config.gin',
               'operative_config.pretrain.gin', 'backbone/checkpoint'):
    assert os.path.exists(os.path.join(model_dir, name)), name
  assert not os.path.exists(os.path.join(model_dir, 'backbone.tmp'))

  # The trained backbone, as the trainer's last checkpoint holds it.
  trained = model_lib.build_classifier(num_classes=10)
  checkpoints.restore_model(trained, model_dir)

  # The detection demo's RetinaNet (128 px inputs, same gin `resnet.*`),
  # wrapped as training wraps it, takes exactly these backbone weights.
  retinanet = detection.build_retinanet()
  model = SelfTrainingModel(network=retinanet, loss_fn=lambda *a: {},
                            combiner=self_training.HumanOnlyCombiner())
  random_backbone = _weights(retinanet.backbone)
  head, decoder = _weights(retinanet.head), _weights(retinanet.decoder)
  init_lib.initialize_model(model, method='backbone',
                            checkpoint=os.path.join(model_dir, 'backbone'))
  got, want = _weights(retinanet.backbone), _weights(trained.backbone)
  assert len(got) == len(want) > 20
  for a, b in zip(got, want):
    np.testing.assert_array_equal(a, b)
  assert not all(np.array_equal(a, b) for a, b in zip(got, random_backbone))
  for a, b in zip(_weights(retinanet.head) + _weights(retinanet.decoder),
                  head + decoder):
    np.testing.assert_array_equal(a, b)

  # A finished run is not redone.
  files = [os.path.join(model_dir, n) for n in ('ckpt-2.index',
                                                'backbone/checkpoint')]
  mtimes = [os.stat(f).st_mtime_ns for f in files]
  assert main.run('pretrain', model_dir) == metrics
  assert [os.stat(f).st_mtime_ns for f in files] == mtimes
  assert runner.is_complete(model_dir, train_steps=2)
  assert not runner.is_complete(model_dir, train_steps=4)


def _patterns(data_dir):
  """The DigitScenes crops of `data_dir` as `pretrain`'s patterns."""
  return dict(train_pattern=dsc.file_pattern(data_dir, 'classification'),
              val_pattern=dsc.file_pattern(data_dir, 'classification_val'))


def test_bad_input_fails_clearly(tmp_path):
  model_dir = str(tmp_path / 'run')
  args = dict(model_dir=model_dir, num_classes=10, train_steps=2,
              steps_per_epoch=2)
  with pytest.raises(ValueError, match='classification-.*does not match'):
    runner.pretrain(**_patterns(str(tmp_path / 'missing')), **args)
  data_dir = str(tmp_path / 'data')
  dsc.generate_classification(data_dir, num_train=2, num_val=8)
  # The class count is checked against the records' metadata sidecar.
  assert metadata.read_metadata(
      _patterns(data_dir)['train_pattern'])['num_classes'] == 10
  with pytest.raises(ValueError, match='num_classes = 11 .* 10 classes'):
    runner.pretrain(**_patterns(data_dir), **dict(args, num_classes=11))
  with pytest.raises(ValueError, match='multiple of steps_per_epoch'):
    runner.pretrain(**_patterns(data_dir), **dict(args, train_steps=3))

  # Labels the model cannot predict are reported, not silently scored.
  small = model_lib.build_classifier(
      num_classes=2, backbone=backbones.resnet(model_id=10,
                                               depth_multiplier=0.25))
  labels = [dsc.crop_for('classification_val', i, 0)[1] for i in range(8)]
  assert max(labels) >= 2
  with pytest.raises(ValueError, match='outside the model.s classes'):
    runner.evaluate_top1(small, dsc.file_pattern(data_dir,
                                                  'classification_val'),
                         inputs.ClassificationParser(mode='eval'), 4)

  for name in os.listdir(data_dir):  # the held-out part is gone
    if name.startswith('classification_val-'):
      os.remove(os.path.join(data_dir, name))
  with pytest.raises(ValueError, match='classification_val-.*does not match'):
    runner.pretrain(**_patterns(data_dir), **args)
  assert not os.path.exists(model_dir)  # no work was done
