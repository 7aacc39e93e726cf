"""Count-matching thresholds, the ignore band in records, and 'auto' runs."""
import numpy as np
import pytest
import tensorflow as tf

from st_tf.data import decoders
from st_tf.data import schema
from st_tf.pseudo_label import auto_threshold
from st_tf.pseudo_label import detection
from st_tf.pseudo_label import records
from st_tf.pseudo_label import runner
from st_tf.pseudo_label import writer
from tests.pseudo_label import tiny


def test_count_matching_keeps_the_target_count():
  scores = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.1], np.float32)
  # 2 images, 1.5 boxes each -> the 3rd best score.
  assert auto_threshold.count_matching(scores, 2, 1.5, 0.05) == pytest.approx(
      0.7)
  assert auto_threshold.count_matching(scores, 2, 0.0, 0.05) == 1.0
  assert auto_threshold.count_matching(scores, 2, 10.0, 0.05) == 0.05
  with pytest.raises(ValueError, match='num_images'):
    auto_threshold.count_matching(scores, 0, 1.0, 0.05)


def test_choose_band_below_threshold_and_human_count(tmp_path):
  path = str(tmp_path / 'human.tfrecord')
  image = np.zeros([8, 8, 3], np.uint8)
  with tf.io.TFRecordWriter(path) as w:
    for n in (1, 3):  # 2 boxes per image on average; the crowd one is not
      boxes = np.tile([[0.1, 0.1, 0.5, 0.5]], [n + 1, 1]).astype(np.float32)
      w.write(schema.detection_example(
          image, boxes, [1] * (n + 1), str(n),
          is_crowd=[0] * n + [1]).SerializeToString())
  assert auto_threshold.human_boxes_per_image(path) == pytest.approx(2.0)
  auto = auto_threshold.AutoThreshold(reference_pattern=path)
  probe = [np.array([0.9, 0.4, 0.2]), np.array([0.8, 0.5, 0.3, 0.1])]
  chosen = auto.choose(probe, with_band=True)
  assert chosen['score_threshold'] == pytest.approx(0.4)  # 4 best of 7
  assert chosen['band_low'] == pytest.approx(0.05)  # 8 wanted > 7: floor
  assert chosen['target_boxes_per_image'] == pytest.approx(2.0)
  assert chosen['probe_boxes_per_image'] == pytest.approx(2.0)
  assert auto.choose(probe, with_band=False)['band_low'] is None
  with pytest.raises(ValueError, match='reference_pattern'):
    auto_threshold.AutoThreshold().choose(probe, False)


def test_select_in_graph_orders_kept_then_band():
  dets = {'boxes': tf.constant([[[0, 0, 10, 10], [0, 0, 20, 20],
                                 [5, 5, 30, 30], [1, 1, 2, 2]]], tf.float32),
          'scores': tf.constant([[0.2, 0.9, 0.35, 0.05]]),
          'classes': tf.constant([[1, 2, 3, 4]]), 'num': tf.constant([4])}
  info = tf.constant([[[64, 64], [64, 64], [1, 1], [0, 0]]], tf.float32)
  selection = detection.BoxSelection(0.3, band_low=0.1)
  out = detection.select_in_graph(dets, info, selection)
  assert int(out['num_kept'][0]) == 2 and int(out['num_band'][0]) == 1
  np.testing.assert_allclose(out['scores'][0, :3].numpy(), [0.9, 0.35, 0.2])
  plain = detection.select_in_graph(dets, info, detection.BoxSelection(0.3))
  assert int(plain['num_band'][0]) == 0
  assert selection.lowest_threshold() == pytest.approx(0.1)
  assert selection.as_dict()['band_low'] == 0.1
  with pytest.raises(ValueError, match='band_low'):
    detection.BoxSelection(0.3, band_low=1.5)


def test_band_boxes_round_trip_as_crowd_with_scores():
  image = np.zeros([32, 32, 3], np.uint8)
  source = schema.unlabeled_example(image, '5').SerializeToString()
  raw = records.pseudo_detection_record(
      source, np.array([[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.9, 0.9]]),
      np.array([3, 4]), np.array([0.8, 0.25]), np.array([10., 20.]),
      'teacher@1', is_crowd=np.array([False, True]))
  decoded = decoders.DetectionDecoder(num_classes=11).decode(tf.constant(raw))
  np.testing.assert_array_equal(decoded['groundtruth_is_crowd'].numpy(),
                                [False, True])
  np.testing.assert_allclose(decoded['groundtruth_scores'].numpy(),
                             [0.8, 0.25])
  with pytest.raises(ValueError, match='is_crowd'):
    records.pseudo_detection_record(
        source, np.zeros([1, 4]), [1], [0.5], [1.], 't', is_crowd=[0, 1])


def test_auto_run_writes_band_and_reuses_choice(tmp_path, unlabeled,
                                                detection_teacher_dir):
  out = str(tmp_path / 'out')
  teacher = tiny.cached_teacher(detection_teacher_dir)
  auto = auto_threshold.AutoThreshold(target_boxes_per_image=2.0,
                                      num_images=8)
  kwargs = dict(output_dir=out, input_pattern=unlabeled, teacher=teacher,
                num_classes=tiny.NUM_CLASSES, batch_size=4, gallery_size=0,
                quality=False, score_threshold='auto', band_low='auto',
                auto=auto)
  manifest = runner.pseudo_label(**kwargs)
  chosen = manifest['auto_threshold']
  assert chosen['probe_images'] == 8
  assert chosen['band_low'] <= chosen['score_threshold']
  assert manifest['settings']['selection']['score_threshold'] == 'auto'
  decoder = decoders.DetectionDecoder(num_classes=tiny.NUM_CLASSES)
  kept = band = 0
  for example in tiny.read_records(writer.file_pattern(out)):
    d = decoder.decode(tf.constant(example.SerializeToString()))
    crowd = d['groundtruth_is_crowd'].numpy().astype(bool)
    scores = d['groundtruth_scores'].numpy()
    assert np.all(scores[~crowd] >= chosen['score_threshold'] - 1e-6)
    assert np.all(scores[crowd] < chosen['score_threshold'])
    assert np.all(scores[crowd] >= chosen['band_low'] - 1e-6)
    kept += int((~crowd).sum())
    band += int(crowd.sum())
  assert kept > 0 and band > 0
  # On all 10 images ~2 boxes each (the probe saw 8 of them).
  assert kept / 10 == pytest.approx(2.0, abs=0.6)
  again = runner.pseudo_label(**kwargs)  # resumes: same choice, no rework
  assert again['auto_threshold'] == chosen


def test_auto_probe_runs_the_labelings_multi_scale_inference(
    tmp_path, unlabeled, detection_teacher_dir):
  # The probe sees all 10 images with the labeling's scales and flips, so
  # the boxes kept match the target count (a single-scale probe would pick
  # a threshold at which the multi-scale teacher keeps more).
  teacher = tiny.cached_teacher(detection_teacher_dir)
  out = str(tmp_path / 'out')
  manifest = runner.pseudo_label(
      output_dir=out, input_pattern=unlabeled, teacher=teacher,
      num_classes=tiny.NUM_CLASSES, batch_size=4, gallery_size=0,
      quality=False, score_threshold='auto', scales=(0.5, 1.0),
      flip_tta=True, auto=auto_threshold.AutoThreshold(
          target_boxes_per_image=2.0, num_images=10))
  assert manifest['auto_threshold']['probe_images'] == 10
  kept = sum(len(example.features.feature[
      'image/object/class/label'].int64_list.value)
             for example in tiny.read_records(writer.file_pattern(out)))
  assert kept / 10 == pytest.approx(2.0, abs=0.11)
