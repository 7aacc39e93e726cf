"""Segmentation pseudo masks land on the right pixels of any image shape."""
import numpy as np
import tensorflow as tf

from st_tf.data import schema
from st_tf.pseudo_label import runner
from st_tf.pseudo_label import segmentation
from st_tf.pseudo_label import writer
from tests.pseudo_label import pixel_teacher
from tests.pseudo_label import tiny

THRESHOLD = 0.75


def _masks(out: str) -> dict:
  masks = {}
  for example in tiny.read_records(writer.file_pattern(out)):
    f = example.features.feature
    masks[f[schema.IMAGE_SOURCE_ID].bytes_list.value[0].decode()] = (
        schema.image_bytes_to_array(
            f[schema.SEGMENTATION_MASK].bytes_list.value[0]))
  return masks


def _expected(image: np.ndarray) -> np.ndarray:
  """The teacher's label map of the image alone (no resize, no padding)."""
  # As tf.io.decode_image(channels=3): gray replicated, alpha dropped.
  rgb = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else (
      image[..., :3])
  maps = pixel_teacher.predict(tf.convert_to_tensor(rgb)[None])[0].numpy()
  return segmentation.label_map(maps[..., 0], maps[..., 1].astype(int),
                                THRESHOLD)


def _label(out, path, input_size, **kwargs):
  return runner.pseudo_label(
      output_dir=out, input_pattern=path,
      teacher=pixel_teacher.PixelTeacher(input_size),
      num_classes=pixel_teacher.NUM_CLASSES, pixel_threshold=THRESHOLD,
      batch_size=2, quality=False, **kwargs)


def test_mask_of_non_square_image_equals_the_unpadded_prediction(tmp_path):
  # 96x160 into a 160x160 teacher: scale 1, 64 rows of padding below.
  images = [pixel_teacher.random_image(96, 160, seed=s) for s in range(3)]
  path = str(tmp_path / 'wide.tfrecord')
  ids = pixel_teacher.write_records(path, images)
  out = str(tmp_path / 'out')
  _label(out, path, (160, 160), gallery_size=0)
  masks = _masks(out)
  assert sorted(masks) == sorted(ids)
  for source_id, image in zip(ids, images):
    assert masks[source_id].shape == (96, 160)
    np.testing.assert_array_equal(masks[source_id], _expected(image))


def test_to_original_crops_the_scaled_image_not_the_padded_frame():
  # Model Garden image_info: [original, desired (padded) size, scale, 0].
  # A 2x3 image scaled x2 (4x6) into an 8x8 padded frame.
  info = np.array([[2, 3], [8, 8], [2, 2], [0, 0]], np.float32)
  values = np.full([8, 8, 2], -1.0, np.float32)  # Padding.
  values[:4, :6] = np.arange(24, dtype=np.float32).reshape(4, 6, 1)
  got = segmentation.to_original(values, info)
  assert got.shape == (2, 3, 2)
  assert not np.any(got < 0)  # No padding pixel in the result.
  np.testing.assert_array_equal(got[..., 1:], tf.image.resize(
      values[:4, :6, 1:], [2, 3], method='nearest').numpy())


def test_grayscale_and_rgba_images_are_labeled_and_drawn(tmp_path):
  images = [pixel_teacher.random_image(64, 64, channels=1, seed=1),
            pixel_teacher.random_image(64, 64, channels=4, seed=2),
            pixel_teacher.random_image(64, 64, channels=3, seed=3)]
  path = str(tmp_path / 'mixed.tfrecord')
  ids = pixel_teacher.write_records(path, images)
  out = str(tmp_path / 'out')
  manifest = _label(out, path, (64, 64), gallery_size=3)
  assert manifest['complete'] and manifest['totals']['images_out'] == 3
  masks = _masks(out)
  for source_id, image in zip(ids, images):
    np.testing.assert_array_equal(masks[source_id], _expected(image))
  assert tf.io.gfile.exists(f'{out}/gallery-00000.png')
