"""Class names in the exported SavedModel: attribute, asset and output."""
import os

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from st_tf.data import metadata
from st_tf.export import saved_model
from st_tf.pseudo_label import teacher as teacher_lib
from tests.evaluation import tiny_models

_SIZE = 64


@pytest.fixture(scope='module')
def detector():
  """One tiny RetinaNet for the detection exports (batched NMS: fast)."""
  tf_keras.utils.set_random_seed(0)
  return tiny_models.tiny_retinanet(num_classes=4, size=_SIZE,
                                    nms_version='batched')


def test_detection_export_names_its_classes(tmp_path, detector):
  path = saved_model.export_saved_model(
      detector, str(tmp_path / 'export'), input_size=[_SIZE, _SIZE],
      task='detection', category_names={1: 'cat', 3: 'dog'})
  loaded = tf.saved_model.load(path)
  # Index = class id; a class without a name reads as its id.
  table = [b'0', b'cat', b'2', b'dog']
  assert loaded.category_names.numpy().tolist() == table
  assert saved_model.read_category_names(path) == {1: 'cat', 3: 'dog'}
  assert saved_model.is_complete(path)
  images = tf.constant(np.random.default_rng(0).integers(
      0, 256, [2, _SIZE, _SIZE, 3], dtype=np.uint8))
  out = loaded.signatures['serving_default'](images=images)
  classes = out['detection_classes'].numpy()
  assert classes.size and classes.min() >= 1 and classes.max() <= 3
  np.testing.assert_array_equal(out['detection_class_names'].numpy(),
                                np.array(table, object)[classes])
  encoded = tf.stack([tf.io.encode_png(images[i]) for i in range(2)])
  out = loaded.signatures['serve_encoded'](encoded=encoded)
  assert out['detection_class_names'].dtype == tf.string
  # The pseudo-label teacher built from it knows the names (gallery).
  teacher = teacher_lib.saved_model_teacher(export_dir=path)
  assert teacher.category_names == {1: 'cat', 3: 'dog'}


def test_export_takes_the_names_of_the_labeled_records(tmp_path):
  model_dir = str(tmp_path / 'model')
  trained = tiny_models.tiny_segmentation(num_classes=3, size=_SIZE)
  ckpt = tf.train.Checkpoint(model=trained, step=tf.Variable(2, tf.int64))
  tf.train.CheckpointManager(ckpt, model_dir, max_to_keep=1).save()
  prefix = str(tmp_path / 'data' / 'train')
  os.makedirs(os.path.dirname(prefix))
  shard = prefix + '-00000-of-00001.tfrecord'
  with tf.io.TFRecordWriter(shard) as f:
    f.write(b'a record')  # Only its name matters here.
  metadata.write_metadata(prefix, task='segmentation',
                          category_names=['background', 'road', 'sky'],
                          num_examples=1, files=[shard])
  gin.parse_config([f'export.input_size = [{_SIZE}, {_SIZE}]',
                    "export.task = 'segmentation'",
                    f"category_names.file_pattern = '{prefix}-*'"])
  # The trained model itself as the factory's model (restored again).
  path = saved_model.export(model_dir=model_dir, model=lambda: trained)
  assert saved_model.read_category_names(path) == {
      0: 'background', 1: 'road', 2: 'sky'}
  assert tf.saved_model.load(path).category_names.numpy().tolist() == [
      b'background', b'road', b'sky']


def test_export_without_names_keeps_ids(tmp_path, detector):
  path = saved_model.export_saved_model(
      detector, str(tmp_path / 'export'), input_size=[_SIZE, _SIZE],
      task='detection')
  loaded = tf.saved_model.load(path)
  assert loaded.category_names.numpy().tolist() == []
  assert saved_model.read_category_names(path) == {}
  out = loaded.signatures['serving_default'](
      images=tf.zeros([1, _SIZE, _SIZE, 3], tf.uint8))
  np.testing.assert_array_equal(
      out['detection_class_names'].numpy().astype(str),
      out['detection_classes'].numpy().astype(str))
