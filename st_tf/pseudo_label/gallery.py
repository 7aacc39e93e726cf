"""A PNG gallery of a few images with their pseudo labels drawn (PIL)."""
from __future__ import annotations

import io
from typing import Mapping, Optional, Sequence

import numpy as np
from PIL import Image
from PIL import ImageDraw
import tensorflow as tf

from st_tf.data import metadata
from st_tf.data import schema

_COLOURS = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
    (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230),
    (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255)],
                    np.uint8)


def colour(class_id: int) -> tuple:
  return tuple(int(c) for c in _COLOURS[int(class_id) % len(_COLOURS)])


def to_rgb(image: np.ndarray) -> np.ndarray:
  """uint8 [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] -> uint8 [H, W, 3].

  Grayscale is replicated and alpha dropped, like the pipeline's
  `tf.io.decode_image(..., channels=3)`, so the tile shows what the teacher
  saw. Records decoded on the host (PIL) keep their own channel count.
  """
  image = np.asarray(image, np.uint8)
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
    raise ValueError(f'gallery: expected an image [H, W] or [H, W, 1|3|4], '
                     f'got shape {image.shape}')
  if image.shape[-1] == 1:
    return np.repeat(image, 3, axis=-1)
  return image[..., :3]


def draw_detections(image: np.ndarray, boxes: np.ndarray, classes: Sequence[int],
                    scores: Sequence[float],
                    names: Optional[Mapping[int, str]] = None) -> Image.Image:
  """Draws pixel yxyx `boxes` with "name:score" captions on an image.

  Args:
    image: uint8 grayscale, RGB or RGBA [H, W, ...] (see `to_rgb`).
    boxes: [N, 4] pixel yxyx boxes of `image`.
    classes: [N] class ids; scores: [N].
    names: {class id: name} (`metadata.py`); ids without one show the id.
  """
  canvas = Image.fromarray(to_rgb(image))
  draw = ImageDraw.Draw(canvas)
  for box, cls, score in zip(np.reshape(boxes, (-1, 4)), classes, scores):
    y0, x0, y1, x1 = (float(v) for v in box)
    draw.rectangle([x0, y0, x1, y1], outline=colour(cls), width=1)
    draw.text((x0 + 1, max(y0 - 10, 0)),
              f'{metadata.display_name(cls, names)}:{score:.2f}',
              fill=colour(cls))
  return canvas


def legend(canvas: Image.Image, class_ids: Sequence[int],
           names: Optional[Mapping[int, str]] = None) -> Image.Image:
  """Writes the names of `class_ids` in their colours, one per line, at
  the top left of `canvas` (in place; returned)."""
  draw = ImageDraw.Draw(canvas)
  for row, cls in enumerate(class_ids):
    text = metadata.display_name(cls, names)
    x0, y0, x1, y1 = draw.textbbox((2, 2 + 11 * row), text)
    draw.rectangle([x0 - 1, y0 - 1, x1 + 1, y1 + 1], fill=(0, 0, 0))
    draw.text((2, 2 + 11 * row), text, fill=colour(cls))
  return canvas


def draw_segmentation(image: np.ndarray, label: np.ndarray,
                      alpha: float = 0.5,
                      names: Optional[Mapping[int, str]] = None
                      ) -> Image.Image:
  """Blends class colours over an image; ignore (255) drawn grey.

  `image`: uint8 grayscale, RGB or RGBA [H, W, ...] (see `to_rgb`);
  `label`: [H, W] (or [H, W, 1]) class map of the same size. With `names`
  ({class id: name}), the classes present (but background 0 and ignore)
  are named in a legend.
  """
  image = to_rgb(image).astype(np.float32)
  label = np.asarray(label)
  if label.ndim == 3 and label.shape[-1] == 1:
    label = label[..., 0]
  if label.shape != image.shape[:2]:
    raise ValueError(f'gallery: label map {label.shape} and image '
                     f'{image.shape[:2]} differ in size')
  colours = _COLOURS[label % len(_COLOURS)].astype(np.float32)
  colours[label == schema.IGNORE_LABEL] = 128
  mix = np.where((label > 0)[..., None], alpha, 0.0)
  mix = np.where((label == schema.IGNORE_LABEL)[..., None], 0.3, mix)
  canvas = Image.fromarray(np.clip(image * (1 - mix) + colours * mix, 0,
                                   255).astype(np.uint8))
  if names:
    present = [int(c) for c in np.unique(label)
               if 0 < c != schema.IGNORE_LABEL]
    legend(canvas, present, names)
  return canvas


def save_gallery(path: str, tiles: Sequence[Image.Image], columns: int = 4,
                 tile_size: Optional[int] = 192) -> str:
  """Saves `tiles` as one PNG grid at `path` (any tf.io.gfile path)."""
  if not tiles:
    raise ValueError('no images to put in the gallery')
  if tile_size:
    tiles = [t.resize((tile_size, int(round(tile_size * t.height / t.width))))
             for t in tiles]
  width = max(t.width for t in tiles)
  height = max(t.height for t in tiles)
  columns = min(columns, len(tiles))
  rows = -(-len(tiles) // columns)
  grid = Image.new('RGB', (columns * width, rows * height), (255, 255, 255))
  for i, tile in enumerate(tiles):
    grid.paste(tile, ((i % columns) * width, (i // columns) * height))
  buffer = io.BytesIO()
  grid.save(buffer, format='PNG')
  with tf.io.gfile.GFile(path, 'wb') as f:
    f.write(buffer.getvalue())
  return path
