"""Gin builder of a Model Garden semantic segmentation model.

Backbone (gin reference, `st_tf.modeling.backbones`) + decoder (FPN, NAS-FPN
or ASPP, `st_tf.modeling.decoders`) + Model Garden `SegmentationHead`, in
Model Garden's `SegmentationModel`, assembled by
`official.vision.modeling.factory.build_segmentation_model`.

The paper's PASCAL model is EfficientNet-B7 + NAS-FPN with a head that fuses
the whole pyramid at level 2 (`head_feature_fusion='pyramid_fusion'`,
`head_level=2`): every decoder level is bilinearly resized to level 2 and
summed before the head convs.

Inputs: NORMALIZED float images [B, H, W, 3], H and W equal to `input_size`
(multiples of 2**max_level).
Output of `model(images, training=...)`: {'logits': [B, h, w, num_classes]}
with h = H / 2**head_level * head_upsample_factor (same for w); the loss /
evaluator resizes logits to the label size. `num_classes` counts background
(class 0); label 255 is ignore and is not a class.

The backbone alone (for backbone-only checkpoint init) is `model.backbone`.
With l2_weight_decay > 0 the L2 penalty is in `model.losses`.
"""
from typing import Optional, Sequence

import gin
import tf_keras

from official.vision.configs import backbones as backbones_cfg
from official.vision.configs import decoders as decoders_cfg
from official.vision.configs import semantic_segmentation as seg_cfg
from official.vision.modeling import factory
from st_tf.modeling import common
from st_tf.modeling import decoders
from st_tf.modeling import features


@gin.configurable
def build_segmentation_model(
    input_size: Sequence[int] = (512, 512),
    num_classes: int = gin.REQUIRED,
    backbone: backbones_cfg.Backbone = gin.REQUIRED,
    decoder: Optional[decoders_cfg.Decoder] = None,
    min_level: int = 3,
    max_level: int = 7,
    head_level: int = 3,
    head_num_convs: int = 2,
    head_num_filters: int = 256,
    head_use_depthwise_convolution: bool = False,
    head_prediction_kernel_size: int = 1,
    head_upsample_factor: int = 1,
    head_feature_fusion: Optional[str] = None,
    head_low_level: int = 2,
    head_low_level_num_filters: int = 48,
    activation: str = 'relu',
    use_sync_bn: bool = False,
    norm_momentum: float = 0.99,
    norm_epsilon: float = 0.001,
    l2_weight_decay: float = 0.0,
) -> tf_keras.Model:
  """Builds a Model Garden SegmentationModel.

  Args:
    input_size: (height, width) in pixels; multiples of 2**max_level.
    num_classes: number of classes INCLUDING background (class 0).
    backbone: backbone config, e.g. gin `@efficientnet()`.
    decoder: decoder config (`@fpn()`, `@nasfpn()`, `@aspp()`); None means
      identity (the head reads backbone features).
    min_level: smallest decoder level (FPN / NAS-FPN).
    max_level: largest decoder level (FPN / NAS-FPN).
    head_level: level the head predicts at (and fuses to with
      'pyramid_fusion').
    head_num_convs: convs before the classifier.
    head_num_filters: filters of those convs.
    head_use_depthwise_convolution: depthwise-separable head convs.
    head_prediction_kernel_size: classifier kernel size.
    head_upsample_factor: nearest upsampling of the head features.
    head_feature_fusion: None, 'pyramid_fusion', 'deeplabv3plus', ...
      (Model Garden `SegmentationHead.feature_fusion`).
    head_low_level: backbone level fused by 'deeplabv3plus'.
    head_low_level_num_filters: filters of that low-level projection.
    activation: activation of backbone/decoder/head.
    use_sync_bn: cross-replica batch norm.
    norm_momentum: batch-norm moving-average momentum.
    norm_epsilon: batch-norm epsilon.
    l2_weight_decay: L2 weight decay; the regularizer is l2(decay / 2).

  Returns:
    A built `SegmentationModel` (see module docstring for inputs/outputs).
  """
  common.check_input_size(input_size, max_level)
  common.check_num_classes(num_classes)
  decoder = decoder if decoder is not None else decoders.identity_decoder()
  norm_activation = common.norm_activation_config(
      activation, use_sync_bn, norm_momentum, norm_epsilon)
  model_config = seg_cfg.SemanticSegmentationModel(
      num_classes=num_classes,
      input_size=[int(input_size[0]), int(input_size[1]), 3],
      min_level=min_level,
      max_level=max_level,
      backbone=backbone,
      decoder=decoder,
      head=seg_cfg.SegmentationHead(
          level=head_level,
          num_convs=head_num_convs,
          num_filters=head_num_filters,
          use_depthwise_convolution=head_use_depthwise_convolution,
          prediction_kernel_size=head_prediction_kernel_size,
          upsample_factor=head_upsample_factor,
          feature_fusion=head_feature_fusion,
          low_level=head_low_level,
          low_level_num_filters=head_low_level_num_filters),
      norm_activation=norm_activation)
  regularizer = common.l2_regularizer(l2_weight_decay)

  parts = features.build_features(model_config, input_size, regularizer)
  if (parts.output_specs is not None and  # ASPP: no specs.
      head_feature_fusion != 'pyramid_fusion'):
    # pyramid_fusion resizes all levels to head_level, which may be absent.
    common.check_levels(parts.output_specs, head_level, head_level,
                        parts.levels_what)
  if head_feature_fusion in ('deeplabv3plus', 'deeplabv3plus_sum_to_merge'):
    common.check_levels(parts.backbone.output_specs, head_low_level,
                        head_low_level, f'backbone {backbone.type}')
  model = factory.build_segmentation_model(
      input_specs=parts.input_specs,
      model_config=model_config,
      l2_regularizer=regularizer,
      backbone=parts.backbone,
      decoder=parts.decoder)
  model.build(parts.input_specs.shape)  # Creates the head weights.
  return model
