"""Gallery tiles of grayscale, RGB and RGBA images; class names drawn."""
import numpy as np
from PIL import ImageDraw
import pytest

from st_tf.pseudo_label import gallery


@pytest.mark.parametrize('shape', [(20, 30), (20, 30, 1), (20, 30, 3),
                                   (20, 30, 4)])
def test_tiles_of_any_channel_count_are_rgb(shape):
  image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
  label = np.zeros([20, 30], np.uint8)
  label[5:10, 5:10], label[0, :] = 3, 255
  seg = gallery.draw_segmentation(image, label)
  det = gallery.draw_detections(image, np.array([[2., 3., 10., 12.]]), [1],
                                [0.9])
  for tile in (seg, det):
    assert tile.mode == 'RGB' and tile.size == (30, 20)
  # Unlabeled pixels keep the image (gray replicated, alpha dropped).
  rgb = np.asarray(seg)[15, 20]
  want = image[15, 20] if image.ndim == 2 else image[15, 20, :3]
  np.testing.assert_array_equal(rgb, np.broadcast_to(want, [3]))


def test_label_of_another_size_is_refused():
  with pytest.raises(ValueError, match='differ in size'):
    gallery.draw_segmentation(np.zeros([4, 4, 3], np.uint8),
                              np.zeros([4, 5], np.uint8))


@pytest.fixture
def drawn_text(monkeypatch):
  """Captures every caption the gallery writes."""
  texts = []
  original = ImageDraw.ImageDraw.text

  def text(self, xy, value, *args, **kwargs):
    texts.append(value)
    return original(self, xy, value, *args, **kwargs)

  monkeypatch.setattr(ImageDraw.ImageDraw, 'text', text)
  return texts


def test_captions_and_legend_use_category_names(drawn_text):
  image = np.zeros([40, 60, 3], np.uint8)
  names = {1: 'person', 7: 'car'}
  gallery.draw_detections(image, np.array([[2., 3., 10., 12.]] * 2), [7, 4],
                          [0.9, 0.6], names)
  assert drawn_text == ['car:0.90', '4:0.60']  # No name: the bare id.
  del drawn_text[:]
  gallery.draw_detections(image, np.array([[2., 3., 10., 12.]]), [7], [0.5])
  assert drawn_text == ['7:0.50']
  del drawn_text[:]
  label = np.zeros([40, 60], np.uint8)
  label[5:10, 5:10], label[20:, :], label[0, :] = 1, 7, 255
  gallery.draw_segmentation(image, label, names=names)
  assert drawn_text == ['person', 'car']
  del drawn_text[:]
  gallery.draw_segmentation(image, label)
  assert drawn_text == []
