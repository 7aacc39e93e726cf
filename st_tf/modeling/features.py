"""Backbone + decoder of a Model Garden model config, shared by the
detection and segmentation builders (`detection.build_retinanet`,
`segmentation.build_segmentation_model`)."""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import tf_keras

from official.vision.modeling.decoders import factory as decoder_factory
from st_tf.modeling import backbones


class Features(NamedTuple):
  """The feature extractor of a model.

  Attributes:
    input_specs: `InputSpec` of [None, H, W, 3] normalized float images.
    backbone: the backbone model ({level: [B, H/2**l, W/2**l, C]}).
    decoder: the decoder model, or None (the backbone's levels are used).
    levels_what: 'backbone <type>' or 'decoder <type>', the part whose
      `output_specs` feed the head (named in level-check errors).
  """
  input_specs: tf_keras.layers.InputSpec
  backbone: tf_keras.Model
  decoder: Optional[tf_keras.Model]
  levels_what: str

  @property
  def output_specs(self):
    """{level: TensorShape} of what feeds the head (None: a decoder that
    does not tell, e.g. ASPP)."""
    if self.decoder is None:
      return self.backbone.output_specs
    return getattr(self.decoder, 'output_specs', None)


def build_features(model_config: Any, input_size: Sequence[int],
                   regularizer: Optional[tf_keras.regularizers.Regularizer]
                  ) -> Features:
  """Builds `model_config.backbone` and `.decoder` with Model Garden's
  factories.

  Args:
    model_config: a Model Garden model config (`RetinaNet`,
      `SemanticSegmentationModel`) with backbone, decoder, norm_activation,
      min_level and max_level.
    input_size: (height, width) in pixels.
    regularizer: kernel regularizer or None.
  """
  backbone_model = backbones.build_backbone(
      model_config.backbone, input_size, model_config.norm_activation,
      regularizer)
  decoder_model = decoder_factory.build_decoder(
      input_specs=backbone_model.output_specs,
      model_config=model_config,
      l2_regularizer=regularizer)
  what = (f'backbone {model_config.backbone.type}' if decoder_model is None
          else f'decoder {model_config.decoder.type}')
  input_specs = tf_keras.layers.InputSpec(
      shape=[None, int(input_size[0]), int(input_size[1]), 3])
  return Features(input_specs, backbone_model, decoder_model, what)
