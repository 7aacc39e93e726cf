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

Backbone-only norm/activation: a backbone may differ from the decoder and
head. The released PASCAL model (tensorflow/tpu
`models/official/efficientnet/efficientnet_builder.py`, `efficientnet()`)
builds EfficientNet with swish everywhere (SE blocks included) and BN
momentum 0.99 / epsilon 1e-3, while NAS-FPN and the head use the model's
relu and momentum 0.997. `efficientnet(activation=..., se_inner_activation=
..., norm_momentum=..., norm_epsilon=...)` sets those for the backbone only
(None = the model's setting; `se_inner_activation` None = Model Garden's
'relu'); they travel in `BackboneWithNorm.norm_override`.
"""
import dataclasses
from typing import Optional

import gin
import tf_keras

from official.modeling import hyperparams
from official.vision.configs import backbones as backbones_cfg
from official.vision.configs import common
from official.vision.modeling.backbones import efficientnet as mg_efficientnet
from official.vision.modeling.backbones import factory as backbone_factory



@dataclasses.dataclass
class NormOverride(hyperparams.Config):
  """Backbone-only norm/activation settings; None keeps the model's."""
  activation: Optional[str] = None
  norm_momentum: Optional[float] = None
  norm_epsilon: Optional[float] = None
  se_inner_activation: Optional[str] = None  # EfficientNet's SE blocks.


@dataclasses.dataclass
class BackboneWithNorm(backbones_cfg.Backbone):
  """Model Garden's Backbone one-of config + `NormOverride` for it."""
  norm_override: NormOverride = dataclasses.field(default_factory=NormOverride)


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
                 stochastic_depth_drop_rate: float = 0.0,
                 activation: Optional[str] = None,
                 se_inner_activation: Optional[str] = None,
                 norm_momentum: Optional[float] = None,
                 norm_epsilon: Optional[float] = None
                ) -> backbones_cfg.Backbone:
  """EfficientNet backbone config (model_id 'b0'..'b7'; levels 2..5).

  Args:
    model_id: 'b0'..'b7'.
    se_ratio: squeeze-excitation ratio of the MBConv blocks.
    stochastic_depth_drop_rate: final drop-connect rate (linear in depth).
    activation: the backbone's activation; None = the model's.
    se_inner_activation: the SE blocks' inner activation; None = Model
      Garden's default 'relu'. The released EfficientNets use 'swish'.
    norm_momentum: the backbone's BN momentum; None = the model's.
    norm_epsilon: the backbone's BN epsilon; None = the model's.
  """
  return BackboneWithNorm(
      type='efficientnet',
      efficientnet=backbones_cfg.EfficientNet(
          model_id=model_id,
          se_ratio=se_ratio,
          stochastic_depth_drop_rate=stochastic_depth_drop_rate),
      norm_override=NormOverride(
          activation=activation, norm_momentum=norm_momentum,
          norm_epsilon=norm_epsilon, se_inner_activation=se_inner_activation))


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
  override = getattr(backbone, 'norm_override', None)
  override = {k: v for k, v in (override.as_dict() if override else {}).items()
              if v is not None}
  se_inner_activation = override.pop('se_inner_activation', None)
  if override:
    norm_activation = common.NormActivation(
        **{**norm_activation.as_dict(), **override})
  if se_inner_activation is not None:
    if backbone.type != 'efficientnet':
      raise ValueError(
          'st_tf/modeling/backbones.py: se_inner_activation='
          f'{se_inner_activation!r} is an EfficientNet setting but the '
          f'backbone is {backbone.type!r}; drop the binding.')
    # Model Garden's factory passes no se_inner_activation; its builder
    # takes one.
    return mg_efficientnet.build_efficientnet(
        input_specs=input_specs, backbone_config=backbone,
        norm_activation_config=norm_activation,
        l2_regularizer=l2_regularizer,
        se_inner_activation=se_inner_activation)
  return backbone_factory.build_backbone(
      input_specs=input_specs,
      backbone_config=backbone,
      norm_activation_config=norm_activation,
      l2_regularizer=l2_regularizer)
