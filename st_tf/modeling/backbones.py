"""Gin-configurable backbone choices over Model Garden backbones.

Each configurable returns a Model Garden backbone *config*
(`official.vision.configs.backbones.Backbone`, a one-of config); the model
builders (`detection.build_retinanet`, `segmentation.build_segmentation_model`)
turn it into a `tf_keras.Model` with Model Garden's backbone factory, sharing
the model's norm/activation settings and L2 regularizer. The choice is made in
gin with an evaluated reference, e.g.:

  build_retinanet.backbone = @spinenet_mobile()
  spinenet_mobile.model_id = '49XS'

Multi-scale backbones (SpineNet, SpineNet-Mobile) take `min_level` and
`max_level`; they must match the model's levels when the decoder is the
identity (the builders check this and raise a clear error).
"""
from typing import Optional

import gin
import tf_keras

from official.vision.configs import backbones as backbones_cfg
from official.vision.configs import common
from official.vision.modeling.backbones import factory as backbone_factory


@gin.configurable
def resnet(model_id: int = 50,
           depth_multiplier: float = 1.0,
           stem_type: str = 'v0',
           se_ratio: float = 0.0,
           stochastic_depth_drop_rate: float = 0.0,
           resnetd_shortcut: bool = False,
           replace_stem_max_pool: bool = False) -> backbones_cfg.Backbone:
  """ResNet backbone config (levels 2..5, strides 4..32)."""
  return backbones_cfg.Backbone(
      type='resnet',
      resnet=backbones_cfg.ResNet(
          model_id=model_id,
          depth_multiplier=depth_multiplier,
          stem_type=stem_type,
          se_ratio=se_ratio,
          stochastic_depth_drop_rate=stochastic_depth_drop_rate,
          resnetd_shortcut=resnetd_shortcut,
          replace_stem_max_pool=replace_stem_max_pool))


@gin.configurable
def spinenet(model_id: str = '49',
             min_level: int = 3,
             max_level: int = 7,
             stochastic_depth_drop_rate: float = 0.0) -> backbones_cfg.Backbone:
  """SpineNet backbone config (model_id '49S', '49', '96', '143', '190')."""
  return backbones_cfg.Backbone(
      type='spinenet',
      spinenet=backbones_cfg.SpineNet(
          model_id=str(model_id),
          min_level=min_level,
          max_level=max_level,
          stochastic_depth_drop_rate=stochastic_depth_drop_rate))


@gin.configurable
def spinenet_mobile(
    model_id: str = '49',
    min_level: int = 3,
    max_level: int = 7,
    se_ratio: float = 0.2,
    expand_ratio: int = 6,
    stochastic_depth_drop_rate: float = 0.0,
    use_keras_upsampling_2d: bool = False) -> backbones_cfg.Backbone:
  """SpineNet-Mobile backbone config (model_id '49', '49S', '49XS')."""
  return backbones_cfg.Backbone(
      type='spinenet_mobile',
      spinenet_mobile=backbones_cfg.SpineNetMobile(
          model_id=str(model_id),
          min_level=min_level,
          max_level=max_level,
          se_ratio=se_ratio,
          expand_ratio=expand_ratio,
          stochastic_depth_drop_rate=stochastic_depth_drop_rate,
          use_keras_upsampling_2d=use_keras_upsampling_2d))


@gin.configurable
def efficientnet(model_id: str = 'b0',
                 se_ratio: float = 0.25,
                 stochastic_depth_drop_rate: float = 0.0
                ) -> backbones_cfg.Backbone:
  """EfficientNet backbone config (model_id 'b0'..'b7'; levels 2..5)."""
  return backbones_cfg.Backbone(
      type='efficientnet',
      efficientnet=backbones_cfg.EfficientNet(
          model_id=model_id,
          se_ratio=se_ratio,
          stochastic_depth_drop_rate=stochastic_depth_drop_rate))


@gin.configurable
def mobilenet(model_id: str = 'MobileNetV2',
              filter_size_scale: float = 1.0,
              stochastic_depth_drop_rate: float = 0.0,
              output_stride: Optional[int] = None) -> backbones_cfg.Backbone:
  """MobileNet backbone config (e.g. 'MobileNetV2', 'MobileNetV3Small')."""
  return backbones_cfg.Backbone(
      type='mobilenet',
      mobilenet=backbones_cfg.MobileNet(
          model_id=model_id,
          filter_size_scale=filter_size_scale,
          stochastic_depth_drop_rate=stochastic_depth_drop_rate,
          output_stride=output_stride))


def build_backbone(
    backbone: backbones_cfg.Backbone,
    input_size: tuple[int, int],
    norm_activation: common.NormActivation,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> tf_keras.Model:
  """Builds a backbone model with Model Garden's backbone factory.

  Args:
    backbone: a backbone config, e.g. from `spinenet_mobile()`.
    input_size: (height, width) in pixels of the (normalized float) images.
    norm_activation: shared batch-norm / activation settings.
    l2_regularizer: optional kernel regularizer.

  Returns:
    A `tf_keras.Model` mapping images [B, H, W, 3] to a dict
    {str(level): [B, H / 2**level, W / 2**level, C]} (see `.output_specs`).
  """
  if not isinstance(backbone, backbones_cfg.Backbone):
    raise TypeError(
        'backbone must be a Model Garden Backbone config (use an evaluated '
        'gin reference such as `@spinenet_mobile()`), got '
        f'{type(backbone).__name__}: {backbone!r}')
  input_specs = tf_keras.layers.InputSpec(
      shape=[None, int(input_size[0]), int(input_size[1]), 3])
  return backbone_factory.build_backbone(
      input_specs=input_specs,
      backbone_config=backbone,
      norm_activation_config=norm_activation,
      l2_regularizer=l2_regularizer)
