"""SavedModel export with uint8 and encoded-image serving signatures.

Signatures (``H, W`` = the export `input_size`):

* ``serving_default(images: uint8 [B, H, W, 3])`` -- the model's own input
  contract; images are used as given (the caller resizes/pads).
* ``serve_encoded(encoded: string [B])`` -- JPEG/PNG/BMP/GIF bytes. Each image
  is decoded to RGB and resized **keeping its aspect ratio** so that it fits
  in ``H x W`` (the scale is ``min(H/h, W/w)``, up or down), then zero-padded
  at the bottom/right to ``H x W``: exactly Model Garden's eval
  `resize_and_crop_image`. `image_info` ``[B, 4, 2]`` =
  ``[[h, w], [H, W], [scale_y, scale_x], [0, 0]]`` is returned (Model
  Garden's layout; row 1 is the desired size, the image itself covers
  ``[:round(h * scale_y), :round(w * scale_x)]``).

Detection outputs: `detection_boxes` float ``[B, K, 4]`` pixel yxyx,
`detection_boxes_normalized` (the same boxes divided by the image size, in
[0, 1]), `detection_classes` int32 ``[B, K]`` (ids >= 1), `detection_scores`
float ``[B, K]``, `num_detections` int32 ``[B]``; rows ``k >= num_detections``
are padding. For `serving_default` boxes are in the ``H x W`` input frame;
for `serve_encoded` they are mapped back to each **original** image (pixels
and normalized by the original size).

Detection signatures also output `detection_class_names` string ``[B, K]``:
each box's class name, or its id as text when the class has no name.

Segmentation outputs: `class_map` int32 ``[B, H, W]`` (argmax of the logits
bilinearly upsampled to the input size) and `confidence` float ``[B, H, W]``
(the max softmax probability). For `serve_encoded` they are in the padded
``H x W`` frame; crop the image region (see above) and resize it to
``h x w`` to get original-resolution maps.

Class names (`category_names`, from the training records' metadata,
`st_tf/data/metadata.py`) travel with the model twice: the attribute
``loaded.category_names`` (string ``[N]``, index = class id, the id as text
where a class has no name) and ``assets.extra/category_names.json``
(``{"id": "name"}``, `read_category_names`).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence

from absl import logging
import gin
import tensorflow as tf
import tf_keras
from official.vision.ops import preprocess_ops

from st_tf import atomic_io
from st_tf.ops import image_info as image_info_ops
from st_tf import tasks
from st_tf.data import metadata
from st_tf.training import checkpoints

# Written last into an export: {relative path: bytes} of every file in it.
FILE_LIST = 'st_tf_export_files.json'
DETECTION_KEYS = ('detection_boxes', 'detection_scores', 'detection_classes',
                  'num_detections')
CATEGORY_NAMES_FILE = os.path.join('assets.extra', 'category_names.json')


class _ServingModule(tf.Module):
  """Holds the model variables; subclasses define `serve`, `from_encoded`."""

  def __init__(self, model: tf_keras.Model, input_size: Sequence[int],
               category_names: Optional[Dict[int, str]] = None):
    super().__init__()
    if len(input_size) != 2 or min(input_size) <= 0:
      raise ValueError(f'input_size must be [height, width], got {input_size}')
    # Only the variables are tracked (saved); the Keras model itself is kept
    # out of the object graph, so saving does not trace every Keras layer.
    self._call_model = model.__call__
    self.model_variables = list(model.variables)
    self.input_size = [int(s) for s in input_size]
    names = dict(category_names or {})
    self._table = [metadata.display_name(i, names)
                   for i in range(max(names, default=-1) + 1)]
    self.category_names = tf.Variable(tf.constant(self._table, tf.string,
                                                  shape=[len(self._table)]),
                                      trainable=False, name='category_names')

  def class_names(self, classes: tf.Tensor) -> tf.Tensor:
    """int [...] class ids -> string [...] names (ids without one: the id)."""
    as_text = tf.strings.as_string(classes)
    if not self._table:
      return as_text
    table = tf.constant(self._table, tf.string)
    inside = (classes >= 0) & (classes < len(self._table))
    return tf.where(inside, tf.gather(table, tf.clip_by_value(
        classes, 0, len(self._table) - 1)), as_text)

  def _outputs(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    outputs = self._call_model(images, training=False)
    if not isinstance(outputs, dict):
      raise ValueError(f'model must return a dict, got {type(outputs)}')
    return outputs

  def _decode_and_resize(self, encoded: tf.Tensor):
    """string [B] -> (uint8 [B, H, W, 3], image_info float [B, 4, 2])."""
    height, width = self.input_size

    def one(data):
      image = tf.io.decode_image(data, channels=3, expand_animations=False)
      image.set_shape([None, None, 3])
      image, info = preprocess_ops.resize_and_crop_image(
          image, self.input_size, padded_size=self.input_size)
      image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
      return tf.ensure_shape(image, [height, width, 3]), info

    return tf.map_fn(
        one, encoded,
        fn_output_signature=(tf.TensorSpec([height, width, 3], tf.uint8),
                             tf.TensorSpec([4, 2], tf.float32)))

  def serve(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """uint8 [B, H, W, 3] -> outputs in the input frame."""
    raise NotImplementedError

  def from_encoded(self, outputs: Dict[str, tf.Tensor],
                   image_info: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Adapts `serve` outputs of resized encoded images (+ image_info)."""
    raise NotImplementedError

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    """{'serving_default': uint8 images fn, 'serve_encoded': bytes fn}."""
    height, width = self.input_size
    serve = tf.function(self.serve).get_concrete_function(
        tf.TensorSpec([None, height, width, 3], tf.uint8, name='images'))

    def serve_encoded(encoded):
      images, image_info = self._decode_and_resize(encoded)
      # Calls the traced `serve` graph: the model is traced only once.
      return self.from_encoded(serve(images), image_info)

    encoded_fn = tf.function(serve_encoded).get_concrete_function(
        tf.TensorSpec([None], tf.string, name='encoded'))
    return {'serving_default': serve, 'serve_encoded': encoded_fn}


class DetectionServingModule(_ServingModule):
  """Serving functions for a detection (RetinaNet) model."""

  def serve(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """uint8 [B, H, W, 3] -> detections in the input frame."""
    outputs = self._outputs(images)
    missing = [k for k in DETECTION_KEYS if k not in outputs]
    if missing:
      raise ValueError(f'detection model outputs lack {missing}; got '
                       f'{sorted(outputs)}')
    height, width = self.input_size
    boxes = tf.cast(outputs['detection_boxes'], tf.float32)
    classes = tf.cast(outputs['detection_classes'], tf.int32)
    return {
        'detection_boxes': boxes,
        'detection_boxes_normalized': boxes / tf.constant(
            [height, width, height, width], tf.float32),
        'detection_scores': tf.cast(outputs['detection_scores'], tf.float32),
        'detection_classes': classes,
        'detection_class_names': self.class_names(classes),
        'num_detections': tf.cast(outputs['num_detections'], tf.int32),
    }

  def from_encoded(self, outputs, image_info):
    """Maps boxes back to each original image (pixels and normalized)."""
    out = dict(outputs)
    original_size = tf.tile(image_info[:, 0:1, :], [1, 1, 2])  # [B, 1, 4]
    boxes = image_info_ops.boxes_to_original(out['detection_boxes'],
                                             image_info)
    out['detection_boxes'] = boxes
    out['detection_boxes_normalized'] = boxes / original_size
    out['image_info'] = image_info
    return out


class SegmentationServingModule(_ServingModule):
  """Serving functions for a semantic segmentation model."""

  def serve(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """uint8 [B, H, W, 3] -> class_map int32 [B, H, W], confidence [B, H, W]."""
    outputs = self._outputs(images)
    if 'logits' not in outputs:
      raise ValueError(f'segmentation model outputs lack `logits`; got '
                       f'{sorted(outputs)}')
    logits = tf.image.resize(tf.cast(outputs['logits'], tf.float32),
                             self.input_size, method='bilinear')
    probs = tf.nn.softmax(logits, axis=-1)
    return {'class_map': tf.argmax(logits, axis=-1, output_type=tf.int32),
            'confidence': tf.reduce_max(probs, axis=-1)}

  def from_encoded(self, outputs, image_info):
    """Keeps the padded-frame maps; adds image_info."""
    return dict(outputs, image_info=image_info)


def export_saved_model(model: tf_keras.Model, export_dir: str, *,
                       input_size: Sequence[int], task: str,
                       category_names: Optional[Dict[int, str]] = None
                       ) -> str:
  """Writes `model` as a SavedModel with the signatures described above.

  Args:
    model: uint8-input model (`SelfTrainingModel` or alike), weights loaded.
    export_dir: destination directory (replaced if it exists). Local: written
      to `<export_dir>.tmp` first, its files fsynced and listed in
      `FILE_LIST`, then renamed. URLs (gs://, ram://): written in place,
      `FILE_LIST` last. `is_complete` checks the list, so a partial export
      (or one copied object by object) is never taken for a whole one.
    input_size: [H, W] of the serving input.
    task: an `st_tf.tasks` name ('detection' or 'segmentation'): its
      `Task.serving_module` serves the model.
    category_names: {class id: name} (see the module docstring); None or
      {}: ids only.

  Returns:
    `export_dir`.
  """
  serving_module = tasks.get(task).serving_module()  # ValueError if unknown.
  names = metadata.normalize_names(category_names, 'export category_names')
  module = serving_module(model, input_size, names)
  signatures = module.signatures()
  # Object stores (URLs) have no atomic directory rename (GCS copies object
  # by object; ram:// has none): write in place, the file list last.
  local = atomic_io.is_local(export_dir)
  tmp_dir = export_dir.rstrip('/') + '.tmp' if local else export_dir
  for path in {tmp_dir, export_dir}:
    if tf.io.gfile.exists(path):
      logging.warning('Replacing existing %s', path)
      tf.io.gfile.rmtree(path)
  tf.io.gfile.makedirs(os.path.dirname(tmp_dir.rstrip('/')) or '.')
  tf.saved_model.save(module, tmp_dir, signatures=signatures)
  if names:
    tf.io.gfile.makedirs(os.path.dirname(os.path.join(tmp_dir,
                                                      CATEGORY_NAMES_FILE)))
    atomic_io.write_json(os.path.join(tmp_dir, CATEGORY_NAMES_FILE),
                         {str(k): v for k, v in sorted(names.items())},
                         indent=1)
  _write_file_list(tmp_dir)
  if local:
    atomic_io.rename_dir(tmp_dir, export_dir)
  logging.info('Exported %s SavedModel to %s', task, export_dir)
  return export_dir


def _files(directory: str) -> Dict[str, int]:
  """{path relative to `directory`: size in bytes} of its files."""
  out = {}
  for root, _, names in tf.io.gfile.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      try:
        size = tf.io.gfile.stat(path).length
      except tf.errors.NotFoundError:
        # TF's ram:// filesystem lists by name prefix: 'assets' shows a
        # phantom '.extra' (the rest of 'assets.extra'). No such file.
        continue
      out[os.path.relpath(path, directory)] = size
  return out


def _write_file_list(directory: str) -> None:
  """Makes the files durable (local) and lists them in `FILE_LIST`."""
  files = _files(directory)
  for name in files:
    atomic_io.sync(os.path.join(directory, name))
  atomic_io.write_json(os.path.join(directory, FILE_LIST), files, indent=1,
                       sort_keys=True)


def read_category_names(export_dir: str) -> Dict[int, str]:
  """{class id: name} saved with an export ({} when it has none)."""
  path = os.path.join(export_dir, CATEGORY_NAMES_FILE)
  if not tf.io.gfile.exists(path):
    return {}
  return metadata.normalize_names(
      atomic_io.read_json(path, fix='re-export the model'), path)


def is_complete(export_dir: str) -> bool:
  """Whether `export_dir` holds a whole export of `export_saved_model`.

  Its `FILE_LIST` must be there and every file it lists present with its
  size: on object stores (GCS) the directory rename copies object by object,
  so `saved_model.pb` alone can be there while variables are still missing.
  """
  path = os.path.join(export_dir, FILE_LIST)
  if not tf.io.gfile.exists(path):
    return False
  try:
    files = atomic_io.read_json(path)
  except atomic_io.TornFileError as e:
    logging.warning('%s; the export is treated as incomplete.', e)
    return False
  for name, size in files.items():
    full = os.path.join(export_dir, name)
    if not tf.io.gfile.exists(full) or tf.io.gfile.stat(full).length != size:
      return False
  return 'saved_model.pb' in files


@gin.configurable
def export(model_dir: str = gin.REQUIRED,
           model: Any = gin.REQUIRED,
           export_dir: Optional[str] = None,
           *,
           input_size: Sequence[int] = gin.REQUIRED,
           task: str = gin.REQUIRED,
           checkpoint: Optional[str] = None,
           category_names: Optional[Dict[int, str]] = None) -> str:
  """Restores the latest (or given) checkpoint and exports a SavedModel.

  Args:
    model_dir: the trainer's directory.
    model: uint8-input model (or a zero-argument factory returning one).
    export_dir: base directory; None -> `model_dir/export`. The SavedModel is
      written to `<export_dir>/<step>`.
    input_size: [H, W] serving input size.
    task: 'detection' or 'segmentation' (an `st_tf.tasks` name).
    checkpoint: checkpoint prefix or directory; None -> latest in model_dir.
    category_names: {class id: name}; None -> gin `category_names` (the
      labeled records' metadata, `st_tf/data/metadata.py`).

  Returns:
    The SavedModel directory.
  """
  if not isinstance(model, tf_keras.Model) and callable(model):
    model = model()
  if len(input_size) != 2:
    raise ValueError(f'input_size must be [height, width], got {input_size}')
  model(tf.zeros([1, *input_size, 3], tf.uint8), training=False)  # Builds.
  path, step = checkpoints.restore_model(model, model_dir, checkpoint)
  base = export_dir or os.path.join(model_dir, 'export')
  logging.info('Exporting %s (step %d)', path, step)
  if category_names is None:
    category_names = metadata.configured_category_names()
  return export_saved_model(model, os.path.join(base, str(step)),
                            input_size=input_size, task=task,
                            category_names=category_names)
