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

import functools
import json
import os
from typing import Dict, List, NamedTuple, Optional, Tuple

import gin
import numpy as np
from PIL import Image
import tensorflow as tf

from st_tf.data import schema
from st_tf.data import sharded_writer

SPLITS = ('labeled', 'unlabeled', 'val')
NUM_CLASSES = 11  # 10 digits + background
CLASS_NAMES = ('background',) + tuple(str(d) for d in range(10))
IMAGE_SIZE = 128
METADATA_FILE = 'digitscenes.json'
VAL_POOL_FRACTION = 0.25
DEFAULT_NUM_LABELED = 1000
DEFAULT_NUM_UNLABELED = 4000
DEFAULT_NUM_VAL = 500
SPLIT_CODES = {'labeled': 1, 'unlabeled': 2, 'val': 3}
SOURCE_ID_BLOCK = 1_000_000

_STROKE_THRESHOLD = 0.5   # upscaled intensity (in [0, 1]) above = stroke
_MAX_IOU = 0.3
_DIGIT_HEIGHT = (14, 48)  # nominal digit height in pixels
_PLACEMENT_TRIES = 30
# A scene costs ~4 ms of CPU, a writer process ~10 s of TF import: one
# process is faster below this many scenes per split.
_MIN_SCENES_PER_WORKER = 10000


class DigitPool(NamedTuple):
  """Source digits: ``images`` float32 [M, 8, 8] in [0, 1], ``labels`` int64
  [M] digits 0..9, ``indices`` int64 [M] positions in `load_digits`."""
  images: np.ndarray
  labels: np.ndarray
  indices: np.ndarray


@functools.lru_cache(maxsize=None)
def digit_pools() -> Dict[str, DigitPool]:
  """Returns {'train': pool of labeled/unlabeled, 'val': pool of val}."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images = digits.images.astype(np.float32) / 16.0
  labels = digits.target.astype(np.int64)
  cut = int(round(len(labels) * (1.0 - VAL_POOL_FRACTION)))
  index = np.arange(len(labels), dtype=np.int64)
  return {
      'train': DigitPool(images[:cut], labels[:cut], index[:cut]),
      'val': DigitPool(images[cut:], labels[cut:], index[cut:]),
  }


def pool_for_split(split: str) -> DigitPool:
  """The digit pool a split draws from ('val' -> val pool, else train)."""
  _check_split(split)
  return digit_pools()['val' if split == 'val' else 'train']


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f'unknown DigitScenes split {split!r}; expected {SPLITS}')


# ----------------------------------------------------------------- scenes ---
def _resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bicubic resize of a float [h, w] or [h, w, c] array (PIL, per channel)."""
  if array.ndim == 3:
    return np.stack([_resize(array[..., c], height, width)
                     for c in range(array.shape[-1])], axis=-1)
  image = Image.fromarray(np.ascontiguousarray(array, np.float32))
  return np.asarray(image.resize((width, height), Image.BICUBIC), np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
  """Random textured background, float32 [size, size, 3] in ~[0, 255]."""
  coords = np.arange(size, dtype=np.float32)
  ys, xs = coords[:, None], coords[None, :]
  c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
  theta = rng.uniform(0, 2 * np.pi)
  t = np.float32(np.cos(theta)) * xs + np.float32(np.sin(theta)) * ys
  t = (t - t.min()) / (np.ptp(t) + 1e-6)
  image = c0 + (c1 - c0) * t[..., None]
  grid = int(rng.integers(3, 9))
  image += np.float32(rng.uniform(10, 45)) * _resize(
      rng.normal(0, 1, (grid, grid, 3)), size, size)
  if rng.random() < 0.5:  # stripes, soft or hard
    phi = rng.uniform(0, np.pi)
    period = rng.uniform(5, 32)
    phase = (np.float32(np.cos(phi) * 2 * np.pi / period) * xs +
             np.float32(np.sin(phi) * 2 * np.pi / period) * ys)
    wave = np.sin(phase + np.float32(rng.uniform(0, 2 * np.pi)))
    if rng.random() < 0.5:
      wave = np.sign(wave)
    image += wave[..., None] * (rng.uniform(10, 45) *
                                rng.uniform(-1, 1, 3)).astype(np.float32)
  for _ in range(int(rng.integers(0, 5))):  # soft colour blobs
    cy, cx = rng.uniform(0, size, 2)
    sy, sx = rng.uniform(4, 24, 2)
    y0, y1 = max(0, int(cy - 3 * sy)), min(size, int(cy + 3 * sy) + 1)
    x0, x1 = max(0, int(cx - 3 * sx)), min(size, int(cx + 3 * sx) + 1)
    g = np.exp(-0.5 * ((ys[y0:y1] - cy) / sy) ** 2) * np.exp(
        -0.5 * ((xs[:, x0:x1] - cx) / sx) ** 2)
    weight = (g * np.float32(rng.uniform(0.3, 0.9)))[..., None]
    window = image[y0:y1, x0:x1]
    window += (rng.uniform(0, 255, 3).astype(np.float32) - window) * weight
  return image


def _clutter(rng: np.random.Generator, image: np.ndarray) -> None:
  """Paints 0-2 thin straight strokes (non-digit distractors) in place."""
  size = image.shape[0]
  for _ in range(int(rng.integers(0, 3))):
    p0 = rng.uniform(0, size, 2)
    d = rng.uniform(-30, 30, 2)
    half_width = rng.uniform(0.7, 1.5)
    colour = rng.uniform(0, 255, 3).astype(np.float32)
    lo = np.clip(np.floor(np.minimum(p0, p0 + d) - 3), 0, size).astype(int)
    hi = np.clip(np.ceil(np.maximum(p0, p0 + d) + 3), 0, size).astype(int)
    yy, xx = np.mgrid[lo[0]:hi[0], lo[1]:hi[1]].astype(np.float32)
    s = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) /
                (d @ d + 1e-6), 0, 1)
    dist = np.hypot(yy - p0[0] - s * d[0], xx - p0[1] - s * d[1])
    alpha = np.clip(half_width + 0.5 - dist, 0, 1)[..., None]
    window = image[lo[0]:hi[0], lo[1]:hi[1]]
    window += (colour - window) * alpha


def _render_digit(digit: np.ndarray, height: int, width: int) -> np.ndarray:
  """Upscales an 8x8 digit so its 8x8 core spans ~height x width pixels.

  Returns float32 [h', w'] intensities in [0, 1] (with a faded border).
  """
  padded = np.pad(digit, 1)  # zero border: the upscaled edge fades out
  out_h = int(round(height * 10 / 8))
  out_w = int(round(width * 10 / 8))
  return np.clip(_resize(padded, out_h, out_w), 0.0, 1.0)


def _overlap_ok(a: np.ndarray, b: np.ndarray) -> bool:
  """Pixel boxes [ymin, xmin, ymax, xmax] overlap little: IoU < 0.3 and
  at most half of either box lies inside the other."""
  ih = min(a[2], b[2]) - max(a[0], b[0])
  iw = min(a[3], b[3]) - max(a[1], b[1])
  if ih <= 0 or iw <= 0:
    return True
  inter = float(ih * iw)
  area_a = float((a[2] - a[0]) * (a[3] - a[1]))
  area_b = float((b[2] - b[0]) * (b[3] - b[1]))
  return (inter / (area_a + area_b - inter) < _MAX_IOU and
          inter <= 0.5 * min(area_a, area_b))


def _pick_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
  """A random RGB colour contrasting with the mean colour `under` it."""
  mean = under.reshape(-1, 3).mean(0)
  colours = rng.uniform(0, 255, (20, 3))
  dist = np.linalg.norm(colours - mean, axis=-1)
  good = np.flatnonzero(dist > 120)
  return colours[good[0] if good.size else int(np.argmax(dist))]


def make_scene(rng: np.random.Generator, digit_pool: DigitPool,
               size: int = IMAGE_SIZE
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Draws one scene.

  Args:
    rng: numpy random generator (the only source of randomness).
    digit_pool: source digits to draw from.
    size: image height and width in pixels (>= 64).

  Returns:
    image: uint8 [size, size, 3] RGB.
    boxes: float32 [N, 4] normalized [ymin, xmin, ymax, xmax], the tight
      stroke extent of each digit (pixel-edge convention), 1 <= N <= 5.
    classes: int64 [N], digit + 1 (1..10).
    mask: uint8 [size, size], stroke pixels = class id, background 0.
  """
  if size < 64:
    raise ValueError(f'DigitScenes size must be >= 64, got {size}')
  image = _background(rng, size)
  if rng.random() < 0.5:
    _clutter(rng, image)
  mask = np.zeros((size, size), np.uint8)
  boxes, classes = [], []
  for _ in range(int(rng.integers(1, 6))):
    k = int(rng.integers(len(digit_pool.labels)))
    height = int(rng.integers(_DIGIT_HEIGHT[0], _DIGIT_HEIGHT[1] + 1))
    width = max(8, int(round(height * rng.uniform(0.7, 1.05))))
    value = _render_digit(digit_pool.images[k], height, width)
    stroke = value > _STROKE_THRESHOLD
    rows, cols = np.flatnonzero(stroke.any(1)), np.flatnonzero(stroke.any(0))
    if rows.size == 0:
      continue
    ph, pw = value.shape
    rel = np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1])
    for _ in range(_PLACEMENT_TRIES):
      y = int(rng.integers(0, size - ph + 1))
      x = int(rng.integers(0, size - pw + 1))
      box = rel + np.array([y, x, y, x])
      if all(_overlap_ok(box, other) for other in boxes):
        break
    else:
      continue  # no room left for this digit
    region = image[y:y + ph, x:x + pw]
    colour = _pick_colour(rng, region).astype(np.float32)
    alpha = np.clip((value - 0.3) / 0.4, 0, 1)[..., None]  # 0.5 at threshold
    region += (colour - region) * alpha
    class_id = int(digit_pool.labels[k]) + 1
    mask[y:y + ph, x:x + pw][stroke] = class_id
    boxes.append(box)
    classes.append(class_id)
  sigma = np.float32(rng.uniform(0, 8) * np.sqrt(3))  # uniform noise, std 0-8
  image += sigma * (2 * rng.random(image.shape, np.float32) - 1)
  image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4) / np.float32(size)
  return image, boxes, np.asarray(classes, np.int64), mask


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


def _write_json(path: str, data: dict) -> None:
  """Writes JSON atomically (tmp file + rename)."""
  with tf.io.gfile.GFile(path + '.tmp', 'w') as f:
    json.dump(data, f)
  tf.io.gfile.rename(path + '.tmp', path, overwrite=True)


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
        num_workers=(num_workers if num_workers is not None or
                     sizes[split] >= _MIN_SCENES_PER_WORKER else 1),
        desc=f'digitscenes/{split}')
    paths[split] = result.paths
    _write_json(os.path.join(output_dir, f'{split}.json'),
                _coco_from_records(result.paths, split))
    splits_meta[split] = {
        'num_examples': result.num_written,
        'files': [os.path.basename(p) for p in result.paths],
        'coco_json': f'{split}.json',
        'source_id_offset': SPLIT_CODES[split] * SOURCE_ID_BLOCK,
        'digit_pool': 'val' if split == 'val' else 'train',
    }
  pools = digit_pools()
  _write_json(os.path.join(output_dir, METADATA_FILE), {
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
