r"""Small data sets the project did not make, in the formats users bring.

* `make_coco`: a COCO-format detection set (images + instances JSON for
  train and val) and a folder of unlabeled images;
* `make_voc`: a PASCAL VOC 2012-style segmentation set (JPEGImages,
  SegmentationClass palette PNGs with 255 borders, ImageSets) and a folder
  of unlabeled images.

Images are non-square and of mixed sizes, JPEG and PNG, with one grayscale
and one RGBA image in every split; COCO category ids are 3 and 7 (not
1..N). Objects are filled rectangles (COCO id 3 / VOC class 1) and discs
(id 7 / class 2) on a noisy background, 14-44 px.

The README's "Self-train on your data" commands were run on these:

  python -m tests.e2e.own_data --output_dir=data/mine
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Tuple

from absl import app
from absl import flags
import numpy as np
from PIL import Image
from PIL import ImageDraw

# (height, width): non-square, mixed.
SIZES = [(120, 160), (96, 144), (160, 112), (72, 128), (128, 88), (100, 150)]
CATEGORIES = [{'id': 3, 'name': 'box', 'supercategory': 'shape'},
              {'id': 7, 'name': 'disc', 'supercategory': 'shape'}]
NUM_CLASSES_COCO = 8       # largest category id + 1
VOC_CLASSES = 3            # background, box, disc
_PALETTE = ([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 252) +
            [224, 224, 192])


def _mode_and_ext(index: int) -> Tuple[str, str]:
  """Image 0 of a split is grayscale JPEG, image 1 RGBA PNG, then RGB
  alternating JPEG / PNG."""
  if index == 0:
    return 'L', '.jpg'
  if index == 1:
    return 'RGBA', '.png'
  return 'RGB', ('.jpg' if index % 2 else '.png')


def _draw_scene(rng: np.random.RandomState, height: int, width: int
                ) -> Tuple[Image.Image, List[Tuple[int, List[float]]],
                           np.ndarray]:
  """A noisy background with 1-3 objects.

  Returns:
    (RGB image, [(kind 0 = box / 1 = disc, [x, y, w, h])], class map with
    VOC ids and 255 on a 2 px border around each object).
  """
  base = rng.randint(60, 200, size=3)
  pixels = np.clip(base + rng.randint(-30, 30, (height, width, 3)), 0, 255)
  image = Image.fromarray(pixels.astype(np.uint8), 'RGB')
  draw = ImageDraw.Draw(image)
  mask = Image.new('L', (width, height), 0)
  mask_draw = ImageDraw.Draw(mask)
  objects = []
  for _ in range(rng.randint(1, 4)):
    kind = int(rng.randint(2))
    w, h = (int(v) for v in rng.randint(14, 45, size=2))
    w, h = min(w, width - 2), min(h, height - 2)
    x, y = int(rng.randint(0, width - w)), int(rng.randint(0, height - h))
    shape = [x, y, x + w - 1, y + h - 1]
    colour = (230, 40, 40) if kind == 0 else (40, 60, 230)
    (draw.rectangle if kind == 0 else draw.ellipse)(shape, fill=colour)
    (mask_draw.rectangle if kind == 0 else mask_draw.ellipse)(
        shape, fill=kind + 1, outline=255, width=2)
    objects.append((kind, [float(x), float(y), float(w), float(h)]))
  return image, objects, np.asarray(mask, np.uint8)


def _save(image: Image.Image, mode: str, path: str) -> Image.Image:
  image = image.convert(mode)
  if mode == 'RGBA':
    alpha = np.full(image.size[::-1], 255, np.uint8)
    alpha[:, : image.size[0] // 4] = 128   # A real alpha channel.
    image.putalpha(Image.fromarray(alpha))
  image.save(path, quality=92) if path.endswith('.jpg') else image.save(path)
  return image


def _unlabeled(folder: str, num: int, seed: int) -> List[str]:
  """`num` unlabeled images in two sub-folders (a recursive listing)."""
  rng = np.random.RandomState(seed)
  paths = []
  for i in range(num):
    sub = os.path.join(folder, 'batch_a' if i % 2 else 'batch_b')
    os.makedirs(sub, exist_ok=True)
    height, width = SIZES[(i + 3) % len(SIZES)]
    image, _, _ = _draw_scene(rng, height, width)
    mode, ext = _mode_and_ext(i)
    path = os.path.join(sub, f'u{i:03d}{ext}')
    _save(image, mode, path)
    paths.append(path)
  return paths


def make_coco(root: str, num_train: int = 16, num_val: int = 8,
              num_unlabeled: int = 16, seed: int = 0) -> Dict[str, str]:
  """Writes <root>/images/{train,val}/, <root>/{train,val}.json and
  <root>/unlabeled/; returns their paths."""
  rng = np.random.RandomState(seed)
  out = {}
  annotation_id = 1
  for split, num, first_id in (('train', num_train, 101),
                               ('val', num_val, 501)):
    image_dir = os.path.join(root, 'images', split)
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for i in range(num):
      height, width = SIZES[i % len(SIZES)]
      image, objects, _ = _draw_scene(rng, height, width)
      mode, ext = _mode_and_ext(i)
      name = f'{split}_{i:03d}{ext}'
      _save(image, mode, os.path.join(image_dir, name))
      image_id = first_id + 7 * i          # ids with gaps too
      images.append({'id': image_id, 'file_name': name, 'height': height,
                     'width': width})
      for kind, box in objects:
        annotations.append({
            'id': annotation_id, 'image_id': image_id, 'bbox': box,
            'category_id': CATEGORIES[kind]['id'], 'iscrowd': 0,
            'area': box[2] * box[3]})
        annotation_id += 1
    ann_file = os.path.join(root, f'{split}.json')
    with open(ann_file, 'w') as f:
      json.dump({'images': images, 'annotations': annotations,
                 'categories': CATEGORIES}, f)
    out[f'{split}_images'] = image_dir
    out[f'{split}_json'] = ann_file
  out['unlabeled'] = os.path.join(root, 'unlabeled')
  _unlabeled(out['unlabeled'], num_unlabeled, seed + 1)
  return out


def make_voc(root: str, num_train: int = 16, num_val: int = 8,
             num_unlabeled: int = 16, seed: int = 0) -> Dict[str, str]:
  """Writes the VOC layout under <root>/VOC (splits 'train', 'val') and
  <root>/unlabeled/; returns their paths. VOC images are JPEG (the
  layout's), image 0 of each split grayscale."""
  rng = np.random.RandomState(seed)
  voc = os.path.join(root, 'VOC')
  for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
    os.makedirs(os.path.join(voc, sub), exist_ok=True)
  for split, num in (('train', num_train), ('val', num_val)):
    ids = []
    for i in range(num):
      height, width = SIZES[i % len(SIZES)]
      image, _, mask = _draw_scene(rng, height, width)
      image_id = f'2024_{split}_{i:03d}'
      _save(image, 'L' if i == 0 else 'RGB',
            os.path.join(voc, 'JPEGImages', f'{image_id}.jpg'))
      png = Image.fromarray(mask, mode='P')
      png.putpalette(_PALETTE)
      png.save(os.path.join(voc, 'SegmentationClass', f'{image_id}.png'))
      ids.append(image_id)
    with open(os.path.join(voc, 'ImageSets', 'Segmentation', f'{split}.txt'),
              'w') as f:
      f.write('\n'.join(ids) + '\n')
  unlabeled = os.path.join(root, 'unlabeled')
  _unlabeled(unlabeled, num_unlabeled, seed + 1)
  return {'voc_root': voc, 'unlabeled': unlabeled}


def main(argv):
  del argv
  coco = make_coco(os.path.join(flags.FLAGS.output_dir, 'coco'))
  voc = make_voc(os.path.join(flags.FLAGS.output_dir, 'voc'))
  for key, value in {**coco, 'voc_root': voc['voc_root'],
                     'voc_unlabeled': voc['unlabeled']}.items():
    print(f'{key}: {value}')


if __name__ == '__main__':
  flags.DEFINE_string('output_dir', 'data/mine', 'Where to write the sets.')
  app.run(main)
