"""End-to-end pseudo-labeling: outputs, manifest, resume, job arrays, errors."""
import functools
import json
import os

import gin
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from st_tf.data import decoders
from st_tf.data import schema
from st_tf.pseudo_label import gallery as gallery_lib
from st_tf.pseudo_label import inputs as inputs_lib
from st_tf.pseudo_label import runner
from st_tf.pseudo_label import segmentation
from st_tf.pseudo_label import teacher as teacher_lib
from st_tf.pseudo_label import writer
from tests.pseudo_label import tiny


def _teacher(model_dir):
  """The gin-style factory, built inside the runner's strategy scope."""
  return functools.partial(teacher_lib.checkpoint_teacher,
                           model_dir=model_dir, model=tiny.detection_model)


def _run(out, pattern, model_dir, teacher=None, **kwargs):
  """Runs the runner; `teacher` default: the cached teacher of `model_dir`."""
  kwargs.setdefault('num_classes', tiny.NUM_CLASSES)
  kwargs.setdefault('batch_size', 4)
  kwargs.setdefault('gallery_size', 2)
  kwargs.setdefault('quality_thresholds', (0.5,))  # COCOeval is not free.
  return runner.pseudo_label(
      output_dir=out, input_pattern=pattern,
      teacher=teacher or tiny.cached_teacher(model_dir), **kwargs)


def test_every_image_labeled_once_with_manifest_and_quality(
    tmp_path, unlabeled, detection_teacher_dir):
  out = str(tmp_path / 'out')
  manifest = _run(out, unlabeled, detection_teacher_dir,
                  teacher=_teacher(detection_teacher_dir),
                  quality_thresholds=(0.3, 0.4, 0.5, 0.6, 0.7))
  inputs = tiny.read_records(unlabeled)
  outputs = tiny.read_records(writer.file_pattern(out))
  assert tiny.source_ids(outputs) == tiny.source_ids(inputs)
  assert not [n for n in os.listdir(out) if n.endswith('.tmp')]

  decoder = decoders.DetectionDecoder(num_classes=tiny.NUM_CLASSES)
  num_boxes = 0
  for example in outputs:
    decoded = decoder.decode(tf.constant(example.SerializeToString()))
    assert decoded['teacher_id'].numpy().decode() == manifest['teacher_id']
    assert np.all(decoded['groundtruth_scores'].numpy() >= 0.5)
    num_boxes += len(decoded['groundtruth_classes'])
  assert num_boxes > 0
  assert manifest['teacher_id'].endswith('@step=7')
  totals = manifest['totals']
  assert totals['images_in'] == totals['images_out'] == len(inputs)
  assert sum(totals['class_histogram'].values()) == num_boxes
  assert totals['labels_per_image'] == pytest.approx(num_boxes / len(inputs))
  quality = manifest['quality']
  assert sorted(quality, key=float) == ['0.3', '0.4', '0.5', '0.6', '0.7']
  assert quality['0.5']['boxes_per_image'] == pytest.approx(
      num_boxes / len(inputs))
  per_image = [quality[t]['boxes_per_image'] for t in ('0.3', '0.5', '0.7')]
  assert per_image == sorted(per_image, reverse=True)
  for value in quality.values():
    assert 0 <= value['precision'] <= 1 and 0 <= value['recall'] <= 1
  on_disk = writer.read_json(writer.manifest_path(out, 0, 1))
  assert on_disk['complete'] and on_disk['totals'] == totals
  gallery = Image.open(os.path.join(out, 'gallery-00000.png'))
  assert gallery.size[0] > 0


class _Crash(Exception):
  pass


def test_rerun_after_crash_skips_finished_shards(
    tmp_path, unlabeled, detection_teacher_dir):
  out = str(tmp_path / 'out')
  shards_done = []

  def crash_in_second_shard(kind, name):
    if kind == 'shard':
      shards_done.append(name)
    elif shards_done:  # A batch of the second shard was labeled.
      raise _Crash()

  with pytest.raises(_Crash):
    _run(out, unlabeled, detection_teacher_dir, on_event=crash_in_second_shard)
  first = os.path.join(out, shards_done[0])
  assert len(tiny.read_records(writer.file_pattern(out))) < 10
  manifest = writer.read_json(writer.manifest_path(out, 0, 1))
  assert list(manifest['shards']) == shards_done and not manifest['complete']
  assert not [n for n in os.listdir(out) if n.endswith('.tmp')]
  # A killed process leaves a stale temporary file behind: simulate it.
  second = writer.shard_name(sorted(tf.io.gfile.glob(unlabeled))[1], 0, 1)
  with open(os.path.join(out, second + '.tmp'), 'wb') as f:
    f.write(b'garbage')
  mtime = os.stat(first).st_mtime_ns

  written = []
  manifest = _run(out, unlabeled, detection_teacher_dir,
                  on_event=lambda kind, name: written.append((kind, name)))
  assert shards_done[0] not in {name for _, name in written}
  assert os.stat(first).st_mtime_ns == mtime
  outputs = tiny.read_records(writer.file_pattern(out))
  assert tiny.source_ids(outputs) == tiny.source_ids(
      tiny.read_records(unlabeled))
  assert manifest['complete'] and manifest['totals']['images_in'] == 10


def test_job_array_splits_records_of_a_file(
    tmp_path, unlabeled, detection_teacher_dir):
  out = str(tmp_path / 'out')
  one_file = sorted(tf.io.gfile.glob(unlabeled))[0]
  for job in range(2):
    manifest = _run(out, one_file, detection_teacher_dir, shard_index=job,
                    num_shards=2, gallery_size=0)
    assert manifest['totals']['images_in'] == 2
  outputs = tiny.read_records(writer.file_pattern(out))
  assert tiny.source_ids(outputs) == tiny.source_ids(
      tiny.read_records(one_file))
  assert len(writer.read_manifests(out)) == 2


def test_work_units_deal_files_then_records():
  paths, counts = ['a', 'b', 'c'], [5, 4, 3]
  assert inputs_lib.work_units(paths, counts, 1, 2) == [('b', 0, 1, 4)]
  units = [inputs_lib.work_units(paths, counts, j, 4) for j in range(4)]
  for p, n in zip(paths, counts):
    assert sum(u[3] for job in units for u in job if u[0] == p) == n


@pytest.mark.parametrize('kwargs,message', [
    (dict(score_threshold=1.5), 'score_threshold must be in'),
    (dict(pixel_threshold=-0.1), 'pixel_threshold must be in'),
    (dict(num_classes=5), 'student expects num_classes=5'),
])
def test_bad_arguments_fail_before_writing(tmp_path, unlabeled,
                                          detection_teacher_dir, kwargs,
                                          message):
  out = str(tmp_path / 'out')
  with pytest.raises(ValueError, match=message):
    _run(out, unlabeled, detection_teacher_dir, **kwargs)
  assert tiny.listing(out) == []


def test_empty_unlabeled_set_fails(tmp_path, detection_teacher_dir):
  empty = tmp_path / 'empty.tfrecord'
  with tf.io.TFRecordWriter(str(empty)):
    pass
  with pytest.raises(ValueError, match='empty'):
    _run(str(tmp_path / 'out'), str(empty), detection_teacher_dir)
  assert tiny.listing(str(tmp_path / 'out')) == []


def test_folder_of_another_teacher_is_refused(tmp_path, unlabeled,
                                              detection_teacher_dir):
  out = str(tmp_path / 'out')
  one_file = sorted(tf.io.gfile.glob(unlabeled))[2]
  _run(out, one_file, detection_teacher_dir, gallery_size=0)
  before = {n: os.stat(os.path.join(out, n)).st_mtime_ns
            for n in os.listdir(out)}
  other = str(tmp_path / 'other_teacher')
  tiny.save_checkpoint(tiny.teacher_model(), other, step=8)
  with pytest.raises(ValueError, match='another teacher'):
    _run(out, one_file, other)
  with pytest.raises(ValueError, match='other settings'):
    _run(out, one_file, detection_teacher_dir, score_threshold=0.6)
  assert {n: os.stat(os.path.join(out, n)).st_mtime_ns
          for n in os.listdir(out)} == before


def test_segmentation_with_flip_tta(tmp_path, unlabeled):
  model_dir = str(tmp_path / 'seg_teacher')
  tiny.save_checkpoint(tiny.segmentation_model(), model_dir, step=3)
  out = str(tmp_path / 'out')
  one_file = sorted(tf.io.gfile.glob(unlabeled))[0]
  # One restored teacher labels the records and then gives the reference.
  teacher = teacher_lib.checkpoint_teacher(model_dir=model_dir,
                                           model=tiny.segmentation_model)
  manifest = runner.pseudo_label(
      output_dir=out, input_pattern=one_file, num_classes=tiny.NUM_CLASSES,
      teacher=teacher, pixel_threshold=0.5, flip_tta=True, batch_size=2,
      gallery_size=1, quality_thresholds=(0.3, 0.5, 0.7))
  inputs = tiny.read_records(one_file)
  outputs = {e.features.feature[schema.IMAGE_SOURCE_ID].bytes_list.value[0]:
             e for e in tiny.read_records(writer.file_pattern(out))}
  assert len(outputs) == len(inputs)
  labeled = 0
  for example in inputs:
    f = example.features.feature
    # Decoded by TensorFlow as in the pipeline (PIL's JPEG decoder differs).
    image = tf.io.decode_image(f[schema.IMAGE_ENCODED].bytes_list.value[0],
                               channels=3)
    maps = teacher.segment(image[None], flip=True)[0].numpy()
    expected = segmentation.label_map(maps[..., 0],
                                      np.rint(maps[..., 1]).astype(int), 0.5)
    got = outputs[f[schema.IMAGE_SOURCE_ID].bytes_list.value[0]]
    mask = schema.image_bytes_to_array(got.features.feature[
        schema.SEGMENTATION_MASK].bytes_list.value[0])
    assert np.mean(mask.reshape(expected.shape) == expected) > 0.999
    labeled += np.sum(expected != 255)
  assert 0 < labeled < len(inputs) * tiny.SIZE**2  # Some pixels ignored.
  assert manifest['totals']['labels_per_image'] == pytest.approx(
      labeled / len(inputs))
  quality = manifest['quality']
  assert set(quality['0.5']) == {'coverage', 'pixel_accuracy', 'miou'}
  # DigitScenes masks have no ignore pixels: coverage = labeled fraction.
  assert quality['0.5']['coverage'] == pytest.approx(
      labeled / (len(inputs) * tiny.SIZE**2))
  coverage = [quality[t]['coverage'] for t in ('0.3', '0.5', '0.7')]
  assert coverage == sorted(coverage, reverse=True)
  with open(writer.manifest_path(out, 0, 1)) as f:
    assert json.load(f)['task'] == 'segmentation'


def test_category_names_reach_the_gallery_and_manifest(
    tmp_path, unlabeled, detection_teacher_dir, monkeypatch):
  names_seen = []
  draw = gallery_lib.draw_detections

  def spy(*args):
    names_seen.append(args[4])
    return draw(*args)

  monkeypatch.setattr(gallery_lib, 'draw_detections', spy)
  gin.parse_config("category_names.names = {1: 'zero', 2: 'one'}")
  out = str(tmp_path / 'out')
  one_file = sorted(tf.io.gfile.glob(unlabeled))[0]
  manifest = _run(out, one_file, detection_teacher_dir, gallery_size=2)
  assert manifest['category_names'] == {'1': 'zero', '2': 'one'}
  assert names_seen and all(n == {1: 'zero', 2: 'one'} for n in names_seen)
  # An explicit argument wins over gin.
  out2 = str(tmp_path / 'out2')
  manifest = _run(out2, one_file, detection_teacher_dir, gallery_size=0,
                  category_names={3: 'two'})
  assert manifest['category_names'] == {'3': 'two'}
