"""Self-training segmentation on data the project did not make, end to end.

A PASCAL VOC-style set (tests/e2e/own_data.py: non-square JPEGs of mixed
sizes, one grayscale per split, palette PNG masks with 255 borders) and a
folder of unlabeled JPEG/PNG images (grayscale and RGBA among them) go
through the converters' command lines, then `--mode=self_train` with
gin/templates/segmentation.gin + the tiny model file (tiny steps), then the
exported SavedModel runs on images of the set. One run shared by the module.
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
  root = str(tmp_path_factory.mktemp('own_voc'))
  data = own_data.make_voc(os.path.join(root, 'voc'))
  records = os.path.join(root, 'records')
  outputs = common.run_commands([
      ['scripts.convert_voc', f'--voc_root={data["voc_root"]}',
       '--split=train', f'--output_prefix={records}/voc_train',
       '--num_shards=2'],
      ['scripts.convert_voc', f'--voc_root={data["voc_root"]}',
       '--split=val', f'--output_prefix={records}/voc_val', '--num_shards=1'],
      ['scripts.convert_images', f'--image_dir={data["unlabeled"]}',
       f'--output_prefix={records}/unlabeled', '--num_shards=2'],
  ])
  model_dir = os.path.join(root, 'run')
  summary = common.self_train(
      ['gin/templates/segmentation.gin',
       'gin/templates/models/segmentation_tiny.gin'],
      [f"LABELED_PATTERN = '{records}/voc_train-*'",
       f"UNLABELED_PATTERN = '{records}/unlabeled-*'",
       f"VAL_PATTERN = '{records}/voc_val-*'",
       f'NUM_CLASSES = {own_data.VOC_CLASSES}',
       f'INPUT_SIZE = {INPUT_SIZE}',
      ] + common.TINY_RUN, model_dir)
  return dict(data=data, records=records, outputs=outputs,
              model_dir=model_dir, summary=summary)


def test_converters_keep_images_and_masks(run):
  train_out, val_out, unlabeled_out = run['outputs']
  assert 'wrote 16 records to 2 shards' in train_out, train_out[-2000:]
  assert 'wrote 8 records to 1 shards' in val_out, val_out[-2000:]
  assert 'wrote 16 records to 2 shards' in unlabeled_out
  voc = run['data']['voc_root']
  ds = files.tfrecord_dataset_with_filename(
      files.match_files(f'{run["records"]}/voc_train-*'))
  decoder = decoders.SegmentationDecoder(num_classes=own_data.VOC_CLASSES)
  decoded = {x['source_id'].decode(): x
             for x in ds.map(decoder.decode).as_numpy_iterator()}
  assert len(decoded) == 16
  for source_id, got in decoded.items():
    with Image.open(os.path.join(voc, 'SegmentationClass',
                                 f'{source_id}.png')) as mask:
      want = np.asarray(mask)
    np.testing.assert_array_equal(got['label'][..., 0], want)
    # The grayscale JPEG decodes to RGB at its own (non-square) size.
    assert got['image'].shape == want.shape + (3,)
  assert set(np.unique(np.concatenate(
      [x['label'].ravel() for x in decoded.values()]))) == {0, 1, 2, 255}


def test_summary_reports_teacher_student_and_baseline(run):
  with open(os.path.join(run['model_dir'], 'summary.json')) as f:
    summary = json.load(f)
  assert summary == json.loads(json.dumps(run['summary']))
  assert summary['task'] == 'segmentation'
  assert summary['metric'] == 'mean_iou'
  (round0,) = summary['rounds']
  for entry in (summary['teacher'], round0['student'], summary['baseline']):
    assert 0.0 <= entry['value'] <= 1.0
    assert 'mean_iou' in entry['metrics']
  assert summary['teacher']['step'] == 20
  assert round0['student']['step'] == 10
  assert summary['baseline']['step'] == 30
  assert summary['baseline']['steps_match'] is True
  pseudo = round0['pseudo_labels']
  assert pseudo['images_in'] == 16
  with open(os.path.join(run['model_dir'], 'summary.md')) as f:
    assert '| round | teacher mean_iou | student mean_iou |' in f.read()


def test_exported_model_segments_images_of_the_set(run):
  export_dir = run['summary']['rounds'][0]['student']['export_dir']
  model = tf.saved_model.load(export_dir)
  unlabeled = run['data']['unlabeled']
  names = ['batch_b/u000.jpg', 'batch_a/u001.png']  # grayscale, RGBA
  out = model.signatures['serve_encoded'](encoded=tf.stack(
      [tf.io.read_file(os.path.join(unlabeled, n)) for n in names]))
  assert out['class_map'].shape == (2, *INPUT_SIZE)
  assert out['confidence'].shape == (2, *INPUT_SIZE)
  classes = out['class_map'].numpy()
  assert classes.min() >= 0 and classes.max() < own_data.VOC_CLASSES
  for i, name in enumerate(names):
    with Image.open(os.path.join(unlabeled, name)) as image:
      width, height = image.size
    np.testing.assert_allclose(out['image_info'][i, 0], [height, width])
