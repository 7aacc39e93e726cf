"""DigitScenes classification: single-digit crops for backbone pre-training.

Our stand-in for the paper's ImageNet pre-training. Each example is a 64x64
RGB crop holding ONE handwritten digit drawn exactly as DigitScenes draws the
digits of its scenes (`render.make_digit_crop`: same textured
backgrounds, clutter strokes, contrasting colours, 14-48 px digit heights and
pixel noise), centred with a jitter of up to `max_jitter` px; the label is the
digit 0..9 (no background class).

Digits come only from the ``train`` digit pool of `render.digit_pools`
(the source of the ``labeled`` / ``unlabeled`` scenes), never
from the ``val`` pool, so pre-training sees no digit sample of the detection
and segmentation ``val`` split.

Parts (written next to the scenes, e.g. in ``data/digitscenes``):

* ``classification-*.tfrecord``: training crops;
* ``classification_val-*.tfrecord``: held-out crops for top-1, drawn from
  their own random streams (disjoint seeds). They share the train pool's
  1348 source digit samples with the training crops (with new backgrounds,
  scales, colours and positions): top-1 measures the fit to the pre-training
  distribution, not generalisation to new writers.
* ``classification{,_val}.metadata.json``: their class-name sidecars
  (`st_tf.data.metadata`; 10 classes).

Records use Model Garden's classification keys (`official.vision.data.
tf_example_feature_key.EncodedImageFeatureKey`, read by `official.vision.
dataloaders.classification_input.Decoder`): ``image/encoded`` (JPEG quality
95, or PNG), ``image/format``, ``image/height``, ``image/width``,
``image/channels``, ``image/source_id`` (numeric string ``split_code *
1_000_000 + index``, codes classification=11, classification_val=12) and
``image/class/label`` (int64 digit). ``digit/source_index`` (int64) is the
source digit's position in `load_digits` (provenance).

Crop ``index`` of a part is drawn from ``np.random.default_rng([seed,
split_code, index])``: byte-identical output for a seed whatever the sharding
or number of workers. ``classification.json`` is written last (atomically);
its presence marks a complete copy. The scene splits and their
``digitscenes.json`` are not touched.
"""
from __future__ import annotations

import io
import os
from typing import Dict, List, Optional, Tuple

import gin
import numpy as np
from PIL import Image
import tensorflow as tf
from official.vision.data import tf_example_builder
from official.vision.data import tf_example_feature_key as mg_keys

from st_tf import atomic_io
from st_tf.datasets.digitscenes import common
from st_tf.datasets.digitscenes.render import (
    CROP_SIZE, digit_pools, make_digit_crop)

SPLITS = ('classification', 'classification_val')
SPLIT_CODES = {'classification': 11, 'classification_val': 12}
SOURCE_ID_BLOCK = common.SOURCE_ID_BLOCK
NUM_CLASSES = 10  # digits 0..9, no background
CLASS_NAMES = tuple(str(d) for d in range(10))
METADATA_FILE = 'classification.json'
DIGIT_POOL = 'train'
DEFAULT_NUM_TRAIN = 12000
DEFAULT_NUM_VAL = 1000
DEFAULT_MAX_JITTER = 4

_IMAGE_KEYS = mg_keys.EncodedImageFeatureKey()
IMAGE_ENCODED = _IMAGE_KEYS.encoded  # 'image/encoded'
IMAGE_FORMAT = _IMAGE_KEYS.format    # 'image/format'
LABEL = _IMAGE_KEYS.label            # 'image/class/label'
SOURCE_ID = _IMAGE_KEYS.source_id    # 'image/source_id'
DIGIT_INDEX = 'digit/source_index'

# A crop costs ~1.5 ms of CPU, a writer process ~10 s of TF import: one
# process is faster below 20000 crops per part.
_PARTS = common.Parts('DigitScenes classification', 'crop', SPLIT_CODES,
                      METADATA_FILE, task='classification',
                      class_names=CLASS_NAMES,
                      source='digitscenes_classification',
                      make_flags=' --num_classification=12000',
                      min_items_per_worker=20000)


def source_id(split: str, index: int) -> int:
  """Numeric source id of crop `index` of `split`."""
  return _PARTS.source_id(split, index)


def crop_for(split: str, index: int, seed: int, size: int = CROP_SIZE,
             max_jitter: int = DEFAULT_MAX_JITTER
            ) -> Tuple[np.ndarray, int, int]:
  """The deterministic crop `index` of `split` for `seed`.

  Returns:
    (image uint8 [size, size, 3], digit label 0..9, `load_digits` index of
    the source digit), as `render.make_digit_crop`.
  """
  _PARTS.check_split(split)
  return make_digit_crop(_PARTS.rng(seed, split, index),
                         digit_pools()[DIGIT_POOL], size, max_jitter)


def _encode(image: np.ndarray, image_format: str) -> bytes:
  """PIL-encoded image bytes (JPEG quality 95 is ~5x faster than tf.io)."""
  buffer = io.BytesIO()
  Image.fromarray(image).save(
      buffer, format='JPEG' if image_format == 'jpeg' else 'PNG',
      **({'quality': 95} if image_format == 'jpeg' else {}))
  return buffer.getvalue()


def make_example(item: dict) -> tf.train.Example:
  """Work item {'split', 'index', 'seed', 'size', 'max_jitter',
  'image_format'} -> Model Garden classification tf.Example."""
  split, index = item['split'], item['index']
  image, label, digit_index = crop_for(split, index, item['seed'],
                                       item['size'], item['max_jitter'])
  builder = tf_example_builder.TfExampleBuilder()
  builder.add_encoded_image_feature(
      _encode(image, item['image_format']),
      image_format=item['image_format'].upper(), height=image.shape[0],
      width=image.shape[1], num_channels=3,
      image_source_id=str(source_id(split, index)).encode(), label=label)
  builder.add_ints_feature(DIGIT_INDEX, digit_index)
  return builder.example


def file_pattern(output_dir: str, split: str = 'classification') -> str:
  """Glob of the TFRecord shards of `split` in `output_dir`."""
  return _PARTS.file_pattern(output_dir, split)


@gin.configurable
def digitscenes_classification_pattern(output_dir: str = gin.REQUIRED,
                                       split: str = 'classification') -> str:
  """Gin: `file_pattern` of `output_dir`, e.g. the pre-training demo's

      pretrain.train_pattern = @train/digitscenes_classification_pattern()
      digitscenes_classification_pattern.output_dir = %DATA_DIR
  """
  return file_pattern(output_dir, split)


def generate_classification(output_dir: str,
                            num_train: int = DEFAULT_NUM_TRAIN,
                            num_val: int = DEFAULT_NUM_VAL,
                            seed: int = 0,
                            num_shards: int = 4,
                            image_size: int = CROP_SIZE,
                            max_jitter: int = DEFAULT_MAX_JITTER,
                            num_workers: Optional[int] = None,
                            image_format: str = 'jpeg'
                           ) -> Dict[str, List[str]]:
  """Writes the classification parts to `output_dir`.

  Writes ``{split}-0000i-of-0000n.tfrecord`` shards for ``classification``
  and ``classification_val`` (n = min(num_shards, part size), at least 1)
  with their ``{split}.metadata.json`` sidecars (class names and count,
  `st_tf.data.metadata`: what `--mode=pretrain` checks `num_classes`
  against), then, last, ``classification.json``. Defaults take ~20 s on one
  core.

  Args:
    output_dir: output folder (created; local or any tf.io.gfile path).
    num_train: number of training crops (>= 1).
    num_val: number of held-out crops (>= 1).
    seed: non-negative int; the output is a pure function of the arguments
      (except `num_shards`' file split and `num_workers`).
    num_shards: maximum number of shards per part.
    image_size: crop height and width in pixels (>= 64).
    max_jitter: maximum shift of the digit from the centre, in pixels.
    num_workers: writer processes; default 1 below 20000 crops per part.
    image_format: 'jpeg' (quality 95) or 'png'.

  Returns:
    Dict split -> list of shard paths.
  """
  sizes = {'classification': num_train, 'classification_val': num_val}
  for split, n in sizes.items():
    common.check_count(f'{split} size', n, 1)
  common.check_generate_args(seed, num_shards, image_format)
  if image_size < CROP_SIZE:
    raise ValueError(f'image_size must be >= {CROP_SIZE}, got {image_size}')
  if max_jitter < 0:
    raise ValueError(f'max_jitter must be >= 0, got {max_jitter}')
  tf.io.gfile.makedirs(output_dir)
  paths, splits_meta = {}, {}
  for split in SPLITS:
    items = [{'split': split, 'index': i, 'seed': seed, 'size': image_size,
              'max_jitter': max_jitter, 'image_format': image_format}
             for i in range(sizes[split])]
    result, entry = _PARTS.write(output_dir, split, items, make_example,
                                 num_shards, num_workers)
    paths[split] = result.paths
    splits_meta[split] = {**entry,
                          'source_id_offset': _PARTS.offset(split),
                          'digit_pool': DIGIT_POOL}
  pool = digit_pools()[DIGIT_POOL]
  atomic_io.write_json(os.path.join(output_dir, METADATA_FILE), {
      'name': 'digitscenes_classification', 'version': 1, 'seed': seed,
      'image_size': image_size, 'max_jitter': max_jitter,
      'image_format': image_format, 'num_classes': NUM_CLASSES,
      'class_names': list(CLASS_NAMES), 'label_key': LABEL,
      'splits': splits_meta, 'digit_pool': DIGIT_POOL,
      'digit_indices': [int(pool.indices[0]), int(pool.indices[-1]) + 1],
  })
  return paths


def load_classification_metadata(output_dir: str) -> dict:
  """Reads ``classification.json``; raises FileNotFoundError naming it."""
  return _PARTS.load_metadata(output_dir)


def is_classification_complete(output_dir: str, *,
                               num_train: Optional[int] = None,
                               num_val: Optional[int] = None,
                               seed: Optional[int] = None,
                               image_size: Optional[int] = None,
                               max_jitter: Optional[int] = None) -> bool:
  """True if finished classification parts (metadata + shards) are there.

  Optional arguments, when given, must also match the stored metadata.
  """
  try:
    meta = load_classification_metadata(output_dir)
    wanted = {'seed': seed, 'image_size': image_size,
              'max_jitter': max_jitter}
    if any(v is not None and meta[k] != v for k, v in wanted.items()):
      return False
    counts = {'classification': num_train, 'classification_val': num_val}
    for split in SPLITS:
      if not common.part_complete(output_dir, meta['splits'][split],
                                  counts[split]):
        return False
  except (FileNotFoundError, KeyError, TypeError, ValueError):
    return False
  return True


@gin.configurable
def ensure_digitscenes_classification(
    output_dir: str = gin.REQUIRED,
    num_train: int = DEFAULT_NUM_TRAIN,
    num_val: int = DEFAULT_NUM_VAL,
    seed: int = 0,
    max_jitter: int = DEFAULT_MAX_JITTER) -> str:
  """Generates the classification parts unless a matching copy is there.

  For `prepare.fns = [@ensure_digitscenes_classification]` (the pre-training
  demo). Returns `output_dir`.
  """
  if not is_classification_complete(output_dir, num_train=num_train,
                                    num_val=num_val, seed=seed,
                                    max_jitter=max_jitter):
    print(f'DigitScenes classification not found in {output_dir}: '
          'generating it.')
    generate_classification(output_dir, num_train=num_train, num_val=num_val,
                            seed=seed, max_jitter=max_jitter)
  return output_dir
