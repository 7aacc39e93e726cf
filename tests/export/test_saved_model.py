"""SavedModel export: reload in a fresh process and match the Keras model."""
import os
import subprocess
import sys
import textwrap

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.vision.ops import preprocess_ops

from st_tf.data import schema
from st_tf.export import saved_model
from tests.evaluation import tiny_models

_SIZE = 64
# Runs with nothing but TensorFlow imported: the SavedModel must stand alone.
_LOAD_SCRIPT = textwrap.dedent('''
    import sys
    import numpy as np
    import tensorflow as tf
    work = sys.argv[1]
    images = tf.constant(np.load(work + '/images.npy'))
    encoded = tf.stack([tf.io.read_file(f'{work}/encoded_{i}.png')
                        for i in range(2)])
    for task in ('detection', 'segmentation'):
      loaded = tf.saved_model.load(work + '/' + task)
      for name, arg in (('serving_default', {'images': images}),
                        ('serve_encoded', {'encoded': encoded})):
        out = loaded.signatures[name](**arg)
        np.savez(f'{work}/{task}_{name}.npz',
                 **{k: v.numpy().astype(str) if v.dtype == tf.string
                    else v.numpy() for k, v in out.items()})
''')


def _run_fresh_process(work):
  env = dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run([sys.executable, '-c', _LOAD_SCRIPT, work],
                        capture_output=True, text=True, env=env, timeout=300,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]


def _preprocess(image):
  resized, info = preprocess_ops.resize_and_crop_image(
      image, [_SIZE, _SIZE], padded_size=[_SIZE, _SIZE])
  return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8), info


def _check_detection(model, images, originals, work):
  out = dict(np.load(f'{work}/detection_serving_default.npz'))
  ref = model(images, training=False)
  np.testing.assert_allclose(out['detection_boxes'],
                             ref['detection_boxes'], atol=1e-3)
  np.testing.assert_allclose(out['detection_boxes_normalized'],
                             ref['detection_boxes'].numpy() / _SIZE,
                             atol=1e-5)
  np.testing.assert_allclose(out['detection_scores'], ref['detection_scores'],
                             atol=1e-5)
  np.testing.assert_array_equal(out['detection_classes'],
                                ref['detection_classes'])
  np.testing.assert_array_equal(out['num_detections'], ref['num_detections'])
  # Exported without class names: the ids as text.
  np.testing.assert_array_equal(out['detection_class_names'],
                                ref['detection_classes'].numpy().astype(str))

  enc = dict(np.load(f'{work}/detection_serve_encoded.npz'))
  for i, image in enumerate(originals):
    h, w = image.shape[:2]
    resized, info = _preprocess(image)
    np.testing.assert_allclose(enc['image_info'][i], info, rtol=1e-6)
    ref = model(resized[None], training=False)
    scale = np.tile(info[2].numpy(), 2)
    expected = np.clip(ref['detection_boxes'][0].numpy() / scale, 0,
                       [h, w, h, w])
    np.testing.assert_allclose(enc['detection_boxes'][i], expected, atol=1e-2)
    np.testing.assert_allclose(enc['detection_boxes_normalized'][i],
                               expected / [h, w, h, w], atol=1e-4)
    np.testing.assert_array_equal(enc['detection_classes'][i],
                                  ref['detection_classes'][0])


def _segmentation_reference(model, images):
  logits = tf.image.resize(model(images, training=False)['logits'],
                           [_SIZE, _SIZE])
  return (np.argmax(logits, -1),
          tf.reduce_max(tf.nn.softmax(logits), -1).numpy())


def _check_segmentation(model, images, originals, work):
  out = dict(np.load(f'{work}/segmentation_serving_default.npz'))
  class_map, confidence = _segmentation_reference(model, images)
  assert out['class_map'].shape == (len(images), _SIZE, _SIZE)
  assert out['class_map'].dtype == np.int32
  np.testing.assert_array_equal(out['class_map'], class_map)
  np.testing.assert_allclose(out['confidence'], confidence, atol=1e-5)
  assert len(np.unique(class_map)) > 1  # a non-degenerate comparison

  enc = dict(np.load(f'{work}/segmentation_serve_encoded.npz'))
  resized = tf.stack([_preprocess(image)[0] for image in originals])
  class_map, confidence = _segmentation_reference(model, resized)
  np.testing.assert_array_equal(enc['class_map'], class_map)
  np.testing.assert_allclose(enc['confidence'], confidence, atol=1e-5)
  np.testing.assert_allclose(enc['image_info'][1],
                             [[16, 32], [64, 64], [2, 2], [0, 0]])


@pytest.fixture(scope='module')
def models():
  """(detector, segmenter), built once for the module's tests.

  Seeded weights: an unlucky random init maps every pixel to one class,
  and the class-map comparison would then prove nothing. The detector
  uses batched NMS (as the shipped retinanet templates): it traces, saves
  and loads seconds faster than Model Garden's default 'v2'.
  """
  tf_keras.utils.set_random_seed(1)
  detector = tiny_models.tiny_retinanet(num_classes=4, size=_SIZE,
                                        nms_version='batched')
  segmenter = tiny_models.tiny_segmentation(num_classes=3, size=_SIZE)
  return detector, segmenter


def test_exported_models_match_keras_in_fresh_process(tmp_path, models):
  work = str(tmp_path)
  rng = np.random.RandomState(0)
  images = rng.randint(0, 255, [2, _SIZE, _SIZE, 3]).astype(np.uint8)
  # Encoded inputs of other sizes: downscaled 2x, and upscaled/padded.
  originals = [rng.randint(0, 255, [96, 128, 3]).astype(np.uint8),
               rng.randint(0, 255, [16, 32, 3]).astype(np.uint8)]
  np.save(f'{work}/images.npy', images)
  for i, image in enumerate(originals):
    with open(f'{work}/encoded_{i}.png', 'wb') as f:
      f.write(schema.encode_image(image, 'png'))
  detector, segmenter = models
  saved_model.export_saved_model(detector, f'{work}/detection',
                                 input_size=[_SIZE, _SIZE], task='detection')
  saved_model.export_saved_model(segmenter, f'{work}/segmentation',
                                 input_size=[_SIZE, _SIZE],
                                 task='segmentation')
  assert not os.path.exists(f'{work}/detection.tmp')
  _run_fresh_process(work)
  _check_detection(detector, images, originals, work)
  _check_segmentation(segmenter, images, originals, work)


def test_export_entry_restores_latest_checkpoint(tmp_path, models):
  model_dir = str(tmp_path / 'model')
  trained = models[1]  # Restored into a fresh model below.
  ckpt = tf.train.Checkpoint(model=trained, optimizer=tf_keras.optimizers.SGD(),
                             step=tf.Variable(5, dtype=tf.int64))
  tf.train.CheckpointManager(ckpt, model_dir, max_to_keep=1).save()
  gin.parse_config([f'export.input_size = [{_SIZE}, {_SIZE}]',
                    "export.task = 'segmentation'"])
  path = saved_model.export(
      model_dir=model_dir,
      model=lambda: tiny_models.tiny_segmentation(num_classes=3, size=_SIZE))
  assert path == os.path.join(model_dir, 'export', '5')
  loaded = tf.saved_model.load(path)
  images = np.random.RandomState(2).randint(
      0, 255, [1, _SIZE, _SIZE, 3]).astype(np.uint8)
  out = loaded.signatures['serving_default'](images=tf.constant(images))
  class_map, confidence = _segmentation_reference(trained, images)
  np.testing.assert_array_equal(out['class_map'], class_map)
  np.testing.assert_allclose(out['confidence'], confidence, atol=1e-5)


def test_unknown_task_and_missing_checkpoint(tmp_path, models):
  model = models[1]
  with pytest.raises(ValueError, match='unknown task'):
    saved_model.export_saved_model(model, str(tmp_path / 'x'),
                                   input_size=[_SIZE, _SIZE], task='depth')
  with pytest.raises(FileNotFoundError, match='No checkpoint'):
    saved_model.export(model_dir=str(tmp_path), model=model,
                       input_size=[_SIZE, _SIZE], task='segmentation')


def test_export_half_copied_is_not_complete(tmp_path, models):
  model = models[1]
  path = saved_model.export_saved_model(
      model, str(tmp_path / 'export' / '1'), input_size=[_SIZE, _SIZE],
      task='segmentation')
  assert saved_model.is_complete(path)
  # An object-by-object rename (GCS) stopped half way: the graph is there,
  # a variables shard is not yet (or is short).
  shard = [n for n in os.listdir(os.path.join(path, 'variables'))
           if n.startswith('variables.data')][0]
  shard = os.path.join(path, 'variables', shard)
  with open(shard, 'rb') as f:
    data = f.read()
  with open(shard, 'wb') as f:
    f.write(data[:len(data) // 2])
  assert os.path.exists(os.path.join(path, 'saved_model.pb'))
  assert not saved_model.is_complete(path)
  os.remove(shard)
  assert not saved_model.is_complete(path)
