"""Export from and to ram:// (no directory rename there, as on GCS)."""
import os

import numpy as np
import tensorflow as tf
import tf_keras

from st_tf.export import saved_model
from st_tf.pseudo_label import teacher as teacher_lib
from tests import ram
from tests.evaluation import tiny_models

_SIZE = 64


def test_export_entry_from_and_to_ram():
  model_dir = ram.folder('model')
  trained = tiny_models.tiny_segmentation(num_classes=3, size=_SIZE)
  ckpt = tf.train.Checkpoint(model=trained, optimizer=tf_keras.optimizers.SGD(),
                             step=tf.Variable(5, dtype=tf.int64))
  tf.train.CheckpointManager(ckpt, model_dir, max_to_keep=1).save()
  path = saved_model.export(
      model_dir=model_dir, input_size=[_SIZE, _SIZE], task='segmentation',
      model=lambda: tiny_models.tiny_segmentation(num_classes=3, size=_SIZE))
  assert path == f'{model_dir}/export/5'
  assert saved_model.is_complete(path)
  images = np.zeros([1, _SIZE, _SIZE, 3], np.uint8)
  out = teacher_lib.saved_model_teacher(export_dir=path).segment(
      tf.constant(images), flip=False)
  assert out.shape == (1, _SIZE, _SIZE, 2)
  # Exporting again replaces it in place, whole.
  assert saved_model.is_complete(saved_model.export(
      model_dir=model_dir, input_size=[_SIZE, _SIZE], task='segmentation',
      model=lambda: tiny_models.tiny_segmentation(num_classes=3, size=_SIZE)))


def test_file_list_on_ram_has_no_phantom_of_assets_extra():
  # ram:// lists 'assets' with a phantom '.extra' child (from 'assets.extra'),
  # which made every export with class names fail there.
  folder = ram.folder('export_files')
  for path, text in (('assets.extra/category_names.json', '{}'),
                     ('assets/vocab.txt', 'ab'), ('saved_model.pb', 'xyz')):
    tf.io.gfile.makedirs(os.path.dirname(f'{folder}/{path}'))
    with tf.io.gfile.GFile(f'{folder}/{path}', 'w') as f:
      f.write(text)
  assert saved_model._files(folder) == {  # pylint: disable=protected-access
      'assets.extra/category_names.json': 2, 'assets/vocab.txt': 2,
      'saved_model.pb': 3}
