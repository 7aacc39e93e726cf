"""Dataset builders: human + pseudo batches, sharding, determinism."""
import functools

import numpy as np
import pytest
import tensorflow as tf

from st_tf.data import decoders
from st_tf.data import parsers
from st_tf.data import pipeline
from st_tf.data import schema
from st_tf.modeling import anchors

SIZE = 64
NUM_CLASSES = 11  # 10 classes + background
# Levels 3-5, one anchor per location (anchor_size: the default, 4).
ANCHORS = anchors.AnchorSpec(min_level=3, max_level=5, num_scales=1,
                             aspect_ratios=(1.0,))


def _write(path, n, teacher_id=None, segmentation=False):
  rng = np.random.default_rng(len(str(path)) + n)
  with tf.io.TFRecordWriter(str(path)) as writer:
    for i in range(n):
      image = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
      if segmentation:
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[8:30, 8:40] = 1 + i % 10
        example = schema.segmentation_example(image, mask, str(i),
                                              teacher_id=teacher_id)
      else:
        num = i % 3  # includes records with zero boxes
        boxes = np.tile([[0.1, 0.2, 0.6, 0.7]], [num, 1])
        example = schema.detection_example(
            image, boxes, [1 + i % 10] * num, str(i + 1),
            scores=[0.9] * num if teacher_id else None, teacher_id=teacher_id)
      writer.write(example.SerializeToString())
  return str(path)


@pytest.fixture(scope='module')
def records(tmp_path_factory):
  d = tmp_path_factory.mktemp('records')
  return {
      'human': _write(d / 'human.tfrecord', 6),
      'pseudo': _write(d / 'pseudo.tfrecord', 6, teacher_id='teacher-1'),
      'seg_human': _write(d / 'seg_h.tfrecord', 4, segmentation=True),
      'seg_pseudo': _write(d / 'seg_p.tfrecord', 4, 't', segmentation=True),
  }


@functools.lru_cache(maxsize=None)
def _parser(policy, mode='train'):
  """One parser per policy: its trace is reused by every test."""
  return parsers.DetectionParser(output_size=(SIZE, SIZE), policy=policy,
                                 anchors=ANCHORS, mode=mode)


def _student(records, policy='S1', **kwargs):
  kwargs.setdefault('human_batch_size', 2)
  kwargs.setdefault('pseudo_batch_size', 1)
  return pipeline.build_self_training_dataset(
      human_file_pattern=records['human'],
      pseudo_file_pattern=records['pseudo'], parser=_parser(policy),
      decoder=decoders.DetectionDecoder(NUM_CLASSES), **kwargs)


@pytest.mark.parametrize('policy', ['S1', 'S2', 'S3', 'S4'])
def test_student_batches_human_then_pseudo(records, policy):
  images, labels = next(iter(_student(records, policy)))
  assert images.dtype == tf.uint8 and images.shape == (3, SIZE, SIZE, 3)
  assert list(labels['is_pseudo'].numpy()) == [0., 0., 1.]
  assert labels['cls_targets']['3'].shape == (3, 8, 8, 1)
  assert labels['num_boxes'].shape == (3,)


def test_student_segmentation(records):
  parser = parsers.SegmentationParser(output_size=(SIZE, SIZE), policy='S4')
  ds = pipeline.build_self_training_dataset(
      human_file_pattern=records['seg_human'],
      pseudo_file_pattern=records['seg_pseudo'], parser=parser,
      decoder=decoders.SegmentationDecoder(NUM_CLASSES), human_batch_size=2)
  images, labels = next(iter(ds))
  assert images.shape == (4, SIZE, SIZE, 3)
  assert labels['masks'].shape == (4, SIZE, SIZE, 1)
  assert list(labels['is_pseudo'].numpy()) == [0., 0., 1., 1.]


def test_human_only_and_eval(records):
  train = pipeline.build_dataset(
      file_pattern=records['human'], parser=_parser('S1'),
      decoder=decoders.DetectionDecoder(NUM_CLASSES), global_batch_size=4,
      is_training=True)
  for images, labels in train.take(3):  # repeats past the 6 records
    assert images.shape == (4, SIZE, SIZE, 3)
    assert not labels['is_pseudo'].numpy().any()
  evaluation = pipeline.build_dataset(
      file_pattern=records['human'], parser=_parser('eval', 'eval'),
      decoder=decoders.DetectionDecoder(NUM_CLASSES), global_batch_size=3,
      is_training=False)
  batches = list(evaluation)
  assert len(batches) == 2  # one pass, no remainder
  ids = np.concatenate([b[1]['groundtruths']['source_id'] for b in batches])
  assert list(ids) == [1, 2, 3, 4, 5, 6]  # file order


def test_sharding_gives_per_replica_batches(records):
  context = tf.distribute.InputContext(
      num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
  ds = _student(records, human_batch_size=4, pseudo_batch_size=2,
                input_context=context)
  images, labels = next(iter(ds))
  assert images.shape[0] == 3
  assert list(labels['is_pseudo'].numpy()) == [0., 0., 1.]


def test_same_seed_same_batches(records):
  def first_batches(seed):
    ds = _student(records, 'S1', seed=seed)
    return [b[0].numpy() for b in ds.take(2)]
  a, b = first_batches(7), first_batches(7)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)


def test_missing_files_name_the_pattern(records, tmp_path):
  with pytest.raises(ValueError, match='nothing-here'):
    _student({'human': records['human'],
              'pseudo': str(tmp_path / 'nothing-here*')})
