"""Writer -> decoder round trips and input validation for st_tf.data.decoders."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from st_tf.data import decoders
from st_tf.data import files
from st_tf.data import schema

MODES = ['eager', 'dataset']


def _image(h=24, w=32, seed=0):
  return np.random.RandomState(seed).randint(0, 255, (h, w, 3), np.uint8)


def _decode(decoder, example, mode):
  """Decodes one tf.Example eagerly or inside tf.data.Dataset.map."""
  serialized = example.SerializeToString()
  if mode == 'eager':
    return {k: v.numpy() for k, v in decoder.decode(tf.constant(serialized))
            .items()}
  ds = tf.data.Dataset.from_tensors(serialized).map(decoder.decode)
  return next(ds.as_numpy_iterator())


def _write(path, examples):
  with tf.io.TFRecordWriter(str(path)) as writer:
    for ex in examples:
      writer.write(ex.SerializeToString())
  return str(path)


@pytest.mark.parametrize('mode', MODES)
def test_detection_round_trip_human(mode):
  image = _image()
  boxes = np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]], np.float32)
  out = _decode(decoders.DetectionDecoder(num_classes=4),
                schema.detection_example(image, boxes, [1, 3], 'img-1',
                                         is_crowd=[0, 1]), mode)
  np.testing.assert_array_equal(out['image'], image)
  np.testing.assert_allclose(out['groundtruth_boxes'], boxes)
  assert out['groundtruth_boxes'].dtype == np.float32
  np.testing.assert_array_equal(out['groundtruth_classes'], [1, 3])
  assert out['groundtruth_classes'].dtype == np.int64
  np.testing.assert_array_equal(out['groundtruth_is_crowd'], [False, True])
  np.testing.assert_allclose(out['groundtruth_scores'], [1.0, 1.0])
  np.testing.assert_allclose(out['groundtruth_area'][1], 24 * 32)
  assert out['teacher_id'] == b''
  assert out['source_id'] == b'img-1'
  assert (out['height'], out['width']) == (24, 32)


@pytest.mark.parametrize('mode', MODES)
def test_detection_round_trip_pseudo(mode):
  image = _image(seed=1)
  boxes = [[0.1, 0.1, 0.3, 0.4]]
  ex = schema.detection_example(image, boxes, [2], 'p-1', scores=[0.75],
                                teacher_id='teacher-A', image_format='jpeg')
  out = _decode(decoders.DetectionDecoder(num_classes=3), ex, mode)
  assert out['image'].shape == (24, 32, 3)
  np.testing.assert_allclose(out['groundtruth_boxes'], boxes, atol=1e-6)
  np.testing.assert_allclose(out['groundtruth_scores'], [0.75])
  assert out['groundtruth_scores'].dtype == np.float32
  assert out['teacher_id'] == b'teacher-A'


@pytest.mark.parametrize('mode', MODES)
def test_legacy_score_key_still_decodes(mode):
  """Pseudo records written before issue 11 (`image/object/score`)."""
  ex = schema.detection_example(_image(seed=2), [[0.1, 0.1, 0.3, 0.4]] * 2,
                                [2, 1], 'p-2')
  ex.features.feature[schema.LEGACY_SCORE].float_list.value.extend(
      [0.6, 0.3])
  ex.features.feature[schema.TEACHER_ID].bytes_list.value.append(b'old')
  out = _decode(decoders.DetectionDecoder(num_classes=3), ex, mode)
  np.testing.assert_allclose(out['groundtruth_scores'], [0.6, 0.3])
  assert out['teacher_id'] == b'old'


@pytest.mark.parametrize('mode', MODES)
def test_detection_no_boxes(mode):
  out = _decode(decoders.DetectionDecoder(num_classes=3),
                schema.detection_example(_image(), [], [], 'empty'), mode)
  assert out['groundtruth_boxes'].shape == (0, 4)
  assert out['groundtruth_scores'].shape == (0,)


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('teacher', [None, 'seg-teacher'])
def test_segmentation_round_trip(mode, teacher):
  image = _image()
  mask = np.random.RandomState(2).randint(0, 5, (24, 32)).astype(np.uint8)
  mask[0, :] = 255
  ex = schema.segmentation_example(image, mask, 's-1', teacher_id=teacher)
  out = _decode(decoders.SegmentationDecoder(num_classes=5), ex, mode)
  np.testing.assert_array_equal(out['image'], image)
  assert out['label'].shape == (24, 32, 1) and out['label'].dtype == np.uint8
  np.testing.assert_array_equal(out['label'][..., 0], mask)
  assert out['teacher_id'] == (teacher or '').encode()
  assert (out['source_id'], out['height'], out['width']) == (b's-1', 24, 32)


@pytest.mark.parametrize('mode', MODES)
def test_unlabeled_decodes_every_record_kind(mode):
  image = _image()
  records = [
      schema.unlabeled_example(image, 'u'),
      schema.detection_example(image, [[0, 0, 1, 1]], [1], 'u'),
      schema.segmentation_example(image, np.zeros((24, 32), np.uint8), 'u'),
  ]
  for ex in records:
    out = _decode(decoders.UnlabeledDecoder(), ex, mode)
    assert set(out) == {'image', 'source_id', 'height', 'width', 'file'}
    np.testing.assert_array_equal(out['image'], image)
    assert (out['source_id'], out['height'], out['width']) == (b'u', 24, 32)


def test_decoder_accepts_file_dicts(tmp_path):
  path = _write(tmp_path / 'd.tfrecord', [
      schema.detection_example(_image(), [[0, 0, .5, .5]], [1], 'a')])
  ds = files.tfrecord_dataset_with_filename(path).map(
      decoders.DetectionDecoder(num_classes=2).decode)
  out = next(ds.as_numpy_iterator())
  assert out['file'] == path.encode() and out['source_id'] == b'a'


def test_model_garden_coco_converter_output_decodes(tmp_path):
  """Model Garden's create_coco_tf_record output decodes with no conversion."""
  image_dir = tmp_path / 'images'
  image_dir.mkdir()
  images, annotations = [], []
  bboxes = {1: [[4, 8, 20, 10], [30, 2, 10, 30]], 2: [[0, 0, 64, 48]],
            3: []}
  for image_id, size in [(1, (48, 64)), (2, (48, 64)), (3, (40, 40))]:
    name = f'{image_id:03d}.png'
    tf.io.write_file(str(image_dir / name),
                     tf.io.encode_png(_image(*size, seed=image_id)))
    images.append({'id': image_id, 'file_name': name, 'height': size[0],
                   'width': size[1]})
    for k, bbox in enumerate(bboxes[image_id]):
      annotations.append({'id': len(annotations) + 1, 'image_id': image_id,
                          'bbox': bbox, 'category_id': 1 + k,
                          'iscrowd': 0, 'area': bbox[2] * bbox[3]})
  ann_file = tmp_path / 'instances.json'
  ann_file.write_text(json.dumps({
      'images': images, 'annotations': annotations,
      'categories': [{'id': 1, 'name': 'a'}, {'id': 2, 'name': 'b'}]}))
  prefix = tmp_path / 'out' / 'coco'
  env = dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='3')
  subprocess.run([
      sys.executable, '-m', 'official.vision.data.create_coco_tf_record',
      f'--image_dir={image_dir}', f'--object_annotations_file={ann_file}',
      f'--output_file_prefix={prefix}', '--num_shards=1',
      '--num_processes=0'], check=True, env=env, capture_output=True)
  decoder = decoders.DetectionDecoder(num_classes=3)
  ds = files.tfrecord_dataset_with_filename(
      files.match_files(f'{prefix}-*')).map(decoder.decode)
  seen = {}
  for out in ds.as_numpy_iterator():
    image_id = int(out['source_id'])
    h, w = (out['height'], out['width'])
    want = np.array([[y / h, x / w, (y + bh) / h, (x + bw) / w]
                     for x, y, bw, bh in bboxes[image_id]]).reshape(-1, 4)
    np.testing.assert_allclose(out['groundtruth_boxes'], want, atol=1e-6)
    np.testing.assert_array_equal(out['groundtruth_classes'],
                                  np.arange(1, len(want) + 1))
    np.testing.assert_array_equal(out['image'], _image(h, w, seed=image_id))
    assert out['teacher_id'] == b''
    np.testing.assert_allclose(out['groundtruth_scores'], np.ones(len(want)))
    seen[image_id] = True
  assert sorted(seen) == [1, 2, 3]


_IMG = _image()


def _with_image_bytes(example, data):
  """Replaces the encoded image (writers refuse undecodable bytes)."""
  example = tf.train.Example.FromString(example.SerializeToString())
  feature = example.features.feature[schema.IMAGE_ENCODED].bytes_list
  feature.value[0] = data
  return example


# (name, decoder factory(**kwargs), bad example, expected message regex)
_BAD_CASES = [
    ('box_outside', lambda **kw: decoders.DetectionDecoder(num_classes=3, **kw),
     schema.detection_example(_IMG, [[0.1, 0.1, 1.2, 0.5]], [1], 'bad'),
     'box coordinates outside \\[0, 1\\]'),
    ('box_inverted', lambda **kw: decoders.DetectionDecoder(num_classes=3, **kw),
     schema.detection_example(_IMG, [[0.6, 0.1, 0.2, 0.5]], [1], 'bad'),
     'boxes with ymin > ymax or xmin > xmax'),
    ('class_too_big', lambda **kw: decoders.DetectionDecoder(num_classes=3, **kw),
     schema.detection_example(_IMG, [[0.1, 0.1, 0.2, 0.5]], [3], 'bad'),
     'class ids >= num_classes = 3'),
    ('class_background', lambda **kw: decoders.DetectionDecoder(num_classes=3, **kw),
     schema.detection_example(_IMG, [[0.1, 0.1, 0.2, 0.5]], [0], 'bad'),
     'class ids < 1 \\(0 is background\\)'),
    ('bad_image', lambda **kw: decoders.DetectionDecoder(num_classes=3, **kw),
     _with_image_bytes(schema.detection_example(_IMG, [], [], 'bad'),
                       b'not an image'),
     'image failed to decode'),
    ('seg_label', lambda **kw: decoders.SegmentationDecoder(num_classes=4, **kw),
     schema.segmentation_example(_IMG, np.full((24, 32), 7, np.uint8), 'bad'),
     'label ids >= num_classes = 4.*7'),
    ('seg_bad_image', lambda **kw: decoders.SegmentationDecoder(num_classes=4, **kw),
     _with_image_bytes(schema.segmentation_example(
         _IMG, np.zeros((24, 32), np.uint8), 'bad'), _IMG[:2].tobytes()),
     'image failed to decode'),
    ('unlabeled_bad_image', decoders.UnlabeledDecoder,
     _with_image_bytes(schema.unlabeled_example(_IMG, 'bad'),
                       schema.encode_image(_IMG)[:30]),
     'image failed to decode'),
]


def _good_example(decoder):
  if isinstance(decoder, decoders.SegmentationDecoder):
    return schema.segmentation_example(_IMG, np.zeros((24, 32), np.uint8),
                                       'good')
  return schema.detection_example(_IMG, [[0.1, 0.1, 0.2, 0.5]], [1], 'good')


@pytest.mark.parametrize('name,make,bad,regex', _BAD_CASES,
                         ids=[c[0] for c in _BAD_CASES])
def test_bad_record_raises_naming_problem_and_file(tmp_path, name, make, bad,
                                                   regex):
  del name
  decoder = make()
  # Eagerly, on a bare serialized record: names the problem and source id.
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=f'source_id=bad, file=<unknown>\\): {regex}'):
    decoder.decode(tf.constant(bad.SerializeToString()))
  # Inside tf.data, read from a file: names the file too.
  path = _write(tmp_path / 'shard-00003.tfrecord', [_good_example(decoder),
                                                    bad])
  ds = files.tfrecord_dataset_with_filename(path).map(decoder.decode)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=f'source_id=bad, file=.*shard-00003.tfrecord'
                     f'\\): {regex}'):
    list(ds)


@pytest.mark.parametrize('name,make,bad,regex', _BAD_CASES,
                         ids=[c[0] for c in _BAD_CASES])
def test_bad_record_is_skipped_and_counted(tmp_path, capfd, name, make, bad,
                                           regex):
  del name
  decoder = make(skip_invalid=True)
  good = _good_example(decoder)
  path = _write(tmp_path / 'shard-00001.tfrecord', [good, bad, good, bad])
  ds = decoder.filter_invalid(
      files.tfrecord_dataset_with_filename(path).map(decoder.decode))
  kept = [x['source_id'] for x in ds.as_numpy_iterator()]
  assert kept == [b'good', b'good']
  assert decoder.num_skipped == 2
  log = capfd.readouterr().err
  assert 'skipped so far: 2' in log
  assert tf.strings.regex_full_match(
      log.replace('\n', ' '),
      f'.*source_id=bad, file=.*shard-00001.tfrecord\\): {regex}.*').numpy()


def test_no_validation_passes_bad_labels_through():
  bad = _BAD_CASES[2][2]  # class id 3 with num_classes 3
  out = _decode(decoders.DetectionDecoder(num_classes=3, validate=False), bad,
                'dataset')
  np.testing.assert_array_equal(out['groundtruth_classes'], [3])
