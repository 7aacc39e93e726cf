"""Gallery tiles of grayscale, RGB and RGBA images."""
import numpy as np
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
