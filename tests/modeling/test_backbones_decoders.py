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


def test_efficientnet_backbone_norm_override():
  """The released EfficientNet: swish (SE too), BN 0.99, not the model's."""
  from st_tf.modeling import segmentation  # pylint: disable=g-import-not-at-top
  model = segmentation.build_segmentation_model(
      input_size=(64, 64), num_classes=3,
      backbone=backbones.efficientnet(
          model_id='b0', activation='swish', se_inner_activation='swish',
          norm_momentum=0.99, norm_epsilon=1e-3),
      decoder=decoders.fpn(num_filters=8), min_level=3, max_level=5,
      head_num_filters=8, activation='relu', norm_momentum=0.997,
      norm_epsilon=1e-4)
  config = model.backbone.get_config()
  assert (config['activation'], config['norm_momentum'],
          config['norm_epsilon']) == ('swish', 0.99, 1e-3)
  assert model.backbone._se_inner_activation == 'swish'  # pylint: disable=protected-access
  se_layers = [l for l in model.backbone.submodules
               if type(l).__name__ == 'SqueezeExcitation']
  assert se_layers and all(
      l.get_config()['activation'] == 'swish' for l in se_layers)
  decoder = model.decoder.get_config()
  assert (decoder['activation'], decoder['norm_momentum']) == ('relu', 0.997)
  default = backbones.build_backbone(
      backbones.efficientnet(model_id='b0'), (64, 64),
      common.NormActivation(activation='relu'))
  assert default._se_inner_activation == 'relu'  # pylint: disable=protected-access
