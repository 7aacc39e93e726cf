"""The gin/paper recipes are real: each parses, builds its model, runs one
student `train_step` on CPU with every binding of the recipe, and its
operative config shows the released values (tables below).

Only these are overridden (the issue's rule): the image size (INPUT_SIZE ->
128 px), the batch (1 human + 1 pseudo image; 2 for the teacher) and the
model width where it is a multiple: the heads' / NAS-FPN's filters (/4) and
Model Garden's width constants of the backbones (SpineNet
`filter_size_scale` and `endpoints_num_filters`, EfficientNet
`width_scale`, `/4`; `SPINENET_WIDTH`, `EFFNET_WIDTH`). The %gin.REQUIRED
paths are given, as a user would.

The backbones keep their depth. The step runs eagerly
(`tf.config.run_functions_eagerly`, reset afterwards): the same
`train_step` code, op by op. Tracing and optimizing the graph of these deep
models costs 30-110 s per recipe on one CPU core (measured; it grows with
the layer count, not the width) where the eager step takes ~5 s; graph mode
of the same train step is covered by the tiny-model tests
(tests/test_model.py, tests/training/).

The student step runs through the trainer (`st_tf.training.trainer.train`
in the 'student' gin scope, as `--mode=self_train` runs it, with the
student dataset of human + pseudo records) and is stopped after its first
step by a callback, so `train.train_steps` etc. are the recipe's own.
Values the student step does not use (the teacher's own bindings, the
pseudo-labelling settings, the shipped sizes and batches) are checked in
the parsed, unmodified file (`CONFIG_ONLY`).
"""
from __future__ import annotations

import functools
import os
from typing import Any, Dict

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.vision.configs import common as mg_common
from official.vision.modeling.backbones import efficientnet as mg_efficientnet
from official.vision.modeling.backbones import spinenet as mg_spinenet

from st_tf import main
from st_tf.data import pipeline
from st_tf.data import schema
from st_tf.modeling import anchors
from st_tf.modeling import backbones
from st_tf.training import trainer

# Slow (> 1 min of CPU): not in the default run (pyproject addopts);
# `python -m pytest -m slow tests` runs them.
pytestmark = pytest.mark.slow

SIZE = 128
SPINENET_WIDTH = 0.25
EFFNET_WIDTH = 0.25

_SPINENET_COMMON = {
    'build_retinanet.num_classes': 91,
    # One binding for the head and the parser (st_tf/modeling/anchors.py).
    'Anchors.min_level': 3, 'Anchors.max_level': 7, 'Anchors.num_scales': 3,
    'Anchors.aspect_ratios': [1.0, 2.0, 0.5], 'Anchors.anchor_size': 4.0,
    'DetectionParser.match_threshold': 0.5,
    'DetectionParser.unmatched_threshold': 0.5,
    'build_retinanet.activation': 'swish',
    'build_retinanet.use_sync_bn': True,
    'build_retinanet.norm_momentum': 0.997,
    'build_retinanet.norm_epsilon': 0.001,
    'build_retinanet.l2_weight_decay': 0.00004,
    'build_retinanet.nms_version': 'v1',
    'build_retinanet.pre_nms_top_k': 5000,
    'build_retinanet.pre_nms_score_threshold': 0.05,
    'build_retinanet.nms_iou_threshold': 0.5,
    'build_retinanet.max_num_detections': 100,
    'S1.scale_min': 0.1, 'S1.scale_max': 1.9,
    'student/DetectionParser.policy': 'S1',
    'detection_loss.focal_alpha': 0.25, 'detection_loss.focal_gamma': 1.5,
    'detection_loss.huber_delta': 0.1, 'detection_loss.box_loss_weight': 50.0,
    'make_optimizer.name': 'sgd', 'make_optimizer.momentum': 0.9,
    'make_optimizer.global_clipnorm': 10.0,
    'warmup_step_decay.warmup_steps': 2000,
    'warmup_step_decay.warmup_learning_rate': 0.0067,
    'set_mixed_precision.precision': 'bfloat16',
}
_SPINENET_CONFIG_ONLY = {
    'INPUT_SIZE': (1280, 1280), 'BATCH_SIZE': 256,
    'HUMAN_BATCH_SIZE': 128, 'PSEUDO_BATCH_SIZE': 128,
    'build_retinanet.soft_nms_sigma': None,
    'teacher/build_retinanet.norm_epsilon': 0.0001,
    'pseudo_label.score_threshold': 0.5, 'pseudo_label.nms_version': 'v1',
    'pseudo_label.pre_nms_top_k': 5000, 'pseudo_label.scales': (1.0,),
}

# recipe -> (task, released values in the operative config, values of the
# shipped file, width overrides).
RECIPES: Dict[str, Dict[str, Any]] = {
    'coco_spinenet143_self_training.gin': dict(
        task='detection',
        released={**_SPINENET_COMMON,
                  'spinenet.model_id': '143',
                  'spinenet.stochastic_depth_drop_rate': 0.16,
                  'build_retinanet.head_num_convs': 4,
                  'warmup_step_decay.boundaries': [217610, 226870],
                  'warmup_step_decay.values': [0.28, 0.028, 0.0028],
                  'train.train_steps': 231500},
        config_only={**_SPINENET_CONFIG_ONLY,
                     'build_retinanet.head_num_filters': 256},
        width=['build_retinanet.head_num_filters = 64']),
    'coco_spinenet190_self_training.gin': dict(
        task='detection',
        released={**_SPINENET_COMMON,
                  'spinenet.model_id': '190',
                  'spinenet.stochastic_depth_drop_rate': 0.2,
                  'build_retinanet.head_num_convs': 7,
                  'warmup_step_decay.boundaries': [171310, 180570],
                  'warmup_step_decay.values': [0.3, 0.03, 0.003],
                  'train.train_steps': 185200},
        config_only={**_SPINENET_CONFIG_ONLY,
                     'build_retinanet.head_num_filters': 512},
        width=['build_retinanet.head_num_filters = 128']),
    'pascal_effnetb7_self_training.gin': dict(
        task='segmentation',
        released={
            'build_segmentation_model.num_classes': 21,
            'efficientnet.model_id': 'b7',
            'efficientnet.activation': 'swish',
            'efficientnet.se_inner_activation': 'swish',
            'efficientnet.norm_momentum': 0.99,
            'efficientnet.norm_epsilon': 0.001,
            'efficientnet.stochastic_depth_drop_rate': 0.2,
            'nasfpn.num_repeats': 7, 'nasfpn.use_separable_conv': True,
            'build_segmentation_model.head_feature_fusion': 'pyramid_fusion',
            'build_segmentation_model.head_level': 2,
            'build_segmentation_model.head_num_convs': 3,
            'build_segmentation_model.activation': 'relu',
            'build_segmentation_model.use_sync_bn': True,
            'build_segmentation_model.norm_momentum': 0.997,
            'build_segmentation_model.norm_epsilon': 0.001,
            'build_segmentation_model.l2_weight_decay': 0.00001,
            'segmentation_loss.use_groundtruth_dimension': False,
            'segmentation_loss.ignore_label': 255,
            'segmentation_loss.label_smoothing': 0.0,
            'S1.scale_min': 0.2, 'S1.scale_max': 1.5,
            'student/SegmentationParser.policy': 'S1',
            'make_optimizer.name': 'sgd', 'make_optimizer.momentum': 0.9,
            'make_optimizer.global_clipnorm': 10.0,
            'warmup_cosine.learning_rate': 0.08,
            'warmup_cosine.total_steps': 20000,
            'warmup_cosine.warmup_steps': 500,
            'warmup_cosine.warmup_learning_rate': 0.001,
            'set_mixed_precision.precision': 'bfloat16',
            'train.train_steps': 20000,
            'initialize_model.method': 'backbone',
        },
        config_only={
            'INPUT_SIZE': (512, 512), 'BATCH_SIZE': 256,
            'HUMAN_BATCH_SIZE': 128, 'PSEUDO_BATCH_SIZE': 128,
            'nasfpn.num_filters': 256,
            'build_segmentation_model.head_num_filters': 256,
            'pseudo_label.pixel_threshold': 0.5,
            'pseudo_label.scales': (0.5, 0.75, 1.0, 1.25, 1.5, 1.75),
        },
        width=['nasfpn.num_filters = 64',
               'build_segmentation_model.head_num_filters = 64']),
}


def _value(key: str, scope: str = '') -> Any:
  """The value bound to `key` ('[scope/]name.param' or a macro), resolved;
  in `scope` if bound there (the operative config of a scoped run)."""
  if '.' not in key:  # A macro.
    return anchors.resolve_value(gin.query_parameter(
        f'{key}/gin.macro.value'))
  keys = [key]
  if scope and not key.startswith(scope + '/'):
    keys.insert(0, f'{scope}/{key}')
  if '/' in key:  # Unscoped binding used in the scope.
    keys.append(key.rpartition('/')[2])
  for k in keys:
    try:
      return anchors.resolve_value(gin.query_parameter(k))
    except ValueError:
      continue
  raise ValueError(f'none of {keys} is bound')


def _same(have: Any, want: Any) -> bool:
  if isinstance(want, (list, tuple)):
    return list(have) == list(want)
  return have == want


def _check_table(table: Dict[str, Any], where: str, scope: str = '') -> None:
  wrong = {k: (_value(k, scope), v) for k, v in table.items()
           if not _same(_value(k, scope), v)}
  assert not wrong, f'{where}: (have, released) {wrong}'


def _write(path: str, examples) -> str:
  with tf.io.TFRecordWriter(path) as writer:
    for example in examples:
      writer.write(example.SerializeToString())
  return path


def _records(tmp_path, task: str) -> Dict[str, str]:
  """Two human and two pseudo records (160 x 200 px images)."""
  rng = np.random.default_rng(0)
  out = {}
  for kind in ('human', 'pseudo'):
    teacher_id = 'test-teacher' if kind == 'pseudo' else None
    examples = []
    for i in range(2):
      image = rng.integers(0, 255, (160, 200, 3), dtype=np.uint8)
      if task == 'detection':
        examples.append(schema.detection_example(
            image, [[0.1, 0.1, 0.6, 0.5], [0.3, 0.4, 0.9, 0.9]], [1, 18],
            f'{kind}{i}', scores=[0.9, 0.7] if teacher_id else None,
            teacher_id=teacher_id))
      else:
        mask = rng.integers(0, 21, (160, 200), dtype=np.uint8)
        mask[:20] = schema.IGNORE_LABEL
        examples.append(schema.segmentation_example(
            image, mask, f'{kind}{i}', teacher_id=teacher_id))
    out[kind] = _write(str(tmp_path / f'{kind}.tfrecord'), examples)
  return out


def _paths(name: str, records: Dict[str, str], tmp_path) -> list[str]:
  prefix = 'COCO' if name.startswith('coco') else 'PASCAL'
  bindings = [f"{prefix}_TRAIN_PATTERN = '{records['human']}'",
              f"{prefix}_UNLABELED_PATTERN = '{records['human']}'",
              f"{prefix}_VAL_PATTERN = '{records['human']}'"]
  if prefix == 'COCO':
    bindings.append(f"COCO_VAL_ANNOTATIONS = '{tmp_path}/val.json'")
  else:
    bindings.append(f"PASCAL_BACKBONE_CHECKPOINT = '{tmp_path}/backbone'")
  return bindings


class _StopAfterFirstStep(tf_keras.callbacks.Callback):

  def __init__(self):
    super().__init__()
    self.logs = None

  def on_train_batch_end(self, batch, logs=None):
    self.logs = dict(logs or {})
    self.model.stop_training = True


@pytest.fixture
def narrow_backbones(monkeypatch):
  """Model Garden's backbone width constants / 4; the step runs eagerly."""
  for model_id in ('143', '190'):
    scaling = dict(mg_spinenet.SCALING_MAP[model_id])
    scaling['filter_size_scale'] *= SPINENET_WIDTH
    scaling['endpoints_num_filters'] = int(
        scaling['endpoints_num_filters'] * SPINENET_WIDTH)
    monkeypatch.setitem(mg_spinenet.SCALING_MAP, model_id, scaling)
  scaling = dict(mg_efficientnet.SCALING_MAP['b7'])
  scaling['width_scale'] *= EFFNET_WIDTH
  monkeypatch.setitem(mg_efficientnet.SCALING_MAP, 'b7', scaling)
  tf.config.run_functions_eagerly(True)
  try:
    yield
  finally:
    tf.config.run_functions_eagerly(False)
    tf_keras.mixed_precision.set_global_policy('float32')


def _save_backbone_checkpoint(path: str) -> None:
  """A backbone checkpoint for the PASCAL recipe's ImageNet init."""
  with gin.config_scope('student'):
    backbone = backbones.build_backbone(
        backbones.efficientnet(), (SIZE, SIZE),
        mg_common.NormActivation())
  tf.train.Checkpoint(backbone=backbone).save(os.path.join(path, 'ckpt'))


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_recipe_runs_one_train_step_with_the_released_values(
    name, tmp_path, narrow_backbones):
  del narrow_backbones
  recipe = RECIPES[name]
  gin_file = f'gin/paper/{name}'
  records = _records(tmp_path, recipe['task'])
  paths = _paths(name, records, tmp_path)
  main.parse_config([gin_file], paths)  # As shipped: the released sizes.
  _check_table(recipe['config_only'], f'{gin_file} (parsed)')
  _check_table(recipe['released'], f'{gin_file} (parsed)')

  gin.clear_config()
  main.parse_config([gin_file], paths + [
      f'INPUT_SIZE = ({SIZE}, {SIZE})', 'BATCH_SIZE = 2',
      'HUMAN_BATCH_SIZE = 1', 'PSEUDO_BATCH_SIZE = 1'] + recipe['width'])
  if recipe['task'] == 'segmentation':
    _save_backbone_checkpoint(str(tmp_path / 'backbone'))
  stop = _StopAfterFirstStep()
  with gin.config_scope('student'):
    trainer.train(
        model_dir=str(tmp_path / 'student'), callbacks=[stop],
        train_dataset=functools.partial(
            pipeline.build_self_training_dataset,
            pseudo_file_pattern=records['pseudo']))
  assert stop.logs and np.isfinite(stop.logs['loss']), stop.logs
  assert stop.logs['pseudo_loss'] > 0 and stop.logs['human_loss'] > 0

  operative = (tmp_path / 'student' / trainer.OPERATIVE_CONFIG_FILE
              ).read_text()
  gin.clear_config()
  main.import_configurables()
  gin.parse_config(operative)
  _check_table(recipe['released'], f'{gin_file} (operative config)',
               scope='student')
