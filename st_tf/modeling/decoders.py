"""Gin-configurable decoder choices over Model Garden decoders.

Each configurable returns a Model Garden decoder *config*
(`official.vision.configs.decoders.Decoder`); the model builders pass it to
Model Garden's decoder factory together with the model's `min_level`,
`max_level`, norm/activation and L2 regularizer. Choose in gin with an
evaluated reference:

  build_retinanet.decoder = @fpn()
  fpn.num_filters = 64

The identity decoder (SpineNet's choice) feeds backbone features straight to
the head; the backbone must then output every level min_level..max_level.
"""
from typing import Optional, Sequence

import gin

from official.vision.configs import decoders as decoders_cfg


@gin.configurable
def identity_decoder() -> decoders_cfg.Decoder:
  """No decoder: the head reads the backbone levels directly."""
  return decoders_cfg.Decoder(type='identity', identity=decoders_cfg.Identity())


@gin.configurable
def fpn(num_filters: int = 256,
        fusion_type: str = 'sum',
        use_separable_conv: bool = False) -> decoders_cfg.Decoder:
  """FPN decoder config; builds extra levels up to the model's max_level."""
  return decoders_cfg.Decoder(
      type='fpn',
      fpn=decoders_cfg.FPN(
          num_filters=num_filters,
          fusion_type=fusion_type,
          use_separable_conv=use_separable_conv))


@gin.configurable
def nasfpn(num_filters: int = 256,
           num_repeats: int = 5,
           use_separable_conv: bool = False) -> decoders_cfg.Decoder:
  """NAS-FPN decoder config (the paper's detection/segmentation decoder)."""
  return decoders_cfg.Decoder(
      type='nasfpn',
      nasfpn=decoders_cfg.NASFPN(
          num_filters=num_filters,
          num_repeats=num_repeats,
          use_separable_conv=use_separable_conv))


@gin.configurable
def aspp(level: int = 4,
         dilation_rates: Sequence[int] = (6, 12, 18),
         dropout_rate: float = 0.0,
         num_filters: int = 256,
         use_depthwise_convolution: bool = False,
         pool_kernel_size: Optional[Sequence[int]] = None,
         spp_layer_version: str = 'v1') -> decoders_cfg.Decoder:
  """ASPP decoder config (segmentation only; outputs the single `level`)."""
  return decoders_cfg.Decoder(
      type='aspp',
      aspp=decoders_cfg.ASPP(
          level=level,
          dilation_rates=list(dilation_rates),
          dropout_rate=dropout_rate,
          num_filters=num_filters,
          use_depthwise_convolution=use_depthwise_convolution,
          pool_kernel_size=(list(pool_kernel_size)
                            if pool_kernel_size else None),
          spp_layer_version=spp_layer_version))
