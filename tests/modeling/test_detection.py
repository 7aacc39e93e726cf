"""Tests of the gin RetinaNet builder (tiny ResNet-10 x0.25 + FPN)."""
import dataclasses

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from st_tf.modeling import anchors
from st_tf.modeling import backbones
from st_tf.modeling import decoders
from st_tf.modeling import detection

_SIZE = 64
_NUM_CLASSES = 11
_ANCHORS = anchors.AnchorSpec(min_level=3, max_level=5, anchor_size=2.0)
_TINY = dict(
    input_size=(_SIZE, _SIZE), num_classes=_NUM_CLASSES, anchors=_ANCHORS,
    head_num_convs=1, head_num_filters=16, head_use_separable_conv=True,
    nms_version='batched', pre_nms_top_k=100, max_num_detections=10,
    pre_nms_score_threshold=0.0)


def _tiny_backbone():
  return backbones.resnet(model_id=10, depth_multiplier=0.25)


@pytest.fixture(scope='module')
def tiny_model():
  return detection.build_retinanet(
      backbone=_tiny_backbone(), decoder=decoders.fpn(num_filters=16),
      **_TINY)


def test_training_outputs_per_level(tiny_model):
  images = tf.random.normal([2, _SIZE, _SIZE, 3])
  outputs = tiny_model(images, training=True)
  num_anchors = 3 * 3  # num_scales x aspect ratios
  assert sorted(outputs['cls_outputs']) == ['3', '4', '5']
  for level in (3, 4, 5):
    side = _SIZE // 2**level
    assert outputs['cls_outputs'][str(level)].shape == (
        2, side, side, num_anchors * _NUM_CLASSES)
    assert outputs['box_outputs'][str(level)].shape == (
        2, side, side, num_anchors * 4)
  assert 'detection_boxes' not in outputs


def test_inference_outputs_detections(tiny_model):
  images = tf.random.normal([2, _SIZE, _SIZE, 3])
  image_shape = tf.constant([[_SIZE, _SIZE], [_SIZE, _SIZE]], tf.float32)
  outputs = tiny_model(images, image_shape=image_shape, training=False)
  assert outputs['detection_boxes'].shape == (2, 10, 4)
  assert outputs['detection_scores'].shape == (2, 10)
  num = outputs['num_detections'].numpy()
  assert np.all((num >= 0) & (num <= 10))
  for b in range(2):
    classes = outputs['detection_classes'][b, :num[b]].numpy()
    boxes = outputs['detection_boxes'][b, :num[b]].numpy()
    # Background (0) is never returned; boxes are pixels clipped to the
    # image_shape.
    assert np.all((classes >= 1) & (classes < _NUM_CLASSES))
    assert np.all((boxes >= 0) & (boxes <= _SIZE))


def _num_params(model):
  # Like count_params(), without needing a first call of the model.
  return sum(int(np.prod(w.shape)) for w in model.weights)


def test_tiny_param_count_and_backbone_attribute(tiny_model):
  assert 10_000 < _num_params(tiny_model) < 400_000
  backbone = tiny_model.backbone
  assert isinstance(backbone, tf_keras.Model)
  assert {'3', '4', '5'} <= set(backbone.output_specs)
  model_vars = {id(v) for v in tiny_model.variables}
  assert backbone.variables
  assert all(id(v) in model_vars for v in backbone.variables)


def test_gin_swaps_backbone_and_decoder():
  gin.parse_config("""
      build_retinanet.backbone = @resnet()
      resnet.model_id = 10
      resnet.depth_multiplier = 0.125
      build_retinanet.decoder = @nasfpn()
      nasfpn.num_filters = 16
      nasfpn.num_repeats = 1
      nasfpn.use_separable_conv = True
  """)
  # NAS-FPN's cells need the five levels 3..7 (input 128 = 2**7).
  model = detection.build_retinanet(
      **dict(_TINY, input_size=(128, 128),
             anchors=dataclasses.replace(_ANCHORS, max_level=7)))
  assert type(model.backbone).__name__ == 'ResNet'
  assert model.backbone.get_config()['model_id'] == 10
  assert type(model.decoder).__name__ == 'NASFPN'
  outputs = model(tf.zeros([1, 128, 128, 3]), training=True)
  assert sorted(outputs['box_outputs']) == ['3', '4', '5', '6', '7']


def test_l2_weight_decay_adds_losses():
  model = detection.build_retinanet(
      backbone=_tiny_backbone(), decoder=decoders.fpn(num_filters=8),
      l2_weight_decay=1e-4, **_TINY)
  assert model.losses
  assert float(tf.add_n(model.losses)) > 0.0


def test_identity_decoder_needs_backbone_levels():
  # ResNet outputs levels 2..5; without a decoder level 6 does not exist.
  with pytest.raises(ValueError, match=r'missing \[6\]'):
    detection.build_retinanet(
        backbone=_tiny_backbone(), decoder=decoders.identity_decoder(),
        **dict(_TINY, anchors=dataclasses.replace(_ANCHORS, max_level=6)))


def test_bad_arguments_raise_clear_errors():
  with pytest.raises(ValueError, match='multiples of 2\\*\\*max_level'):
    detection.build_retinanet(backbone=_tiny_backbone(),
                              **dict(_TINY, input_size=(60, 64)))
  with pytest.raises(ValueError, match='num_classes'):
    detection.build_retinanet(backbone=_tiny_backbone(),
                              **dict(_TINY, num_classes=1))
  with pytest.raises(TypeError, match='Backbone config'):
    detection.build_retinanet(backbone='resnet', **_TINY)


def test_num_classes_is_required():
  with pytest.raises(Exception, match='num_classes'):
    detection.build_retinanet(backbone=_tiny_backbone(), input_size=(64, 64))


def test_soft_nms_goes_to_model_garden_v1_only():
  model = detection.build_retinanet(
      backbone=_tiny_backbone(), decoder=decoders.fpn(num_filters=16),
      **{**_TINY, 'nms_version': 'v1', 'pre_nms_top_k': 50},
      soft_nms_sigma=0.5)
  config = model.detection_generator.get_config()
  assert config['nms_version'] == 'v1' and config['soft_nms_sigma'] == 0.5
  outputs = model(tf.zeros([1, _SIZE, _SIZE, 3]), training=False)
  assert outputs['detection_boxes'].shape == (1, 10, 4)
  with pytest.raises(ValueError, match="nms_version = 'v1'"):
    detection.build_retinanet(backbone=_tiny_backbone(), soft_nms_sigma=0.5,
                              decoder=decoders.fpn(num_filters=16), **_TINY)
