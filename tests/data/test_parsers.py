"""Parsers: fixed shapes, uint8 images, is_pseudo, eval groundtruths."""
import numpy as np
import pytest
import tensorflow as tf

from st_tf.data import parsers
from st_tf.modeling import anchors

SIZE = 64
# Levels 3-5, one anchor per location (anchor_size: the default, 4).
ANCHORS = anchors.AnchorSpec(min_level=3, max_level=5, num_scales=1,
                             aspect_ratios=(1.0,))


def _detection(num_boxes, teacher_id='', crowd=None):
  image = np.full((48, 80, 3), 90, np.uint8)
  boxes = np.tile([[0.2, 0.1, 0.7, 0.5]], [num_boxes, 1]).astype(np.float32)
  return {
      'image': tf.constant(image),
      'groundtruth_boxes': tf.constant(boxes),
      'groundtruth_classes': tf.constant(np.arange(1, num_boxes + 1),
                                         tf.int64),
      'groundtruth_is_crowd': tf.constant(
          crowd if crowd is not None else [False] * num_boxes, tf.bool),
      'groundtruth_area': tf.constant([100.] * num_boxes, tf.float32),
      'groundtruth_scores': tf.ones([num_boxes], tf.float32),
      'source_id': tf.constant('17'),
      'height': tf.constant(48, tf.int64),
      'width': tf.constant(80, tf.int64),
      'teacher_id': tf.constant(teacher_id),
  }


def _parser(**kwargs):
  return parsers.DetectionParser(output_size=(SIZE, SIZE), anchors=ANCHORS,
                                 **kwargs)


def _check_detection(images, labels, num_boxes):
  assert images.dtype == tf.uint8 and images.shape == (SIZE, SIZE, 3)
  assert labels['cls_targets']['3'].shape == (8, 8, 1)
  assert labels['box_targets']['5'].shape == (2, 2, 4)
  for key in ('cls_weights', 'box_weights'):
    assert np.all(np.isfinite(labels[key].numpy()))
  assert int(labels['num_boxes']) == num_boxes
  positives = int(tf.reduce_sum(tf.cast(
      labels['cls_targets']['3'] > 0, tf.int32)))
  for level in ('4', '5'):
    positives += int(tf.reduce_sum(tf.cast(
        labels['cls_targets'][level] > 0, tf.int32)))
  assert (positives > 0) == (num_boxes > 0)


@pytest.mark.parametrize('num_boxes', [0, 2])
def test_detection_parser_eager_and_in_tf_data(num_boxes):
  parser = _parser(policy='S1')
  images, labels = parser(_detection(num_boxes, teacher_id='t'))
  _check_detection(images, labels, num_boxes)
  assert float(labels['is_pseudo']) == 1.0
  ds = tf.data.Dataset.from_tensors(_detection(num_boxes)).map(parser)
  images, labels = next(iter(ds))
  _check_detection(images, labels, num_boxes)
  assert float(labels['is_pseudo']) == 0.0


def test_crowd_boxes_are_dropped_in_training():
  parser = _parser(policy='eval')
  _, labels = parser(_detection(2, crowd=[True, False]))
  assert int(labels['num_boxes']) == 1


def test_eval_mode_adds_groundtruths():
  parser = _parser(policy='S4', mode='eval')  # eval never augments
  ds = tf.data.Dataset.from_tensors(_detection(2)).map(parser)
  images, labels = next(iter(ds))
  _check_detection(images, labels, 2)
  gt = labels['groundtruths']
  assert int(gt['source_id']) == 17
  assert gt['boxes'].shape == (100, 4)
  np.testing.assert_allclose(gt['boxes'][0], [9.6, 8., 33.6, 40.], atol=1e-4)
  assert list(gt['classes'][:3].numpy()) == [1, 2, -1]
  # Resize only: 48x80 -> scale 0.8 -> 38x64 (pad to 64x64).
  np.testing.assert_allclose(labels['image_info'][2], [0.8, 0.8], atol=0.01)


def test_bad_mode_and_policy():
  with pytest.raises(ValueError, match='mode'):
    _parser(mode='predict')
  with pytest.raises(ValueError, match='S9'):
    _parser(policy='S9')


def test_segmentation_parser_eager_and_in_tf_data():
  label = np.zeros((48, 80, 1), np.uint8)
  label[10:20, 10:40] = 2
  label[0:2] = 255
  data = {'image': tf.fill([48, 80, 3], tf.constant(50, tf.uint8)),
          'label': tf.constant(label), 'source_id': tf.constant('1'),
          'height': tf.constant(48, tf.int64),
          'width': tf.constant(80, tf.int64), 'teacher_id': tf.constant('t')}
  for mode in ('train', 'eval'):
    parser = parsers.SegmentationParser(output_size=(SIZE, SIZE), policy='S4',
                                        mode=mode)
    for images, labels in (parser(data), next(iter(
        tf.data.Dataset.from_tensors(data).map(parser)))):
      assert images.dtype == tf.uint8 and images.shape == (SIZE, SIZE, 3)
      masks = labels['masks'].numpy()
      assert masks.dtype == np.int32 and masks.shape == (SIZE, SIZE, 1)
      assert set(np.unique(masks)) <= {0, 2, 255}
      assert float(labels['is_pseudo']) == 1.0
    if mode == 'eval':  # 48x80 -> 38x64: rows 38.. are padding = ignore
      assert np.all(masks[39:] == 255) and np.any(masks == 2)


def _flat(levels):
  return np.concatenate([levels[k].numpy().reshape(-1) for k in sorted(levels)])


@pytest.mark.parametrize('handling,expected', [('drop', 1.0), ('ignore', 0.0),
                                                ('soft', 0.7)])
def test_crowd_handling_weights_background_anchors_on_band_boxes(
    handling, expected):
  data = _detection(1, teacher_id='t')
  # One hard box (left) and one crowd (band) box of score 0.3 (right).
  data['groundtruth_boxes'] = tf.constant([[0.2, 0.05, 0.7, 0.4],
                                           [0.2, 0.55, 0.8, 0.95]])
  data['groundtruth_classes'] = tf.constant([1, 2], tf.int64)
  data['groundtruth_is_crowd'] = tf.constant([False, True])
  data['groundtruth_scores'] = tf.constant([0.9, 0.3])
  data['groundtruth_area'] = tf.constant([100., 100.])
  parser = _parser(policy='eval', crowd_handling=handling)
  reference = _parser(policy='eval')
  for run in (lambda p: p(data),
              lambda p: next(iter(tf.data.Dataset.from_tensors(data).map(p)))):
    _, labels = run(parser)
    _, plain = run(reference)
    weights = labels['cls_weights'].numpy()
    targets = _flat(labels['cls_targets'])
    changed = np.flatnonzero(~np.isclose(weights, plain['cls_weights'].numpy()))
    if handling == 'drop':
      assert not changed.size
    else:
      assert changed.size > 0
      np.testing.assert_allclose(weights[changed], expected, atol=1e-6)
      assert np.all(targets[changed] <= 0)  # only background anchors change
    # Positives (the hard box) and box weights never change.
    np.testing.assert_array_equal(targets, _flat(plain['cls_targets']))
    np.testing.assert_array_equal(labels['box_weights'].numpy(),
                                  plain['box_weights'].numpy())
    assert int(labels['num_boxes']) == 1


def test_crowd_handling_rejects_unknown_value():
  with pytest.raises(ValueError, match='crowd_handling'):
    _parser(crowd_handling='maybe')


@pytest.mark.parametrize('handling', ['ignore', 'soft'])
def test_crowd_handling_without_crowd_boxes_changes_nothing(handling):
  # A regression: with no crowd box the weight factor was +inf (the min of
  # an empty row), and the student's loss NaN.
  for num_boxes in (0, 2):
    data = _detection(num_boxes, teacher_id='t')
    _, labels = _parser(policy='eval', crowd_handling=handling)(data)
    _, plain = _parser(policy='eval')(data)
    np.testing.assert_array_equal(labels['cls_weights'].numpy(),
                                  plain['cls_weights'].numpy())
