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

Splits and layouts. Source digits: `load_digits` carries no writer ids. Its
1797 samples are the UCI "optdigits" test set (13 writers); every split draws
from a contiguous index block of them (a "pool"). That the UCI file is
ordered by writer is an assumption we could not verify: pools are disjoint in
samples, and probably, not certainly, in writers. ``unlabeled`` records keep
their labels so that pseudo-label quality can be measured; training ignores
them. Two layouts (`LAYOUTS`):

* ``v2`` (the self-training demos): ``labeled`` (250 scenes) from a SMALL pool
  (indices 0..199, ~20 samples per digit), ``unlabeled`` (8000 scenes) from a
  4.5x larger pool the labeled scenes never show (200..1099), ``val`` (500,
  1100..1449) to choose recipes on and ``test`` (500, 1450..1796) to report
  on. The regime of the paper: few labels, many unlabeled images holding what
  the labeled ones lack.
* ``v1`` (the first layout, kept for `scripts/reproduce_paper.py` and the
  pre-training crops): ``labeled`` (1000) and ``unlabeled`` (4000) share one
  pool (0..1347), ``val`` (500) has its own (1348..1796); no ``test``.

Source ids are numeric strings (Model Garden's eval parser casts them to
int64): ``split_code * 1_000_000 + index`` with codes labeled=1,
unlabeled=2, val=3, test=4; the COCO JSON uses the same integers as image ids.

Every scene is drawn from ``np.random.default_rng([seed, split_code,
index])``, so the output is byte-identical for a seed whatever the sharding
or number of worker processes. Per-scene code is numpy + PIL only (fast);
TensorFlow is used only to encode and write records. Images are stored JPEG
(quality 95) by default, masks PNG.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Mapping, Optional, Tuple

import gin
from PIL import Image
import tensorflow as tf

from st_tf import atomic_io
from st_tf import registry
from st_tf.data import schema
from st_tf.datasets.digitscenes import common
from st_tf.datasets.digitscenes.render import (  # re-exported  # noqa: F401
    IMAGE_SIZE, VAL_POOL_FRACTION, DigitPool, digit_pools, make_scene,
    pool_block)

SPLITS = ('labeled', 'unlabeled', 'val', 'test')
NUM_CLASSES = 11  # 10 digits + background
CLASS_NAMES = ('background',) + tuple(str(d) for d in range(10))
METADATA_FILE = 'digitscenes.json'
SPLIT_CODES = {'labeled': 1, 'unlabeled': 2, 'val': 3, 'test': 4}
SOURCE_ID_BLOCK = common.SOURCE_ID_BLOCK


@dataclasses.dataclass(frozen=True)
class Layout:
  """Which digit pool each split draws from, and default scene counts.

  Attributes:
    name: 'v1' or 'v2' (see the module docstring).
    pools: split -> [start, end) block of `load_digits` indices.
    sizes: split -> default number of scenes.
  """
  name: str
  pools: Mapping[str, Tuple[int, int]]
  sizes: Mapping[str, int]

  @property
  def splits(self) -> Tuple[str, ...]:
    return tuple(s for s in SPLITS if s in self.pools)


LAYOUTS: registry.Registry[Layout] = registry.Registry('DigitScenes layout', {
    'v1': Layout('v1', {'labeled': (0, 1348), 'unlabeled': (0, 1348),
                        'val': (1348, 1797)},
                 {'labeled': 1000, 'unlabeled': 4000, 'val': 500}),
    'v2': Layout('v2', {'labeled': (0, 200), 'unlabeled': (200, 1100),
                        'val': (1100, 1450), 'test': (1450, 1797)},
                 {'labeled': 250, 'unlabeled': 8000, 'val': 500,
                  'test': 500}),
})
DEFAULT_LAYOUT = 'v1'
DEFAULT_NUM_LABELED = LAYOUTS['v1'].sizes['labeled']
DEFAULT_NUM_UNLABELED = LAYOUTS['v1'].sizes['unlabeled']
DEFAULT_NUM_VAL = LAYOUTS['v1'].sizes['val']

# A scene costs ~4 ms of CPU, a writer process ~10 s of TF import: one
# process is faster below 10000 scenes per split.
# Records hold boxes and masks: both tasks.
_PARTS = common.Parts('DigitScenes', 'scene', SPLIT_CODES, METADATA_FILE,
                      task='detection+segmentation', class_names=CLASS_NAMES,
                      source='digitscenes', min_items_per_worker=10000)


def get_layout(layout: str) -> Layout:
  """The `Layout` named `layout`; ValueError naming the known ones."""
  return LAYOUTS.get(layout)


def pool_for_split(split: str, layout: str = DEFAULT_LAYOUT) -> DigitPool:
  """The digit pool `split` draws from in `layout`."""
  _check_split(split, layout)
  return pool_block(*get_layout(layout).pools[split])


def _check_split(split: str, layout: str = DEFAULT_LAYOUT) -> None:
  splits = get_layout(layout).splits
  if split not in splits:
    raise ValueError(f'unknown DigitScenes split {split!r} for layout '
                     f'{layout!r}; expected one of {splits}')


def source_id(split: str, index: int) -> int:
  """Numeric source id (also the COCO image id) of scene `index` of `split`."""
  return _PARTS.source_id(split, index)


def scene_for(split: str, index: int, seed: int, size: int = IMAGE_SIZE,
              layout: str = DEFAULT_LAYOUT):
  """The deterministic scene `index` of `split` for `seed` (see make_scene)."""
  return make_scene(_PARTS.rng(seed, split, index),
                    pool_for_split(split, layout), size)


# ---------------------------------------------------------------- writing ---
def make_example(item: dict) -> tf.train.Example:
  """Work item -> record holding the detection and segmentation keys.

  `item` has 'split', 'index', 'seed', 'size' and optionally 'layout'
  (default 'v1'), 'image_format' ('jpeg' default, or 'png'; the mask is
  always PNG) and 'image_dir' (also save the image as
  ``<image_dir>/<index:06d>.png``).
  """
  split, index = item['split'], item['index']
  image, boxes, classes, mask = scene_for(
      split, index, item['seed'], item['size'],
      item.get('layout', DEFAULT_LAYOUT))
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
  return _PARTS.file_pattern(output_dir, split)


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


def _split_sizes(layout: Layout, sizes: Mapping[str, Optional[int]]
                 ) -> Dict[str, int]:
  """Scene count per split of `layout`: `sizes[split]`, else the default."""
  out = {}
  for split in layout.splits:
    n = sizes.get(split)
    n = layout.sizes[split] if n is None else int(n)
    common.check_count(f'num_{split}', n, 0)
    out[split] = n
  unknown = [s for s, n in sizes.items()
             if n is not None and s not in layout.splits]
  if unknown:
    raise ValueError(f'layout {layout.name!r} has no split {unknown[0]!r} '
                     f'(its splits: {layout.splits})')
  return out


def generate(output_dir: str,
             num_labeled: Optional[int] = None,
             num_unlabeled: Optional[int] = None,
             num_val: Optional[int] = None,
             seed: int = 0,
             num_shards: int = 4,
             image_size: int = IMAGE_SIZE,
             num_workers: Optional[int] = None,
             image_format: str = 'jpeg',
             write_images: bool = False,
             layout: str = DEFAULT_LAYOUT,
             num_test: Optional[int] = None) -> Dict[str, List[str]]:
  """Writes DigitScenes to `output_dir`.

  Writes ``{split}-0000i-of-0000n.tfrecord`` shards (n = min(num_shards,
  split size), at least 1), ``{split}.json`` COCO annotations and the
  ``{split}.metadata.json`` sidecar (class names, `metadata.py`) per split
  and, last, the ``digitscenes.json`` metadata (its presence marks
  completion).

  Args:
    output_dir: output folder (created; local or any tf.io.gfile path).
    num_labeled, num_unlabeled, num_val, num_test: scenes per split; None =
      the layout's default (`LAYOUTS`). `num_test` only for layout 'v2'.
    seed: non-negative int; the output is a pure function of it, the
      layout and the sizes.
    num_shards: maximum number of shards per split.
    image_size: scene height and width in pixels.
    num_workers: writer processes; default 1 below 10000 scenes per split,
      else `sharded_writer.write_sharded`'s default. The output does not
      depend on it.
    image_format: 'jpeg' (quality 95; ~15x cheaper to encode than PNG for
      these noisy scenes) or 'png' (lossless). Masks are always PNG.
    write_images: also save PNGs to ``output_dir/images/<split>/``.
    layout: 'v1' or 'v2': which digit pool each split draws from.

  Returns:
    Dict split -> list of shard paths.
  """
  spec = get_layout(layout)
  sizes = _split_sizes(spec, {'labeled': num_labeled,
                              'unlabeled': num_unlabeled, 'val': num_val,
                              'test': num_test})
  common.check_generate_args(seed, num_shards, image_format)
  tf.io.gfile.makedirs(output_dir)
  paths, splits_meta = {}, {}
  for split, count in sizes.items():
    image_dir = None
    if write_images:
      image_dir = os.path.join(output_dir, 'images', split)
      tf.io.gfile.makedirs(image_dir)
    items = [{'split': split, 'index': i, 'seed': seed, 'size': image_size,
              'image_format': image_format, 'image_dir': image_dir,
              'layout': layout} for i in range(count)]
    result, entry = _PARTS.write(output_dir, split, items, make_example,
                                 num_shards, num_workers)
    paths[split] = result.paths
    atomic_io.write_json(os.path.join(output_dir, f'{split}.json'),
                         _coco_from_records(result.paths, split))
    splits_meta[split] = {
        **entry, 'coco_json': f'{split}.json',
        'source_id_offset': _PARTS.offset(split),
        'digit_pool': list(spec.pools[split]),
    }
  atomic_io.write_json(os.path.join(output_dir, METADATA_FILE), {
      'name': 'digitscenes', 'version': 2, 'layout': layout, 'seed': seed,
      'image_size': image_size, 'image_format': image_format,
      'num_classes': NUM_CLASSES,
      'class_names': list(CLASS_NAMES), 'splits': splits_meta,
  })
  return paths


def load_metadata(output_dir: str) -> dict:
  """Reads ``digitscenes.json``; raises FileNotFoundError naming the path."""
  return _PARTS.load_metadata(output_dir)


def is_complete(output_dir: str, *, num_labeled: Optional[int] = None,
                num_unlabeled: Optional[int] = None,
                num_val: Optional[int] = None, seed: Optional[int] = None,
                image_size: Optional[int] = None,
                layout: Optional[str] = None,
                num_test: Optional[int] = None) -> bool:
  """True if a finished DigitScenes (metadata + all shards + JSONs) is there.

  Optional arguments, when given, must also match the stored metadata
  (a folder written before layouts existed is layout 'v1').
  """
  try:
    meta = load_metadata(output_dir)
    stored_layout = meta.get('layout', 'v1')
    wanted = {'labeled': num_labeled, 'unlabeled': num_unlabeled,
              'val': num_val, 'test': num_test}
    if layout is not None and stored_layout != layout:
      return False
    if seed is not None and meta['seed'] != seed:
      return False
    if image_size is not None and meta['image_size'] != image_size:
      return False
    for split in get_layout(stored_layout).splits:
      info = meta['splits'][split]
      if not common.part_complete(output_dir, info, wanted[split],
                                  [info['coco_json']]):
        return False
  except (FileNotFoundError, KeyError, TypeError, ValueError):
    return False
  return True


def _refuse_other_copy(output_dir: str, layout: str, seed: int,
                       sizes: Mapping[str, int]) -> None:
  """Raises if `output_dir` holds a finished DigitScenes of another spec.

  Regenerating there would overwrite records other runs read (a v1 copy
  written into a v2 folder, say). A folder without metadata, or whose copy
  is unfinished (a crash), may be (re)generated.
  """
  try:
    meta = load_metadata(output_dir)
  except (FileNotFoundError, ValueError):
    return
  if not is_complete(output_dir):
    return
  stored = {'layout': meta.get('layout', 'v1'), 'seed': meta.get('seed'),
            'sizes': {k: v.get('num_examples')
                      for k, v in meta.get('splits', {}).items()}}
  wanted = {'layout': layout, 'seed': seed, 'sizes': dict(sizes)}
  raise ValueError(
      f'{os.path.join(output_dir, METADATA_FILE)} holds another DigitScenes '
      f'({stored}) than asked ({wanted}); regenerating would overwrite it. '
      'Fix: give another output_dir, ask for the stored layout and sizes, '
      'or delete the folder.')


@gin.configurable
def ensure_digitscenes(output_dir: str = gin.REQUIRED,
                       num_labeled: Optional[int] = None,
                       num_unlabeled: Optional[int] = None,
                       num_val: Optional[int] = None,
                       seed: int = 0,
                       layout: str = DEFAULT_LAYOUT,
                       num_test: Optional[int] = None) -> str:
  """Generates DigitScenes in `output_dir` unless a matching copy is there.

  Used by the demo configs (`prepare.fns = [@ensure_digitscenes]`) so the
  README's run command works on a clean checkout. Sizes default to the
  layout's (`LAYOUTS`). Returns `output_dir`.
  """
  spec = get_layout(layout)
  sizes = _split_sizes(spec, {'labeled': num_labeled,
                              'unlabeled': num_unlabeled, 'val': num_val,
                              'test': num_test})
  if not is_complete(output_dir, seed=seed, layout=layout,
                     num_labeled=sizes['labeled'],
                     num_unlabeled=sizes['unlabeled'], num_val=sizes['val'],
                     num_test=sizes.get('test')):
    _refuse_other_copy(output_dir, layout, seed, sizes)
    print(f'DigitScenes (layout {layout}) not found in {output_dir}: '
          'generating it.')
    generate(output_dir, seed=seed, layout=layout, **{
        f'num_{split}': n for split, n in sizes.items()})
  return output_dir
