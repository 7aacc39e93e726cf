"""st_tf.ops.image_info against Model Garden's own resize."""
import numpy as np
import tensorflow as tf
from official.vision.ops import preprocess_ops

from st_tf.ops import image_info


def test_boxes_round_trip_through_model_garden_resize():
  image = tf.zeros([60, 100, 3])
  _, info = preprocess_ops.resize_and_crop_image(
      image, [128, 128], [128, 128], aug_scale_min=1.0, aug_scale_max=1.0)
  original = tf.constant([[[10., 20., 50., 90.]]])
  scaled = preprocess_ops.resize_and_crop_boxes(
      original[0], info[2, :], [128, 128], info[3, :])[None]
  back = image_info.boxes_to_original(scaled, info[None])
  np.testing.assert_allclose(back.numpy(), original.numpy(), atol=1e-3)


def test_clip_to_original_image():
  info = tf.constant([[[60., 100.], [128., 128.], [1.28, 1.28], [0., 0.]]])
  boxes = tf.constant([[[-10., -10., 200., 200.]]])
  clipped = image_info.boxes_to_original(boxes, info)
  np.testing.assert_allclose(clipped.numpy(), [[[0., 0., 60., 100.]]],
                             atol=1e-5)
  unclipped = image_info.boxes_to_original(boxes, info, clip=False)
  assert float(unclipped[0, 0, 2]) > 60.
