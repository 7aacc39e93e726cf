"""Self-training detection on data the project did not make, end to end.

A COCO-format set (tests/e2e/own_data.py: non-square images of mixed
sizes, JPEG and PNG, a grayscale and an RGBA image per split, category ids
3 and 7) and a folder of unlabeled images go through the converters' command
lines, then `--mode=self_train` with gin/templates/detection.gin + the tiny
model file and the README's bindings (tiny steps), then the exported
SavedModel runs on images of the set. One run shared by the module.
"""
import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from st_tf.data import decoders
from st_tf.data import files
from tests.e2e import common
from tests.e2e import own_data

INPUT_SIZE = (96, 128)  # Non-square too (multiples of 32).


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('own_coco'))
  data = own_data.make_coco(os.path.join(root, 'coco'))
  records = os.path.join(root, 'records')
  outputs = common.run_commands([
      ['scripts.convert_coco', f'--image_dir={data["train_images"]}',
       f'--object_annotations_file={data["train_json"]}',
       f'--output_file_prefix={records}/train', '--num_shards=2',
       '--num_processes=1'],
      ['scripts.convert_coco', f'--image_dir={data["val_images"]}',
       f'--object_annotations_file={data["val_json"]}',
       f'--output_file_prefix={records}/val', '--num_shards=1',
       '--num_processes=1'],
      ['scripts.convert_images', f'--image_dir={data["unlabeled"]}',
       f'--output_prefix={records}/unlabeled', '--num_shards=2'],
  ])
  model_dir = os.path.join(root, 'run')
  summary = common.self_train(
      ['gin/templates/detection.gin',
       'gin/templates/models/retinanet_tiny.gin'],
      [f"LABELED_PATTERN = '{records}/train-*'",
       f"UNLABELED_PATTERN = '{records}/unlabeled-*'",
       f"VAL_PATTERN = '{records}/val-*'",
       f"VAL_ANNOTATIONS = '{data['val_json']}'",
       f'NUM_CLASSES = {own_data.NUM_CLASSES_COCO}',
       f'INPUT_SIZE = {INPUT_SIZE}',
       # A 20-step teacher scores ~0.01, far below the paper's 0.5 (and
       # the count-matching threshold's 0.05 floor): a low threshold keeps
       # boxes, so pseudo boxes go through the records and the student.
       'pseudo_label.score_threshold = 0.01', 'pseudo_label.max_boxes = 5',
      ] + common.TINY_RUN, model_dir)
  return dict(data=data, records=records, outputs=outputs,
              model_dir=model_dir, summary=summary)


def _decode(pattern, decoder):
  ds = files.tfrecord_dataset_with_filename(files.match_files(pattern))
  return {x['source_id'].decode(): x
          for x in ds.map(decoder.decode).as_numpy_iterator()}


def test_converters_keep_every_image_and_category_id(run):
  train_out, val_out, unlabeled_out = run['outputs']
  assert 'wrote 16 records to 2 shards' in train_out, train_out[-2000:]
  assert 'wrote 8 records to 1 shards' in val_out, val_out[-2000:]
  assert 'wrote 16 records to 2 shards' in unlabeled_out
  assert 'skipped 0' in unlabeled_out
  with open(run['data']['train_json']) as f:
    coco = json.load(f)
  decoded = _decode(f'{run["records"]}/train-*',
                    decoders.DetectionDecoder(num_classes=8))
  assert len(decoded) == 16
  for image in coco['images']:
    got = decoded[str(image['id'])]
    # Grayscale and RGBA files decode to RGB at their own size.
    assert got['image'].shape == (image['height'], image['width'], 3)
    want = sorted(a['category_id'] for a in coco['annotations']
                  if a['image_id'] == image['id'])
    assert sorted(got['groundtruth_classes'].tolist()) == want
  assert {c for x in decoded.values()
          for c in x['groundtruth_classes'].tolist()} == {3, 7}
  unlabeled = _decode(f'{run["records"]}/unlabeled-*',
                      decoders.UnlabeledDecoder())
  assert len(unlabeled) == 16
  assert 'batch_a/u001.png' in unlabeled  # The RGBA one, by relative path.
  assert unlabeled['batch_a/u001.png']['image'].shape[-1] == 3


def test_summary_reports_teacher_student_and_baseline(run):
  with open(os.path.join(run['model_dir'], 'summary.json')) as f:
    summary = json.load(f)
  assert summary == json.loads(json.dumps(run['summary']))
  assert summary['task'] == 'detection' and summary['metric'] == 'AP'
  (round0,) = summary['rounds']
  for entry in (summary['teacher'], round0['student'], summary['baseline']):
    assert 0.0 <= entry['value'] <= 1.0
    assert {'AP', 'AP50', 'AP75'} <= set(entry['metrics'])
  assert summary['teacher']['step'] == 20
  assert round0['student']['step'] == 10
  assert summary['baseline']['step'] == 30
  assert summary['baseline']['steps_match'] is True
  pseudo = round0['pseudo_labels']
  assert pseudo['images_in'] == pseudo['images_out'] == 16
  assert pseudo['labels'] > 0
  # Pseudo boxes carry class ids the decoder accepts (< NUM_CLASSES).
  pseudo_records = _decode(
      os.path.join(pseudo['dir'], 'pseudo-*'),
      decoders.DetectionDecoder(num_classes=own_data.NUM_CLASSES_COCO))
  assert sum(len(x['groundtruth_classes'])
             for x in pseudo_records.values()) >= pseudo['labels']
  with open(os.path.join(run['model_dir'], 'summary.md')) as f:
    assert '| round | teacher AP | student AP | gain |' in f.read()


def test_exported_model_detects_on_images_of_the_set(run):
  export_dir = run['summary']['rounds'][0]['student']['export_dir']
  model = tf.saved_model.load(export_dir)
  val_dir = run['data']['val_images']
  names = ['val_000.jpg', 'val_001.png', 'val_002.png']  # gray, RGBA, RGB
  encoded = tf.stack([tf.io.read_file(os.path.join(val_dir, n))
                      for n in names])
  out = model.signatures['serve_encoded'](encoded=encoded)
  assert out['detection_boxes'].shape[:2] == out['detection_scores'].shape
  for i, name in enumerate(names):
    with Image.open(os.path.join(val_dir, name)) as image:
      width, height = image.size
    np.testing.assert_allclose(out['image_info'][i, 0], [height, width])
    n = int(out['num_detections'][i])
    boxes = out['detection_boxes'][i, :n].numpy()
    assert np.all(boxes >= 0) and np.all(boxes[:, 2] <= height) and np.all(
        boxes[:, 3] <= width)
    classes = out['detection_classes'][i, :n].numpy()
    assert np.all((classes >= 1) & (classes < own_data.NUM_CLASSES_COCO))
  # The uint8 signature at the model's (non-square) input size.
  images = tf.zeros([1, *INPUT_SIZE, 3], tf.uint8)
  out = model.signatures['serving_default'](images=images)
  assert out['detection_boxes_normalized'].shape[-1] == 4
