"""Tests of the gin segmentation builder (tiny ResNet-10 x0.25 models)."""
import pytest
import tensorflow as tf

from st_tf.modeling import backbones
from st_tf.modeling import decoders
from st_tf.modeling import segmentation

_SIZE = 64
_NUM_CLASSES = 11


def _tiny_backbone():
  return backbones.resnet(model_id=10, depth_multiplier=0.25)


def test_fpn_pyramid_fusion_head():
  model = segmentation.build_segmentation_model(
      input_size=(_SIZE, _SIZE), num_classes=_NUM_CLASSES,
      backbone=_tiny_backbone(),
      decoder=decoders.fpn(num_filters=16, use_separable_conv=True),
      min_level=2, max_level=5, head_level=2,
      head_feature_fusion='pyramid_fusion', head_num_convs=1,
      head_num_filters=16, head_use_depthwise_convolution=True)
  assert model.count_params() < 400_000
  assert sorted(model.decoder.output_specs) == ['2', '3', '4', '5']
  logits = model(tf.random.normal([2, _SIZE, _SIZE, 3]),
                 training=True)['logits']
  # Level 2 = stride 4.
  assert logits.shape == (2, _SIZE // 4, _SIZE // 4, _NUM_CLASSES)
  assert bool(tf.reduce_all(tf.math.is_finite(logits)))
  assert model.backbone is not None


def test_aspp_head_at_level_4_with_upsampling():
  model = segmentation.build_segmentation_model(
      input_size=(_SIZE, _SIZE), num_classes=3,
      backbone=_tiny_backbone(),
      decoder=decoders.aspp(level=4, dilation_rates=(2, 4), num_filters=8),
      min_level=3, max_level=4, head_level=4, head_num_convs=1,
      head_num_filters=8, head_upsample_factor=2)
  logits = model(tf.zeros([1, _SIZE, _SIZE, 3]), training=False)['logits']
  assert logits.shape == (1, _SIZE // 16 * 2, _SIZE // 16 * 2, 3)


def test_head_level_must_exist_without_fusion():
  with pytest.raises(ValueError, match=r'missing \[2\]'):
    segmentation.build_segmentation_model(
        input_size=(_SIZE, _SIZE), num_classes=3, backbone=_tiny_backbone(),
        decoder=decoders.fpn(num_filters=8), min_level=3, max_level=5,
        head_level=2)


def test_num_classes_must_count_background():
  with pytest.raises(ValueError, match='background'):
    segmentation.build_segmentation_model(
        input_size=(_SIZE, _SIZE), num_classes=1, backbone=_tiny_backbone(),
        max_level=5)
