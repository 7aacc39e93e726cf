"""The shared `Anchors` of parser and head (st_tf/modeling/anchors.py)."""
import gin
import pytest
import tensorflow as tf

from st_tf.data import parsers
from st_tf.modeling import anchors
from st_tf.modeling import backbones
from st_tf.modeling import decoders
from st_tf.modeling import detection

_MODEL = anchors.AnchorSpec(3, 5, 1, (1.0, 2.0, 0.5), 2.0)
_SIZE = 64


def _bind(text):
  gin.parse_config(text)


def _tiny_retinanet(**kwargs):
  return detection.build_retinanet(
      input_size=(_SIZE, _SIZE), num_classes=3,
      backbone=backbones.resnet(model_id=10, depth_multiplier=0.25),
      decoder=decoders.fpn(num_filters=8), head_num_convs=1,
      head_num_filters=8, **kwargs)


def test_defaults_are_model_gardens_and_values_are_normalized():
  assert anchors.configured_anchors() == anchors.AnchorSpec(
      3, 7, 3, (0.5, 1.0, 2.0), 4.0)
  spec = anchors.AnchorSpec(3, 5, 1, [1, 2], 2)
  assert spec.aspect_ratios == (1.0, 2.0) and spec.anchor_size == 2.0
  assert spec.num_anchors == 2
  with pytest.raises(ValueError, match='min_level 5 > max_level 3'):
    anchors.AnchorSpec(min_level=5, max_level=3)


def test_unbound_anchors_are_not_checked():
  anchors.check_anchor_scopes(_MODEL)


def test_matching_bindings_pass_in_every_scope():
  _bind('''
R = [1.0, 2.0, 0.5]
Anchors.min_level = 3
Anchors.max_level = 5
Anchors.num_scales = 1
Anchors.aspect_ratios = %R
Anchors.anchor_size = 2.0
train/Anchors.num_scales = 1
student/Anchors.aspect_ratios = [1.0, 2.0, 0.5]
''')
  specs = anchors.gin_anchor_specs()
  assert set(specs) == {'', 'train', 'student'}
  assert all(spec == _MODEL for spec in specs.values())
  anchors.check_anchor_scopes(_MODEL)


def test_unscoped_default_mismatch_names_the_binding():
  # Anchors' default aspect order (0.5, 1, 2) is not the model's.
  _bind('''
Anchors.min_level = 3
Anchors.max_level = 5
Anchors.num_scales = 1
Anchors.anchor_size = 2.0
''')
  with pytest.raises(ValueError, match=r'Anchors.aspect_ratios = '
                     r'\(0.5, 1.0, 2.0\) but the RetinaNet is built with '
                     r'aspect_ratios = \(1.0, 2.0, 0.5\)'):
    anchors.check_anchor_scopes(_MODEL)


def test_scoped_override_is_checked():
  _bind('''
Anchors.min_level = 3
Anchors.max_level = 5
Anchors.num_scales = 1
Anchors.aspect_ratios = [1.0, 2.0, 0.5]
Anchors.anchor_size = 2.0
student/Anchors.anchor_size = 4.0
''')
  with pytest.raises(ValueError, match=r'student/Anchors.anchor_size = 4.0 '
                     r'.*Bind the anchors once, unscoped'):
    anchors.check_anchor_scopes(_MODEL)


def test_build_retinanet_runs_the_check():
  _bind('''
Anchors.max_level = 5
student/Anchors.max_level = 7
''')
  with pytest.raises(ValueError, match='student/Anchors.max_level = 7'):
    _tiny_retinanet()


def test_explicit_anchors_must_be_a_spec():
  with pytest.raises(TypeError, match='build_retinanet.anchors must be an '
                     'st_tf.modeling.anchors.AnchorSpec'):
    _tiny_retinanet(anchors={'max_level': 5})


def test_one_binding_reaches_parser_and_model():
  _bind('''
Anchors.max_level = 5
Anchors.num_scales = 2
Anchors.aspect_ratios = [1.0, 2.0]
Anchors.anchor_size = 2.0
DetectionParser.output_size = (64, 64)
''')
  parser = gin.get_configurable('DetectionParser')()
  model = gin.get_configurable('build_retinanet')(
      input_size=(_SIZE, _SIZE), num_classes=3,
      backbone=backbones.resnet(model_id=10, depth_multiplier=0.25),
      decoder=decoders.fpn(num_filters=8), head_num_convs=1,
      head_num_filters=8)
  assert parser.anchors == model_anchors(model) == anchors.AnchorSpec(
      3, 5, 2, (1.0, 2.0), 2.0)
  outputs = model(tf.zeros([1, _SIZE, _SIZE, 3]), training=True)
  boxes = parser.anchor_boxes()
  assert sorted(boxes) == sorted(outputs['box_outputs']) == ['3', '4', '5']
  for level, box in boxes.items():
    per_location = 2 * 2  # num_scales x aspect ratios
    assert box.shape[-1] == 4 * per_location
    assert outputs['box_outputs'][level].shape[1:] == box.shape
    assert outputs['cls_outputs'][level].shape[-1] == 3 * per_location


def model_anchors(model) -> anchors.AnchorSpec:
  """The anchors of a built RetinaNetModel (its get_config)."""
  config = model.get_config()
  return anchors.AnchorSpec(*(config[f] for f in anchors.FIELDS))


def test_parser_reads_the_scoped_anchors_it_is_built_in():
  _bind('''
Anchors.num_scales = 1
student/Anchors.num_scales = 2
''')
  with gin.config_scope('student'):
    assert parsers.DetectionParser().anchors.num_scales == 2
  assert parsers.DetectionParser().anchors.num_scales == 1
