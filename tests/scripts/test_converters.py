"""Converters on tiny data in tmp_path; outputs decoded with st_tf decoders."""
import json
import pickle

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from scripts import convert_coco
from scripts import convert_images
from scripts import convert_voc
from st_tf.data import decoders
from st_tf.data import files
from st_tf.data import metadata


def _rgb(h, w, seed):
  return np.random.RandomState(seed).randint(0, 255, (h, w, 3), np.uint8)


def _decode_all(prefix, decoder):
  ds = files.tfrecord_dataset_with_filename(
      files.match_files(f'{prefix}-*')).map(decoder.decode)
  return {x['source_id'].decode(): x for x in ds.as_numpy_iterator()}


def test_make_example_functions_are_picklable():
  for module in (convert_coco, convert_voc, convert_images):
    assert pickle.loads(pickle.dumps(module.make_example)) is (
        module.make_example)


def test_convert_coco(tmp_path):
  image_dir = tmp_path / 'img'
  image_dir.mkdir()
  boxes = {7: [[2, 4, 20, 10]], 9: [[0, 0, 32, 16], [8, 8, 4, 4]]}
  images, anns = [], []
  for image_id in boxes:
    name = f'{image_id}.jpg'
    Image.fromarray(_rgb(16, 32, image_id)).save(image_dir / name)
    images.append({'id': image_id, 'file_name': name, 'height': 16,
                   'width': 32})
    for k, box in enumerate(boxes[image_id]):
      anns.append({'id': len(anns) + 1, 'image_id': image_id, 'bbox': box,
                   'category_id': 2 + k, 'iscrowd': 0,
                   'area': box[2] * box[3]})
  ann_file = tmp_path / 'ann.json'
  ann_file.write_text(json.dumps({
      'images': images, 'annotations': anns,
      'categories': [{'id': 2, 'name': 'x'}, {'id': 3, 'name': 'y'}]}))
  result = convert_coco.convert(str(ann_file), [str(image_dir)],
                                str(tmp_path / 'out' / 'coco'), num_shards=2,
                                num_workers=1)
  assert (result.num_written, result.num_skipped, len(result.paths)) == (
      2, 0, 2)
  out = _decode_all(tmp_path / 'out' / 'coco',
                    decoders.DetectionDecoder(num_classes=4))
  assert sorted(out) == ['7', '9']
  for image_id, want in boxes.items():
    got = out[str(image_id)]
    want = np.array([[y / 16, x / 32, (y + h) / 16, (x + w) / 32]
                     for x, y, w, h in want])
    np.testing.assert_allclose(got['groundtruth_boxes'], want, atol=1e-6)
    np.testing.assert_array_equal(got['groundtruth_classes'],
                                  2 + np.arange(len(want)))
    assert got['image'].shape == (16, 32, 3)
  # The category names travel in the sidecar; patterns never match it.
  meta = json.loads((tmp_path / 'out' / 'coco.metadata.json').read_text())
  assert meta['category_names'] == {'2': 'x', '3': 'y'}
  assert (meta['task'], meta['num_classes'], meta['num_examples']) == (
      'detection', 4, 2)
  assert metadata.category_names(str(tmp_path / 'out' / 'coco*')) == {
      2: 'x', 3: 'y'}
  assert len(files.match_files(str(tmp_path / 'out' / 'coco*'))) == 2


def test_convert_coco_missing_annotations(tmp_path):
  with pytest.raises(ValueError, match='nope.json'):
    convert_coco.convert(str(tmp_path / 'nope.json'), [str(tmp_path)],
                         str(tmp_path / 'o'))


def _make_voc(root, ids, bad_mask_id=None):
  for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
    (root / sub).mkdir(parents=True)
  palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 252) + [224, 224,
                                                                 192]
  masks = {}
  for n, i in enumerate(ids):
    Image.fromarray(_rgb(20, 24, n)).save(root / 'JPEGImages' / f'{i}.jpg')
    mask = np.zeros((20, 24), np.uint8)
    mask[5:10, 5:15] = 1 + n % 2
    mask[4, :] = 255
    png = Image.fromarray(mask, mode='P')
    png.putpalette(palette)
    if i == bad_mask_id:
      png = png.convert('RGB')  # no class indices any more
    png.save(root / 'SegmentationClass' / f'{i}.png')
    masks[i] = mask
  (root / 'ImageSets/Segmentation/train.txt').write_text('\n'.join(ids) + '\n')
  return masks


def test_convert_voc(tmp_path, caplog):
  ids = ['2007_000001', '2007_000002', '2007_000003']
  masks = _make_voc(tmp_path / 'voc', ids, bad_mask_id='2007_000003')
  result = convert_voc.convert(str(tmp_path / 'voc'), 'train',
                               str(tmp_path / 'out' / 'voc'), num_workers=1)
  assert (result.num_written, result.num_skipped) == (2, 1)
  assert '2007_000003' in caplog.text and "mode 'RGB'" in caplog.text
  out = _decode_all(tmp_path / 'out' / 'voc',
                    decoders.SegmentationDecoder(num_classes=3))
  assert sorted(out) == ids[:2]
  for i in ids[:2]:
    np.testing.assert_array_equal(out[i]['label'][..., 0], masks[i])
    assert out[i]['image'].shape == (20, 24, 3)
  names = metadata.category_names(str(tmp_path / 'out' / 'voc-*'))
  assert names[0] == 'background' and names[15] == 'person'
  assert len(names) == 21


def test_convert_voc_with_own_class_names(tmp_path):
  _make_voc(tmp_path / 'voc', ['a', 'b'])
  names_file = tmp_path / 'names.txt'
  names_file.write_text('background\nroad\ncar\n\n')
  names = convert_voc.read_class_names(str(names_file))
  convert_voc.convert(str(tmp_path / 'voc'), 'train', str(tmp_path / 'o'),
                      num_workers=1, class_names=names)
  assert metadata.category_names(str(tmp_path / 'o-*')) == {
      0: 'background', 1: 'road', 2: 'car'}
  names_file.write_text('background\n\ncar\n')
  with pytest.raises(ValueError, match='names.txt.*one non-empty'):
    convert_voc.read_class_names(str(names_file))


def test_convert_voc_missing_files(tmp_path):
  _make_voc(tmp_path / 'voc', ['a'])
  (tmp_path / 'voc/ImageSets/Segmentation/val.txt').write_text('a\nb\n')
  with pytest.raises(ValueError, match='missing.*JPEGImages/b.jpg'):
    convert_voc.convert(str(tmp_path / 'voc'), 'val', str(tmp_path / 'o'))
  with pytest.raises(ValueError, match='test.txt'):
    convert_voc.convert(str(tmp_path / 'voc'), 'test', str(tmp_path / 'o'))


def test_convert_images(tmp_path, caplog):
  src = tmp_path / 'imgs'
  (src / 'sub').mkdir(parents=True)
  Image.fromarray(_rgb(12, 10, 0)).save(src / 'a.png')
  Image.fromarray(_rgb(12, 10, 1)).save(src / 'sub' / 'b.JPEG')
  (src / 'sub' / 'broken.jpg').write_bytes(b'\xff\xd8 definitely not a jpeg')
  (src / 'notes.txt').write_text('ignored')
  result = convert_images.convert(str(src), str(tmp_path / 'out' / 'u'),
                                  num_shards=2, num_workers=1)
  assert (result.num_written, result.num_skipped) == (2, 1)
  assert 'broken.jpg' in caplog.text
  out = _decode_all(tmp_path / 'out' / 'u', decoders.UnlabeledDecoder())
  assert sorted(out) == ['a.png', 'sub/b.JPEG']
  np.testing.assert_array_equal(out['a.png']['image'], _rgb(12, 10, 0))
  assert out['sub/b.JPEG']['image'].shape == (12, 10, 3)


def test_convert_images_empty_folder(tmp_path):
  with pytest.raises(ValueError, match='no .* images under'):
    convert_images.convert(str(tmp_path), str(tmp_path / 'o'))
