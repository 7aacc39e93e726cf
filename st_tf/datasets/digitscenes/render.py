"""Drawing DigitScenes: handwritten digits on textured backgrounds (numpy only).

The scene maker behind `scenes` (which writes the splits), and the
single-digit crop maker behind `classification` (same backgrounds, colours,
scales and noise; one centred digit). Digits are scikit-learn's
`load_digits` (1797 8x8 grey images); see `scenes` for how they are split
into disjoint pools.
Images are uint8 [size, size, 3]; boxes float32 [N, 4] normalized yxyx,
the tight extent of each digit's stroke pixels; classes digit + 1 (1..10);
masks uint8 [size, size] with stroke pixels = class id, background 0.
"""
from __future__ import annotations

import functools
from typing import Dict, NamedTuple, Tuple

import numpy as np
from PIL import Image

VAL_POOL_FRACTION = 0.25
IMAGE_SIZE = 128
CROP_SIZE = 64  # holds the largest rendered digit (60 x 62 px)
_STROKE_THRESHOLD = 0.5   # upscaled intensity (in [0, 1]) above = stroke
_MAX_IOU = 0.3
_DIGIT_HEIGHT = (14, 48)  # nominal digit height in pixels
_PLACEMENT_TRIES = 30


class DigitPool(NamedTuple):
  """Source digits: ``images`` float32 [M, 8, 8] in [0, 1], ``labels`` int64
  [M] digits 0..9, ``indices`` int64 [M] positions in `load_digits`."""
  images: np.ndarray
  labels: np.ndarray
  indices: np.ndarray


NUM_SOURCE_DIGITS = 1797  # len(sklearn.datasets.load_digits().target)


@functools.lru_cache(maxsize=None)
def _all_digits() -> DigitPool:
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  labels = digits.target.astype(np.int64)
  return DigitPool(digits.images.astype(np.float32) / 16.0, labels,
                   np.arange(len(labels), dtype=np.int64))


@functools.lru_cache(maxsize=None)
def pool_block(start: int, end: int) -> DigitPool:
  """The source digits with `load_digits` indices in [start, end)."""
  if not 0 <= start < end <= NUM_SOURCE_DIGITS:
    raise ValueError(f'digit pool block [{start}, {end}) must lie in '
                     f'[0, {NUM_SOURCE_DIGITS}) and be non-empty')
  digits = _all_digits()
  return DigitPool(digits.images[start:end], digits.labels[start:end],
                   digits.indices[start:end])


def digit_pools() -> Dict[str, DigitPool]:
  """Layout v1's pools: {'train': labeled + unlabeled, 'val': val}."""
  cut = int(round(NUM_SOURCE_DIGITS * (1.0 - VAL_POOL_FRACTION)))
  return {'train': pool_block(0, cut),
          'val': pool_block(cut, NUM_SOURCE_DIGITS)}


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


def _digit_size(rng: np.random.Generator) -> Tuple[int, int]:
  """Random nominal (height, width) of a digit in pixels (14-48 px tall)."""
  height = int(rng.integers(_DIGIT_HEIGHT[0], _DIGIT_HEIGHT[1] + 1))
  width = max(8, int(round(height * rng.uniform(0.7, 1.05))))
  return height, width


def _paint_digit(rng: np.random.Generator, image: np.ndarray,
                 value: np.ndarray, y: int, x: int) -> None:
  """Paints digit intensities `value` [h, w] (from `_render_digit`) with its
  top-left corner at pixel (y, x) of `image`, in a colour contrasting with
  the background under it; in place."""
  ph, pw = value.shape
  region = image[y:y + ph, x:x + pw]
  colour = _pick_colour(rng, region).astype(np.float32)
  alpha = np.clip((value - 0.3) / 0.4, 0, 1)[..., None]  # 0.5 at threshold
  region += (colour - region) * alpha


def _add_noise(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
  """Adds uniform pixel noise (std 0-8) to a float image; returns uint8."""
  sigma = np.float32(rng.uniform(0, 8) * np.sqrt(3))
  image += sigma * (2 * rng.random(image.shape, np.float32) - 1)
  return np.clip(np.rint(image), 0, 255).astype(np.uint8)


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
    value = _render_digit(digit_pool.images[k], *_digit_size(rng))
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
    _paint_digit(rng, image, value, y, x)
    class_id = int(digit_pool.labels[k]) + 1
    mask[y:y + ph, x:x + pw][stroke] = class_id
    boxes.append(box)
    classes.append(class_id)
  image = _add_noise(rng, image)
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4) / np.float32(size)
  return image, boxes, np.asarray(classes, np.int64), mask


def make_digit_crop(rng: np.random.Generator, digit_pool: DigitPool,
                    size: int = CROP_SIZE, max_jitter: int = 4
                    ) -> Tuple[np.ndarray, int, int]:
  """Draws one digit, as `make_scene` draws each of its digits, centred.

  Background, optional clutter strokes, digit scale (14-48 px tall), colour
  and pixel noise all come from the scene helpers; the digit's rendered
  patch is centred, shifted by up to `max_jitter` px per axis (and kept
  inside the image).

  Args:
    rng: numpy random generator (the only source of randomness).
    digit_pool: source digits to draw from.
    size: image height and width in pixels (>= 64: the largest rendered
      digit is 60 x 62 px).
    max_jitter: maximum shift of the digit from the centre, in pixels.

  Returns:
    image: uint8 [size, size, 3] RGB.
    label: the digit, 0..9.
    digit_index: position of the source digit in `load_digits`.
  """
  if size < CROP_SIZE:
    raise ValueError(f'digit crop size must be >= {CROP_SIZE}, got {size}')
  if max_jitter < 0:
    raise ValueError(f'max_jitter must be >= 0, got {max_jitter}')
  image = _background(rng, size)
  if rng.random() < 0.5:
    _clutter(rng, image)
  k = int(rng.integers(len(digit_pool.labels)))
  value = _render_digit(digit_pool.images[k], *_digit_size(rng))
  ph, pw = value.shape
  dy, dx = rng.integers(-max_jitter, max_jitter + 1, 2)
  y = int(np.clip((size - ph) // 2 + dy, 0, size - ph))
  x = int(np.clip((size - pw) // 2 + dx, 0, size - pw))
  _paint_digit(rng, image, value, y, x)
  return (_add_noise(rng, image), int(digit_pool.labels[k]),
          int(digit_pool.indices[k]))
