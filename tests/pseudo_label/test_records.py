"""Fast pseudo records == the schema writers' records, through the decoders."""
import threading

import numpy as np
import pytest
import tensorflow as tf

from st_tf.data import decoders
from st_tf.datasets.digitscenes import scenes as digitscenes
from st_tf.data import schema
from st_tf.pseudo_label import background
from st_tf.pseudo_label import records


def _input_record(**kwargs) -> bytes:
  """A human DigitScenes-like record WITH ground truth and a mask."""
  image, boxes, classes = digitscenes.scene_for('unlabeled', 3, 0, 64)[:3]
  example = schema.detection_example(image, boxes, classes, 'img-3',
                                     image_format='jpeg', **kwargs)
  example.features.feature[schema.SEGMENTATION_MASK].bytes_list.value.append(
      schema.encode_image(np.zeros([64, 64], np.uint8)))
  return example.SerializeToString(), image


def _decode_detection(data: bytes) -> dict:
  decoded = decoders.DetectionDecoder(num_classes=11).decode(tf.constant(data))
  return {k: v.numpy() for k, v in decoded.items()}


def test_detection_record_decodes_like_the_schema_writer():
  record, _ = _input_record()
  boxes = np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 0.3]], np.float32)
  classes, scores = np.array([3, 7]), np.array([0.9, 0.55], np.float32)
  area = np.array([100.0, 250.5], np.float32)
  fast = records.pseudo_detection_record(record, boxes, classes, scores, area,
                                         'teacher:a')
  encoded = tf.train.Example.FromString(record).features.feature[
      schema.IMAGE_ENCODED].bytes_list.value[0]
  slow = schema.detection_example(encoded, boxes, classes, 'img-3', area=area,
                                  scores=scores, teacher_id='teacher:a')
  assert schema.is_pseudo_example(tf.train.Example.FromString(fast))
  got, want = _decode_detection(fast), _decode_detection(
      slow.SerializeToString())
  assert set(got) == set(want)
  for key in want:
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  # Same keys as the schema writer: the input's ground truth and mask are
  # not carried over.
  keys = lambda d: set(tf.train.Example.FromString(d).features.feature)
  assert keys(fast) == keys(slow.SerializeToString())


def test_empty_detection_and_missing_image_keys_are_filled():
  image = digitscenes.scene_for('unlabeled', 1, 0, 64)[0]
  bare = tf.train.Example()
  bare.features.feature[schema.IMAGE_ENCODED].bytes_list.value.append(
      schema.encode_image(image, 'png'))
  data = records.pseudo_detection_record(
      bare.SerializeToString(), np.zeros([0, 4]), [], [], [], 't',
      source_id=b'x7', height=64, width=64)
  f = tf.train.Example.FromString(data).features.feature
  assert f[schema.IMAGE_FORMAT].bytes_list.value == [b'PNG']
  assert f[schema.IMAGE_HEIGHT].int64_list.value == [64]
  decoded = _decode_detection(data)
  assert decoded['source_id'] == b'x7'
  assert decoded['groundtruth_boxes'].shape == (0, 4)
  np.testing.assert_array_equal(decoded['image'], image)
  with pytest.raises(ValueError, match='teacher_id'):
    records.pseudo_detection_record(bare.SerializeToString(), np.zeros([0, 4]),
                                    [], [], [], '')
  with pytest.raises(ValueError, match='1 boxes but 0 classes'):
    records.pseudo_detection_record(bare.SerializeToString(), np.zeros([1, 4]),
                                    [], [1.0], [1.0], 't')


def test_segmentation_record_round_trip():
  record, image = _input_record()
  mask = np.full([64, 64], 255, np.uint8)
  mask[10:20, 5:30] = 4
  data = records.pseudo_segmentation_record(record, mask, 'teacher:s')
  decoded = decoders.SegmentationDecoder(num_classes=11).decode(
      tf.constant(data))
  np.testing.assert_array_equal(decoded['label'].numpy()[..., 0], mask)
  assert decoded['teacher_id'].numpy() == b'teacher:s'
  assert decoded['source_id'].numpy() == b'img-3'
  assert decoded['image'].shape == image.shape
  f = tf.train.Example.FromString(data).features.feature
  assert schema.BOX_YMIN not in f  # Input ground truth dropped.


def test_background_worker_keeps_order_and_reraises():
  done = []
  with background.BackgroundWorker(max_pending=2) as worker:
    for i in range(6):
      worker.submit(done.append, i)
    worker.flush()
    assert done == list(range(6))

    def fail():
      raise KeyError('boom')

    gate = threading.Event()
    worker.submit(gate.wait)  # Holds the thread: nothing below has run yet.
    worker.submit(fail)
    worker.submit(done.append, 99)  # Queued behind the failing task.
    gate.set()
    with pytest.raises(KeyError, match='boom'):
      worker.flush()
    # After the error was reported, later work is dropped, not run.
    worker.submit(done.append, 100)
    worker.flush()
  assert done == list(range(6))


def test_model_garden_decoder_and_parser_read_pseudo_records():
  """A Model Garden user trains on our pseudo records with its own input."""
  from official.vision.dataloaders import retinanet_input  # pylint: disable=g-import-not-at-top
  from official.vision.dataloaders import tf_example_decoder  # pylint: disable=g-import-not-at-top
  record, image = _input_record()
  boxes = np.array([[0.1, 0.2, 0.5, 0.6], [0.2, 0.3, 0.9, 0.8]], np.float32)
  data = records.pseudo_detection_record(
      record, boxes, np.array([3, 7]), np.array([0.9, 0.4], np.float32),
      np.array([100.0, 250.0], np.float32), 'teacher:mg',
      is_crowd=np.array([0, 1]))
  feature = tf.train.Example.FromString(data).features.feature
  np.testing.assert_allclose(
      feature['image/object/bbox/confidence'].float_list.value, [0.9, 0.4])
  decoded = tf_example_decoder.TfExampleDecoder().decode(tf.constant(data))
  np.testing.assert_allclose(decoded['groundtruth_boxes'], boxes)
  np.testing.assert_array_equal(decoded['groundtruth_classes'], [3, 7])
  np.testing.assert_array_equal(decoded['groundtruth_is_crowd'],
                                [False, True])
  np.testing.assert_array_equal(decoded['image'].shape, image.shape)
  parser = retinanet_input.Parser(output_size=[64, 64], min_level=3,
                                  max_level=5, num_scales=1,
                                  aspect_ratios=[1.0], anchor_size=4.0,
                                  skip_crowd_during_training=True)
  images, labels = parser.parse_fn(is_training=True)(decoded)
  assert images.shape == (64, 64, 3)
  # The crowd (ignore band) box is skipped, the hard box gives positives.
  assert int(tf.reduce_sum(tf.cast(labels['cls_weights'] > 0, tf.int32))) > 0
  positives = [tf.reduce_sum(tf.cast(t > 0, tf.int32))
               for t in labels['cls_targets'].values()]
  assert int(tf.add_n(positives)) > 0
