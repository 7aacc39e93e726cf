"""The parser/model anchor check of `build_retinanet` (st_tf/modeling/anchors.py)."""
import gin
import pytest

from st_tf.data import parsers  # pylint: disable=unused-import (registers DetectionParser)
from st_tf.modeling import anchors
from st_tf.modeling import backbones
from st_tf.modeling import decoders
from st_tf.modeling import detection

_MODEL = anchors.AnchorSpec.create(3, 5, 1, (1.0, 2.0, 0.5), 2.0)


def _bind(text):
  gin.parse_config(text)


def test_unbound_parser_is_not_checked():
  anchors.check_parser_anchors(_MODEL)


def test_matching_macros_pass_in_every_scope():
  _bind('''
R = [1.0, 2.0, 0.5]
DetectionParser.min_level = 3
DetectionParser.max_level = 5
DetectionParser.num_scales = 1
DetectionParser.aspect_ratios = %R
DetectionParser.anchor_size = 2.0
train/DetectionParser.mode = 'train'
student/DetectionParser.policy = 'S2'
''')
  specs = anchors.parser_anchor_specs()
  assert set(specs) == {'', 'train', 'student'}
  assert all(spec == _MODEL for spec in specs.values())
  anchors.check_parser_anchors(_MODEL)


def test_forgotten_aspect_ratios_fail_naming_the_binding():
  # The parser's default aspect order (0.5, 1, 2) is not the model's.
  _bind('''
DetectionParser.min_level = 3
DetectionParser.max_level = 5
DetectionParser.num_scales = 1
DetectionParser.anchor_size = 2.0
''')
  with pytest.raises(ValueError, match=r'DetectionParser.aspect_ratios = '
                     r'\(0.5, 1.0, 2.0\) but build_retinanet.aspect_ratios'):
    anchors.check_parser_anchors(_MODEL)


def test_scoped_override_is_checked():
  _bind('''
DetectionParser.min_level = 3
DetectionParser.max_level = 5
DetectionParser.num_scales = 1
DetectionParser.aspect_ratios = [1.0, 2.0, 0.5]
DetectionParser.anchor_size = 2.0
student/DetectionParser.anchor_size = 4.0
''')
  with pytest.raises(ValueError, match='student/DetectionParser.anchor_size'):
    anchors.check_parser_anchors(_MODEL)


def test_build_retinanet_runs_the_check():
  _bind('DetectionParser.max_level = 7\n')
  with pytest.raises(ValueError, match='DetectionParser.max_level = 7'):
    detection.build_retinanet(
        input_size=(64, 64), num_classes=3,
        backbone=backbones.resnet(model_id=10, depth_multiplier=0.25),
        decoder=decoders.fpn(num_filters=8), min_level=3, max_level=5)
