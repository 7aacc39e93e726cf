"""DigitScenes: the bundled default dataset (detection + semantic segmentation).

Scenes are 128x128 RGB images holding 1-5 real handwritten digits from
scikit-learn's `load_digits` (1797 grey 8x8 images, 17 levels 0..16, shipped
with scikit-learn, no download), upscaled (bicubic) to 14-48 px tall, painted
in a random colour on a random textured background (colour gradient +
low-frequency colour noise + optional stripes, blobs, clutter strokes and
pixel noise). Digits overlap little (box IoU < 0.3, and at most half of a
box inside another).

Labels (one record serves both tasks):

* detection: boxes normalized ``[ymin, xmin, ymax, xmax]``, the tight extent
  of the digit's stroke pixels, in pixel-edge convention (a stroke covering
  rows ``r0..r1`` gives ``ymin = r0 / H``, ``ymax = (r1 + 1) / H``); digit
  ``d`` has class id ``d + 1`` (classes 1..10, 0 = background, so
  ``num_classes = 11``); area = box area in pixels.
* segmentation: uint8 ``[H, W]`` class map, stroke pixels (upscaled digit
  intensity > 0.5) = class id, background 0. A digit painted later covers the
  strokes of an earlier one; boxes stay the full extent of each digit.

Splits: ``labeled``, ``unlabeled`` and ``val``. ``unlabeled`` records keep
their labels so that pseudo-label quality can be measured; training simply
ignores them. Source digits: `load_digits` carries no writer ids. Its 1797
samples are the UCI "optdigits" test set (13 writers); we split them by
contiguous index blocks, the first 75% (indices 0..1347) as the pool for
``labeled`` and ``unlabeled``, the last 25% (1348..1796) for ``val``, so the
two pools share no digit sample. That the UCI file is ordered by writer is an
assumption we could not verify: the pools are disjoint in samples, and
probably, not certainly, in writers.

Source ids are numeric strings (Model Garden's eval parser casts them to
int64): ``split_code * 1_000_000 + index`` with codes labeled=1,
unlabeled=2, val=3; the COCO JSON uses the same integers as image ids.

Every scene is drawn from ``np.random.default_rng([seed, split_code,
index])``, so the output is byte-identical for a seed whatever the sharding
or number of worker processes. Per-scene code is numpy + PIL only (fast);
TensorFlow is used only to encode and write records. Images are stored JPEG
(quality 95) by default, masks PNG.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional

import gin
import numpy as np
from PIL import Image
import tensorflow as tf

from st_tf import atomic_io
from st_tf.data import schema
from st_tf.data.digitscene_render import (  # re-exported  # noqa: F401
    IMAGE_SIZE, VAL_POOL_FRACTION, DigitPool, digit_pools, make_scene)
from st_tf.data import sharded_writer

SPLITS = ('labeled', 'unlabeled', 'val')
NUM_CLASSES = 11  # 10 digits + background
CLASS_NAMES = ('background',) + tuple(str(d) for d in range(10))
METADATA_FILE = 'digitscenes.json'
DEFAULT_NUM_LABELED = 1000
DEFAULT_NUM_UNLABELED = 4000
DEFAULT_NUM_VAL = 500
SPLIT_CODES = {'labeled': 1, 'unlabeled': 2, 'val': 3}
SOURCE_ID_BLOCK = 1_000_000

# A scene costs ~4 ms of CPU, a writer process ~10 s of TF import: one
# process is faster below this many scenes per split.
_MIN_SCENES_PER_WORKER = 10000


def pool_for_split(split: str) -> DigitPool:
  """The digit pool a split draws from ('val' -> val pool, else train)."""
  _check_split(split)
  return digit_pools()['val' if split == 'val' else 'train']


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f'unknown DigitScenes split {split!r}; expected {SPLITS}')


def source_id(split: str, index: int) -> int:
  """Numeric source id (also the COCO image id) of scene `index` of `split`."""
  _check_split(split)
  if not 0 <= index < SOURCE_ID_BLOCK:
    raise ValueError(f'scene index {index} outside [0, {SOURCE_ID_BLOCK})')
  return SPLIT_CODES[split] * SOURCE_ID_BLOCK + index


def scene_for(split: str, index: int, seed: int, size: int = IMAGE_SIZE):
  """The deterministic scene `index` of `split` for `seed` (see make_scene)."""
  rng = np.random.default_rng([seed, SPLIT_CODES[split], index])
  return make_scene(rng, pool_for_split(split), size)


# ---------------------------------------------------------------- writing ---
def make_example(item: dict) -> tf.train.Example:
  """Work item -> record holding the detection and segmentation keys.

  `item` has 'split', 'index', 'seed', 'size' and optionally 'image_format'
  ('jpeg' default, or 'png'; the mask is always PNG) and 'image_dir' (also
  save the image as ``<image_dir>/<index:06d>.png``).
  """
  split, index = item['split'], item['index']
  image, boxes, classes, mask = scene_for(split, index, item['seed'],
                                          item['size'])
  size = image.shape[0]
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) * size**2
  example = schema.detection_example(
      image, boxes, classes, str(source_id(split, index)), area=area,
      image_format=item.get('image_format', 'jpeg'))
  features = example.features.feature
  features[schema.SEGMENTATION_MASK].bytes_list.value.append(
      schema.encode_image(mask, 'png'))
  features[schema.SEGMENTATION_MASK_FORMAT].bytes_list.value.append(b'PNG')
  if item.get('image_dir'):
    Image.fromarray(image).save(
        os.path.join(item['image_dir'], f'{index:06d}.png'))
  return example


def file_pattern(output_dir: str, split: str) -> str:
  """Glob of the TFRecord shards of `split` in `output_dir`."""
  _check_split(split)
  return os.path.join(output_dir, f'{split}-*.tfrecord')


def _coco_from_records(paths: List[str], split: str) -> dict:
  """COCO-format annotations (pixel [x, y, w, h] boxes) read from records."""
  images, annotations = [], []
  for raw in tf.data.TFRecordDataset(paths):
    f = tf.train.Example.FromString(raw.numpy()).features.feature
    image_id = int(f[schema.IMAGE_SOURCE_ID].bytes_list.value[0])
    height = int(f[schema.IMAGE_HEIGHT].int64_list.value[0])
    width = int(f[schema.IMAGE_WIDTH].int64_list.value[0])
    index = image_id % SOURCE_ID_BLOCK
    images.append({'id': image_id, 'height': height, 'width': width,
                   'file_name': f'{split}/{index:06d}.png'})
    values = lambda key: list(f[key].float_list.value)
    for ymin, xmin, ymax, xmax, cls, area in zip(
        values(schema.BOX_YMIN), values(schema.BOX_XMIN),
        values(schema.BOX_YMAX), values(schema.BOX_XMAX),
        f[schema.CLASS_LABEL].int64_list.value, values(schema.AREA)):
      bbox = [xmin * width, ymin * height, (xmax - xmin) * width,
              (ymax - ymin) * height]
      annotations.append({
          'image_id': image_id, 'category_id': int(cls), 'iscrowd': 0,
          'bbox': [round(float(v), 3) for v in bbox],
          'area': round(float(area), 3)})
  images.sort(key=lambda x: x['id'])
  annotations.sort(key=lambda a: a['image_id'])
  for i, ann in enumerate(annotations):
    ann['id'] = i + 1
  categories = [{'id': d + 1, 'name': str(d), 'supercategory': 'digit'}
                for d in range(10)]
  return {'images': images, 'annotations': annotations,
          'categories': categories}


def generate(output_dir: str,
             num_labeled: int = DEFAULT_NUM_LABELED,
             num_unlabeled: int = DEFAULT_NUM_UNLABELED,
             num_val: int = DEFAULT_NUM_VAL,
             seed: int = 0,
             num_shards: int = 4,
             image_size: int = IMAGE_SIZE,
             num_workers: Optional[int] = None,
             image_format: str = 'jpeg',
             write_images: bool = False) -> Dict[str, List[str]]:
  """Writes DigitScenes to `output_dir`.

  Writes ``{split}-0000i-of-0000n.tfrecord`` shards (n = min(num_shards,
  split size), at least 1), ``{split}.json`` COCO annotations per split and,
  last, the ``digitscenes.json`` metadata (its presence marks completion).

  Args:
    output_dir: output folder (created; local or any tf.io.gfile path).
    num_labeled: number of labeled scenes.
    num_unlabeled: number of unlabeled scenes (labels kept in the records).
    num_val: number of validation scenes (disjoint digit pool).
    seed: non-negative int; the output is a pure function of it and sizes.
    num_shards: maximum number of shards per split.
    image_size: scene height and width in pixels.
    num_workers: writer processes; default 1 below 10000 scenes per split,
      else `sharded_writer.write_sharded`'s default. The output does not
      depend on it.
    image_format: 'jpeg' (quality 95; ~15x cheaper to encode than PNG for
      these noisy scenes) or 'png' (lossless). Masks are always PNG.
    write_images: also save PNGs to ``output_dir/images/<split>/``.

  Returns:
    Dict split -> list of shard paths.
  """
  sizes = {'labeled': num_labeled, 'unlabeled': num_unlabeled,
           'val': num_val}
  for split, n in sizes.items():
    if not 0 <= n < SOURCE_ID_BLOCK:
      raise ValueError(f'num_{split} must be in [0, {SOURCE_ID_BLOCK}), '
                       f'got {n}')
  if seed < 0:
    raise ValueError(f'seed must be >= 0, got {seed}')
  if num_shards < 1:
    raise ValueError(f'num_shards must be >= 1, got {num_shards}')
  if image_format not in ('jpeg', 'png'):
    raise ValueError(f"image_format must be 'jpeg' or 'png', got "
                     f'{image_format!r}')
  tf.io.gfile.makedirs(output_dir)
  paths, splits_meta = {}, {}
  for split in SPLITS:
    image_dir = None
    if write_images:
      image_dir = os.path.join(output_dir, 'images', split)
      tf.io.gfile.makedirs(image_dir)
    items = [{'split': split, 'index': i, 'seed': seed, 'size': image_size,
              'image_format': image_format, 'image_dir': image_dir}
             for i in range(sizes[split])]
    result = sharded_writer.write_sharded(
        items, make_example, os.path.join(output_dir, split),
        num_shards=max(1, min(num_shards, sizes[split])),
        num_workers=num_workers, min_items_per_worker=_MIN_SCENES_PER_WORKER,
        desc=f'digitscenes/{split}')
    paths[split] = result.paths
    atomic_io.write_json(os.path.join(output_dir, f'{split}.json'),
                         _coco_from_records(result.paths, split))
    splits_meta[split] = {
        'num_examples': result.num_written,
        'files': [os.path.basename(p) for p in result.paths],
        'coco_json': f'{split}.json',
        'source_id_offset': SPLIT_CODES[split] * SOURCE_ID_BLOCK,
        'digit_pool': 'val' if split == 'val' else 'train',
    }
  pools = digit_pools()
  atomic_io.write_json(os.path.join(output_dir, METADATA_FILE), {
      'name': 'digitscenes', 'version': 1, 'seed': seed,
      'image_size': image_size, 'image_format': image_format,
      'num_classes': NUM_CLASSES,
      'class_names': list(CLASS_NAMES), 'splits': splits_meta,
      'digit_pools': {k: [int(p.indices[0]), int(p.indices[-1]) + 1]
                      for k, p in pools.items()},
  })
  return paths


def load_metadata(output_dir: str) -> dict:
  """Reads ``digitscenes.json``; raises FileNotFoundError naming the path."""
  path = os.path.join(output_dir, METADATA_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path} not found: run scripts/make_digitscenes.py'
                            f' --output_dir={output_dir}')
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def is_complete(output_dir: str, *, num_labeled: Optional[int] = None,
                num_unlabeled: Optional[int] = None,
                num_val: Optional[int] = None, seed: Optional[int] = None,
                image_size: Optional[int] = None) -> bool:
  """True if a finished DigitScenes (metadata + all shards + JSONs) is there.

  Optional arguments, when given, must also match the stored metadata.
  """
  try:
    meta = load_metadata(output_dir)
    wanted = {'labeled': num_labeled, 'unlabeled': num_unlabeled,
              'val': num_val}
    if seed is not None and meta['seed'] != seed:
      return False
    if image_size is not None and meta['image_size'] != image_size:
      return False
    for split in SPLITS:
      info = meta['splits'][split]
      if wanted[split] is not None and info['num_examples'] != wanted[split]:
        return False
      for name in info['files'] + [info['coco_json']]:
        if not tf.io.gfile.exists(os.path.join(output_dir, name)):
          return False
  except (FileNotFoundError, KeyError, TypeError, ValueError):
    return False
  return True


@gin.configurable
def ensure_digitscenes(output_dir: str = gin.REQUIRED,
                       num_labeled: int = DEFAULT_NUM_LABELED,
                       num_unlabeled: int = DEFAULT_NUM_UNLABELED,
                       num_val: int = DEFAULT_NUM_VAL,
                       seed: int = 0) -> str:
  """Generates DigitScenes in `output_dir` unless a matching copy is there.

  Used by the demo configs (`prepare.fns = [@ensure_digitscenes]`) so the
  README's run command works on a clean checkout. Returns `output_dir`.
  """
  if not is_complete(output_dir, num_labeled=num_labeled,
                     num_unlabeled=num_unlabeled, num_val=num_val, seed=seed):
    print(f'DigitScenes not found in {output_dir}: generating it.')
    generate(output_dir, num_labeled=num_labeled, num_unlabeled=num_unlabeled,
             num_val=num_val, seed=seed)
  return output_dir
