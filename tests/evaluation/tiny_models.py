"""Tiny uint8-input models shared by the evaluation and export tests.

A Model Garden network (built with Model Garden's own factory) wrapped in
`SelfTrainingModel`, whose `call` takes uint8 images ``[B, H, W, 3]``.
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras
from official.vision.configs import backbones
from official.vision.configs import decoders
from official.vision.configs import retinanet as retinanet_cfg
from official.vision.configs import semantic_segmentation as seg_cfg
from official.vision.modeling import factory

from st_tf import model as model_lib
from st_tf.losses import self_training


def _no_loss(outputs, labels, weight):
  del outputs, labels, weight
  return {'total': tf.constant(0.0)}


def _wrap(network: tf_keras.Model, size: int) -> tf_keras.Model:
  model = model_lib.SelfTrainingModel(
      network, _no_loss, self_training.get_combiner('human_only'))
  model(tf.zeros([1, size, size, 3], tf.uint8), training=False)
  return model


def _tiny_backbone() -> backbones.Backbone:
  return backbones.Backbone(
      type='resnet',
      resnet=backbones.ResNet(model_id=10, depth_multiplier=0.125))


def tiny_retinanet(num_classes: int = 4, size: int = 64,
                   nms_version: str = 'v2') -> tf_keras.Model:
  """A ~100k-parameter RetinaNet (levels 3-5) taking uint8 images.

  `nms_version` 'batched' (one combined-NMS op) traces, saves and loads
  several seconds faster than Model Garden's default 'v2'.
  """
  config = retinanet_cfg.RetinaNet(
      num_classes=num_classes, input_size=[size, size, 3],
      min_level=3, max_level=5,
      backbone=_tiny_backbone(),
      decoder=decoders.Decoder(type='fpn', fpn=decoders.FPN(num_filters=16)),
      head=retinanet_cfg.RetinaNetHead(num_convs=1, num_filters=16),
      detection_generator=retinanet_cfg.DetectionGenerator(
          pre_nms_score_threshold=0.0, max_num_detections=20,
          pre_nms_top_k=200, nms_version=nms_version))
  config.anchor.num_scales = 1
  config.anchor.aspect_ratios = [1.0]
  config.anchor.anchor_size = 3.0
  inner = factory.build_retinanet(
      tf_keras.layers.InputSpec(shape=[None, size, size, 3]), config)
  return _wrap(inner, size)


def tiny_segmentation(num_classes: int = 3, size: int = 64) -> tf_keras.Model:
  """A tiny semantic segmentation model (logits at 1/8 resolution)."""
  config = seg_cfg.SemanticSegmentationModel(
      num_classes=num_classes, input_size=[size, size, 3],
      min_level=3, max_level=5,
      backbone=_tiny_backbone(),
      decoder=decoders.Decoder(type='fpn', fpn=decoders.FPN(num_filters=16)),
      head=seg_cfg.SegmentationHead(level=3, num_convs=1, num_filters=16))
  inner = factory.build_segmentation_model(
      tf_keras.layers.InputSpec(shape=[None, size, size, 3]), config)
  return _wrap(inner, size)
