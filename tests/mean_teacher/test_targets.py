"""In-graph pseudo targets == offline pseudo-labeling + the student parser."""
import functools

import numpy as np
import pytest
import tensorflow as tf

from st_tf.data import augment
from st_tf.data import decoders
from st_tf.data import parsers
from st_tf.mean_teacher import targets as targets_lib
from st_tf.pseudo_label import runner
from st_tf.pseudo_label import teacher as teacher_lib
from st_tf.pseudo_label import writer
from tests.pseudo_label import tiny

THRESHOLD, BAND_LOW = 0.3, 0.15


def _parser(crowd_handling):
  # The tiny model's anchors; no augmentation (the 64 px scenes are the
  # input frame), train mode so that crowd (band) boxes are used.
  return parsers.DetectionParser(
      output_size=(tiny.SIZE, tiny.SIZE), policy=augment.AugmentPolicy('id'),
      anchors=tiny.ANCHORS, mode='train', crowd_handling=crowd_handling)


def _decode_all(pattern, decoder):
  files = sorted(tf.io.gfile.glob(pattern))
  return {d['source_id'].numpy().decode(): d for d in (
      decoder.decode(r) for r in tf.data.TFRecordDataset(files))}


@pytest.fixture(scope='module')
def offline(tmp_path_factory, unlabeled):
  """(teacher network, {source id: (image, offline labels)}) per handling."""
  model = tiny.detection_model()
  model_dir = str(tmp_path_factory.mktemp('mt_teacher'))
  tiny.save_checkpoint(model, model_dir)
  out = str(tmp_path_factory.mktemp('mt_offline'))
  runner.pseudo_label(
      output_dir=out, input_pattern=unlabeled, num_classes=tiny.NUM_CLASSES,
      teacher=functools.partial(teacher_lib.checkpoint_teacher,
                                model_dir=model_dir,
                                model=tiny.detection_model),
      score_threshold=THRESHOLD, band_low=BAND_LOW, max_boxes=20,
      batch_size=6, gallery_size=0, quality=False)
  decoded = _decode_all(writer.file_pattern(out), decoders.DetectionDecoder(
      num_classes=tiny.NUM_CLASSES))
  return model.network, decoded


@pytest.mark.parametrize('crowd_handling', ['ignore', 'soft'])
def test_in_graph_targets_equal_offline(offline, crowd_handling):
  network, decoded = offline
  parser = _parser(crowd_handling)
  ids = sorted(decoded)
  expected = [parser(decoded[i])[1] for i in ids]
  images = tf.stack([decoded[i]['image'] for i in ids])
  maker = targets_lib.DetectionTargets(
      parser=parser, score_threshold=THRESHOLD, band_low=BAND_LOW,
      max_boxes=20)
  got = tf.function(lambda x: maker(network, {'weak': x}))(images)
  num_boxes = [int(e['num_boxes']) for e in expected]
  assert sum(num_boxes) > 0 and min(num_boxes) < max(num_boxes)
  assert sum(int(e['is_pseudo']) for e in expected) == len(ids)
  np.testing.assert_array_equal(got['num_boxes'].numpy(), num_boxes)
  band = [int(tf.reduce_sum(tf.cast(decoded[i]['groundtruth_is_crowd'],
                                    tf.int32))) for i in ids]
  assert sum(band) > 0  # the band is exercised
  for b, want in enumerate(expected):
    for key in ('cls_targets', 'box_targets'):
      for level in want[key]:
        np.testing.assert_allclose(got[key][level][b].numpy(),
                                   want[key][level].numpy(), atol=2e-4)
    for key in ('cls_weights', 'box_weights'):
      np.testing.assert_allclose(got[key][b].numpy(), want[key].numpy(),
                                 atol=1e-5)
