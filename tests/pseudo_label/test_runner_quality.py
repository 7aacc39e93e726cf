"""The runner's `quality` option: 'auto' / True / False, and resumes across it."""
import os

import pytest
import tensorflow as tf

from st_tf.data import schema
from st_tf.pseudo_label import records
from st_tf.pseudo_label import runner
from st_tf.pseudo_label import writer
from tests.pseudo_label import test_runner
from tests.pseudo_label import tiny

_run = test_runner._run  # pylint: disable=protected-access


def _by_source_id(pattern):
  return {e.features.feature[schema.IMAGE_SOURCE_ID].bytes_list.value[0]: e
          for e in tiny.read_records(pattern)}


def _quality_files(out):
  return [n for n in os.listdir(out) if n.endswith(writer.QUALITY_SUFFIX)]


def test_quality_off_writes_the_same_pseudo_labels_without_scoring(
    tmp_path, unlabeled, detection_teacher_dir):
  on, off = str(tmp_path / 'on'), str(tmp_path / 'off')
  # quality_thresholds below the score threshold: scoring lowers the NMS
  # pre-threshold, which must not change the pseudo labels.
  with_q = _run(on, unlabeled, detection_teacher_dir, score_threshold=0.6,
                quality_thresholds=(0.3,), gallery_size=0)
  without = _run(off, unlabeled, detection_teacher_dir, score_threshold=0.6,
                 quality_thresholds=(0.3,), gallery_size=0, quality=False)
  assert 'quality' in with_q and 'quality' not in without
  assert _quality_files(on) and not _quality_files(off)
  assert with_q['totals'] == without['totals']
  assert with_q['totals']['labels_per_image'] > 0
  assert _by_source_id(writer.file_pattern(on)) == _by_source_id(
      writer.file_pattern(off))
  forced = _run(str(tmp_path / 'forced'), unlabeled, detection_teacher_dir,
                score_threshold=0.6, quality_thresholds=(0.3,),
                gallery_size=0, quality=True)
  assert forced['quality'] == with_q['quality']


def test_quality_true_without_ground_truth_and_bad_values_fail_early(
    tmp_path, unlabeled, detection_teacher_dir):
  bare = str(tmp_path / 'bare.tfrecord')  # Image keys only: no ground truth.
  with tf.io.TFRecordWriter(bare) as f:
    for example in tiny.read_records(unlabeled)[:3]:
      out = tf.train.Example()
      for key in records.IMAGE_KEYS:
        out.features.feature[key].CopyFrom(example.features.feature[key])
      f.write(out.SerializeToString())
  out = str(tmp_path / 'out')
  with pytest.raises(ValueError, match='quality=True needs detection ground'):
    _run(out, bare, detection_teacher_dir, quality=True)
  with pytest.raises(ValueError, match="quality must be 'auto', True or"):
    _run(out, bare, detection_teacher_dir, quality='yes')
  assert tiny.listing(out) == []
  manifest = _run(out, bare, detection_teacher_dir, gallery_size=0)  # auto
  assert 'quality' not in manifest and manifest['totals']['images_in'] == 3
  assert runner.resolve_quality('auto', bare, 'detection') is False


def test_resume_with_quality_scores_only_the_shards_it_labels(
    tmp_path, unlabeled, detection_teacher_dir):
  out = str(tmp_path / 'out')
  done = []

  def crash_in_second_shard(kind, name):
    if kind == 'shard':
      done.append(name)
    elif done:
      raise test_runner._Crash()  # pylint: disable=protected-access

  with pytest.raises(test_runner._Crash):  # pylint: disable=protected-access
    _run(out, unlabeled, detection_teacher_dir, gallery_size=0,
         quality=False, on_event=crash_in_second_shard)
  first = writer.read_json(writer.manifest_path(out, 0, 1))['shards']
  assert list(first) == done and not _quality_files(out)
  manifest = _run(out, unlabeled, detection_teacher_dir, gallery_size=0)
  assert manifest['complete'] and manifest['totals']['images_in'] == 10
  scored = sum(s['images_in'] for n, s in manifest['shards'].items()
               if n not in first)
  assert 0 < scored < 10
  assert len(writer.OutputFolder(
      out, teacher_id=manifest['teacher_id'], task='detection',
      settings=manifest['settings'], shard_index=0,
      num_shards=1).quality_images()) == scored
  assert set(manifest['quality']) == {'0.5'}

  one_file = sorted(tf.io.gfile.glob(unlabeled))[0]  # Never scored at all:
  other = str(tmp_path / 'other')  # a rerun with 'auto' reports no quality.
  _run(other, one_file, detection_teacher_dir, gallery_size=0, quality=False)
  again = _run(other, one_file, detection_teacher_dir, gallery_size=0)
  assert again['complete'] and 'quality' not in again
