"""Two-view parser: the strong view is the weak view's pixels, recoloured."""
import numpy as np
import tensorflow as tf
from official.vision.ops import augment as mg_augment

from st_tf.data import augment
from st_tf.data import views

# Pixel-value ops that keep two grey levels apart (no geometry, no cutout).
_KEEP = {'AutoContrast', 'Invert', 'Posterize', 'Color', 'Contrast',
         'Brightness'}
_ALL = {'AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize',
        'Solarize', 'Color', 'Contrast', 'Brightness', 'Sharpness', 'ShearX',
        'ShearY', 'TranslateX', 'TranslateY', 'Cutout', 'SolarizeAdd'}
_BOX = (0.25, 0.1, 0.6, 0.5)  # normalized yxyx


def _example():
  image = np.full([96, 80, 3], 60, np.uint8)
  y0, x0, y1, x1 = (int(round(v * s)) for v, s in zip(_BOX, (96, 80, 96, 80)))
  image[y0:y1, x0:x1] = 220
  return {'image': tf.constant(image),
          'groundtruth_boxes': tf.constant([_BOX], tf.float32),
          'groundtruth_classes': tf.constant([3], tf.int64)}


def _parser(strong, cutout_size=0):
  return views.TwoViewParser(
      output_size=(64, 64), weak_policy=augment.flip_crop(0.8, 1.2),
      strong_augmenter=strong, cutout_size=cutout_size, size_multiple=32,
      groundtruth='boxes', max_num_instances=4)


def test_box_of_the_weak_view_is_on_the_same_pixels_of_the_strong_view():
  strong = mg_augment.RandAugment(num_layers=2, magnitude=10,
                                  exclude_ops=sorted(_ALL - _KEEP))
  parser = _parser(strong)
  tf.random.set_seed(3)
  for _ in range(6):
    out = parser(_example())
    weak, stronger = out['weak'].numpy(), out['strong'].numpy()
    assert weak.shape == stronger.shape == (64, 64, 3)
    y0, x0, y1, x1 = np.round(out['groundtruth_boxes'][0].numpy()).astype(int)
    assert out['groundtruth_classes'].numpy().tolist() == [3, 0, 0, 0]
    inside = np.zeros([64, 64], bool)
    inside[y0 + 1:y1 - 1, x0 + 1:x1 - 1] = True
    near = np.zeros([64, 64], bool)
    near[max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1] = True
    outside = out['valid'].numpy()[..., 0] & ~near
    assert inside.sum() > 20 and outside.sum() > 20
    # The box is where the weak view says ...
    assert np.all(weak[inside] > 200) and np.all(weak[outside] < 80)
    # ... and the strong view has one colour there and another outside.
    box_colours = np.unique(stronger[inside].reshape(-1, 3), axis=0)
    rest_colours = np.unique(stronger[outside].reshape(-1, 3), axis=0)
    assert len(box_colours) == 1 and len(rest_colours) == 1
    assert not np.array_equal(box_colours, rest_colours)


def test_default_strong_view_in_tf_data_has_static_shapes():
  parser = _parser(views.strong_color_augmenter(), cutout_size=8)
  data = tf.data.Dataset.from_tensors(_example()).repeat(4).map(
      parser).batch(2, drop_remainder=True)
  batch = next(iter(data))
  assert batch['weak'].shape == batch['strong'].shape == (2, 64, 64, 3)
  assert batch['weak'].dtype == batch['strong'].dtype == tf.uint8
  assert batch['valid'].shape == (2, 64, 64, 1)
  assert batch['image_info'].shape == (2, 4, 2)
  assert not np.array_equal(batch['weak'].numpy(), batch['strong'].numpy())
