"""Tests of the gin backbone / decoder choices (configs, no weights)."""
import gin
import pytest

from official.vision.configs import common
from st_tf.modeling import backbones
from st_tf.modeling import decoders


@gin.configurable('st_test_get_backbone')
def _get_backbone(backbone=None):
  return backbone


def test_gin_reference_selects_backbone_config():
  gin.parse_config("""
      st_test_get_backbone.backbone = @spinenet_mobile()
      spinenet_mobile.model_id = '49XS'
      spinenet_mobile.max_level = 6
  """)
  cfg = _get_backbone()
  assert cfg.type == 'spinenet_mobile'
  assert cfg.get().model_id == '49XS'
  assert cfg.get().max_level == 6


@pytest.mark.parametrize('fn,kind,field,value', [
    (backbones.resnet, 'resnet', 'model_id', 50),
    (backbones.spinenet, 'spinenet', 'model_id', '49'),
    (backbones.efficientnet, 'efficientnet', 'model_id', 'b0'),
    (backbones.mobilenet, 'mobilenet', 'model_id', 'MobileNetV2'),
])
def test_backbone_configs(fn, kind, field, value):
  cfg = fn()
  assert cfg.type == kind
  assert getattr(cfg.get(), field) == value


def test_decoder_configs():
  assert decoders.identity_decoder().type == 'identity'
  assert decoders.fpn(num_filters=8).get().num_filters == 8
  nas = decoders.nasfpn(num_repeats=7, use_separable_conv=True)
  assert nas.type == 'nasfpn' and nas.get().num_repeats == 7
  assert decoders.aspp(dilation_rates=(1, 2)).get().dilation_rates == [1, 2]


def test_build_backbone_rejects_non_config():
  with pytest.raises(TypeError, match='@spinenet_mobile'):
    backbones.build_backbone('resnet', (64, 64), common.NormActivation())


def test_build_backbone_output_levels():
  model = backbones.build_backbone(
      backbones.resnet(model_id=10, depth_multiplier=0.25), (64, 64),
      common.NormActivation())
  assert sorted(model.output_specs) == ['2', '3', '4', '5']
  assert model.output_specs['3'][1:3] == (8, 8)
