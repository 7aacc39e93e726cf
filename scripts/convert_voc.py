r"""PASCAL VOC 2012 segmentation -> segmentation TFRecords.

Reads the VOC layout::

  <voc_root>/JPEGImages/<id>.jpg
  <voc_root>/SegmentationClass/<id>.png   palette PNG: index = class id,
                                          255 = border / ignore
  <voc_root>/ImageSets/Segmentation/<split>.txt

JPEGs are stored as they are (no re-encoding); masks are read as palette
indices with PIL (never converted to RGB) and stored as PNG class maps.
The class names (index = class id; VOC 2012's 21 by default, or
``--class_names`` / ``--class_names_file`` for other data in the VOC layout)
go into ``<output_prefix>.metadata.json`` (`st_tf/data/metadata.py`).

  python -m scripts.convert_voc --voc_root=/data/VOC2012 --split=train \
    --output_prefix=/data/tfrecords/voc_train --num_shards=8
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence

from absl import app
from absl import flags
import numpy as np
from PIL import Image
import tensorflow as tf

from st_tf.data import metadata
from st_tf.data import schema
from st_tf.data import sharded_writer

FLAGS = flags.FLAGS

# PASCAL VOC 2012 segmentation classes; index = palette index = class id.
VOC_CLASS_NAMES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus',
    'car', 'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike',
    'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')


def define_flags() -> None:
  """Defines this script's flags (only when run as a script)."""
  flags.DEFINE_string('voc_root', None, 'VOC2012 folder (has JPEGImages/).')
  flags.DEFINE_string('split', 'train', 'ImageSets/Segmentation/<split>.txt')
  flags.DEFINE_string('output_prefix', None, 'Output shard path prefix.')
  flags.DEFINE_integer('num_shards', 4, 'Number of output shards.')
  flags.DEFINE_integer('num_workers', None, 'Writer processes.')
  flags.DEFINE_list('class_names', None, 'Class names, comma-separated, '
                    'index = class id (default: the 21 VOC 2012 classes).')
  flags.DEFINE_string('class_names_file', None, 'Text file of class names, '
                      'one per line, line i = class id i.')


def read_class_map(mask_path: str) -> np.ndarray:
  """Reads a VOC palette (or grayscale) PNG as a uint8 [H, W] class-id map.

  Raises:
    ValueError: the PNG is RGB(A) or another mode without class indices.
  """
  with Image.open(mask_path) as mask:
    if mask.mode not in ('P', 'L'):
      raise ValueError(f'{mask_path}: mask mode {mask.mode!r} holds no class '
                       'ids (expected a palette "P" or grayscale "L" PNG)')
    return np.asarray(mask, dtype=np.uint8)


def make_example(item: tuple) -> tf.train.Example:
  """(image path, mask path, source id) -> tf.Example (picklable)."""
  image_path, mask_path, source_id = item
  try:
    with open(image_path, 'rb') as f:
      encoded = f.read()
    with Image.open(image_path) as image:
      width, height = image.size
    class_map = read_class_map(mask_path)
  except (OSError, ValueError) as e:
    raise sharded_writer.SkipItem(f'{source_id}: {e}') from e
  if class_map.shape != (height, width):
    raise sharded_writer.SkipItem(
        f'{source_id}: mask {mask_path} is {class_map.shape} but image '
        f'{image_path} is {(height, width)}')
  return schema.segmentation_example(encoded, class_map, source_id)


def list_items(voc_root: str, split: str) -> list:
  """(image, mask, id) triples of a split; raises naming missing files."""
  split_file = os.path.join(voc_root, 'ImageSets', 'Segmentation',
                            f'{split}.txt')
  if not tf.io.gfile.exists(split_file):
    raise ValueError(f'VOC split file not found: {split_file}')
  with tf.io.gfile.GFile(split_file) as f:
    ids = [line.strip() for line in f if line.strip()]
  if not ids:
    raise ValueError(f'VOC split file lists no images: {split_file}')
  items = [(os.path.join(voc_root, 'JPEGImages', f'{i}.jpg'),
            os.path.join(voc_root, 'SegmentationClass', f'{i}.png'), i)
           for i in ids]
  missing = [p for item in items for p in item[:2]
             if not tf.io.gfile.exists(p)]
  if missing:
    raise ValueError(f'{len(missing)} files listed by {split_file} are '
                     f'missing, e.g. {missing[:3]}')
  return items


def read_class_names(path: str) -> List[str]:
  """Class names of a text file, one per line (line i = id i)."""
  if not tf.io.gfile.exists(path):
    raise ValueError(f'class names file not found: {path}')
  with tf.io.gfile.GFile(path) as f:
    names = [line.strip() for line in f.read().splitlines()]
  while names and not names[-1]:
    names.pop()
  if not names or not all(names):
    raise ValueError(f'{path}: expected one non-empty class name per line '
                     '(line i = class id i, background first)')
  return names


def convert(voc_root: str,
            split: str,
            output_prefix: str,
            num_shards: int = 1,
            num_workers: Optional[int] = None,
            class_names: Optional[Sequence[str]] = None
            ) -> sharded_writer.WriteResult:
  """Converts one VOC segmentation split to sharded TFRecords.

  `class_names` (index = class id; default `VOC_CLASS_NAMES`) are written
  to `metadata.metadata_path(output_prefix)`.
  """
  names = list(class_names or VOC_CLASS_NAMES)
  result = sharded_writer.write_sharded(
      list_items(voc_root, split), make_example, output_prefix,
      num_shards=num_shards, num_workers=num_workers, desc=f'voc {split}')
  metadata.write_metadata(
      output_prefix, task='segmentation', category_names=names,
      num_examples=result.num_written, files=result.paths,
      source=os.path.join(voc_root, 'ImageSets', 'Segmentation',
                          f'{split}.txt'))
  return result


def main(argv: Sequence[str]) -> None:
  del argv
  if not FLAGS.voc_root or not FLAGS.output_prefix:
    raise app.UsageError('--voc_root and --output_prefix are required.')
  if FLAGS.class_names and FLAGS.class_names_file:
    raise app.UsageError('give --class_names or --class_names_file, not both')
  names = (read_class_names(FLAGS.class_names_file)
           if FLAGS.class_names_file else FLAGS.class_names)
  convert(FLAGS.voc_root, FLAGS.split, FLAGS.output_prefix,
          num_shards=FLAGS.num_shards, num_workers=FLAGS.num_workers,
          class_names=names)


if __name__ == '__main__':
  define_flags()
  app.run(main)
