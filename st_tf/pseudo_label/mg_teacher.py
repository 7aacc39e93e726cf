"""A SavedModel from Model Garden's own exporter as a pseudo-labeling teacher.

Accepted: what `official/vision/serving/export_saved_model.py` (or
`export_saved_model_lib.export_inference_graph`) writes for a RetinaNet or
semantic segmentation experiment with ``input_type='image_tensor'``:
``serving_default(inputs: uint8 [B, H, W, 3])`` with any H, W (Model Garden
resizes each image inside, keeping its aspect ratio, then pads). The input
may have another name (the exporter's `input_name`) and a fixed batch size.

We pass it our uint8 teacher input (the unlabeled image resized and
zero-padded to `input_size` ``H x W`` by `inputs.py`) and map its outputs
to the `Teacher` conventions (teacher.py), i.e. to THAT ``H x W`` frame:

* detection (`DetectionModule`): 'detection_boxes' ``[B, K, 4]`` yxyx in
  pixels of Model Garden's own resized input, or, with
  `export_config.output_normalized_coordinates`, in [0, 1] of the image
  passed in; 'detection_scores' ``[B, K]``, 'detection_classes' ``[B, K]``
  (>= 1; int32, or float with `cast_detection_classes_to_float`),
  'num_detections' ``[B]`` and 'image_info' ``[B, 4, 2]`` (Model Garden's
  ``[[h, w], [desired h, w], [scale y, x], [offset y, x]]`` of the image
  passed in). Pixel boxes -> ``(boxes + offset) / scale`` (the inverse of
  its resize, as its `_normalize_coordinates`); normalized boxes ->
  ``boxes * [H, W, H, W]``.
* segmentation (`SegmentationModule`): 'logits' ``[B, h, w, C]`` at the
  export's input size, or at the passed image's size with
  `export_config.rescale_output`. The region the image covers
  (``round(H * scale_y) x round(W * scale_x)``) is cropped, resized
  bilinearly to ``H x W`` and soft-maxed. The full distribution is there,
  so flip TTA works.

Model Garden pads with its mean colour (it normalizes, then pads), so the
input pipeline pads with `input_pad_value` (`inputs.py`) for this teacher.

`params.yaml`, which the exporter writes beside the SavedModel (or one
folder up, with the command line's ``saved_model/`` subfolder), gives the
class count, the input size and whether boxes are normalized; without it
the input size comes from the 'logits' shape (segmentation) or must be
given (`saved_model_teacher.input_size`).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence, Tuple

import tensorflow as tf
from official.modeling.hyperparams import params_dict
from official.vision.ops import preprocess_ops

from st_tf import tasks
from st_tf.ops import image_info as image_info_ops
from st_tf.pseudo_label import segmentation
from st_tf.pseudo_label import teacher as teacher_lib

DETECTION_OUTPUTS = ('detection_boxes', 'detection_scores',
                     'detection_classes', 'num_detections')
SEGMENTATION_OUTPUT = 'logits'
PARAMS_FILE = 'params.yaml'
EXPORT_HINT = ("export it with Model Garden's official/vision/serving/"
               "export_saved_model.py --input_type=image_tensor")


def image_input(fn: Any) -> Optional[Tuple[str, tf.TensorSpec]]:
  """`(name, spec)` of a signature's single uint8 ``[B, H, W, 3]`` input,
  or None when `fn` does not take exactly that."""
  args, kwargs = fn.structured_input_signature
  if args or len(kwargs) != 1:
    return None
  (name, spec), = kwargs.items()
  if (not isinstance(spec, tf.TensorSpec) or spec.dtype != tf.uint8 or
      spec.shape.rank != 4 or spec.shape[-1] != 3):
    return None
  return name, spec


def read_params(saved_model_dir: str) -> Dict[str, Any]:
  """The exporter's `params.yaml` beside the SavedModel or one folder up
  ({} when there is none)."""
  parent = os.path.dirname(saved_model_dir.rstrip('/'))
  for folder in (saved_model_dir, parent):
    path = os.path.join(folder, PARAMS_FILE)
    if folder and tf.io.gfile.exists(path):
      try:  # Model Garden's own reader (its YAML has python tuples).
        return params_dict.read_yaml_to_params_dict(path).as_dict()
      except (AttributeError, TypeError, ValueError) as e:
        raise ValueError(
            f'{path} is not a Model Garden experiment config ({e}); remove '
            'it or replace it with the params.yaml of the export') from e
  return {}


def _model_params(params: Dict[str, Any]) -> Dict[str, Any]:
  return (params.get('task') or {}).get('model') or {}


def _export_flag(params: Dict[str, Any], name: str) -> bool:
  return bool(((params.get('task') or {}).get('export_config') or {}).get(
      name, False))


def pad_value(params: Dict[str, Any], task: str) -> Tuple[float, ...]:
  """RGB in [0, 255] of Model Garden's padding: its mean (it normalizes,
  then pads with zeros); segmentation configs may set their own mean
  (`Task.model_garden_pad_value`)."""
  own = tasks.get(task).model_garden_pad_value(params)
  if own is not None:
    return own
  return tuple(float(m) for m in preprocess_ops.MEAN_RGB)


def boxes_to_input_frame(boxes: tf.Tensor, image_info: Optional[tf.Tensor],
                         input_size: Sequence[int],
                         normalized: bool) -> tf.Tensor:
  """Model Garden detection boxes -> pixel yxyx boxes of the passed image.

  Args:
    boxes: float [B, K, 4] yxyx, in pixels of Model Garden's resized input,
      or in [0, 1] of the passed image when `normalized`.
    image_info: float [B, 4, 2] Model Garden image info of the passed
      images (None: Model Garden did not resize, e.g. tflite NMS).
    input_size: (H, W) of the passed images.
    normalized: the export set `output_normalized_coordinates`.

  Returns:
    float32 [B, K, 4] pixel yxyx boxes in the passed ``H x W`` frame.
  """
  boxes = tf.cast(boxes, tf.float32)
  if normalized:
    height, width = (float(s) for s in input_size)
    return boxes * tf.constant([height, width, height, width])
  if image_info is None:
    return boxes
  return image_info_ops.boxes_to_original(boxes, image_info, clip=False)


def logits_to_input_frame(logits: tf.Tensor, image_info: Optional[tf.Tensor],
                          input_size: Sequence[int]) -> tf.Tensor:
  """Model Garden segmentation logits -> float32 [B, H, W, C] of the passed
  ``H x W`` images (see the module docstring).

  Args:
    logits: [B, h, w, C] at the export's input size, or already ``H x W``.
    image_info: float [B, 4, 2] of the passed images (all rows alike: the
      images of a batch have one size), or None.
    input_size: (H, W) of the passed images.
  """
  logits = tf.cast(logits, tf.float32)
  size = [int(s) for s in input_size]
  if image_info is not None and logits.shape[1:3] != size:
    info = tf.cast(image_info[0], tf.float32)
    covered = tf.cast(tf.round(info[0] * info[2]), tf.int32)
    covered = tf.clip_by_value(covered, 1, tf.shape(logits)[1:3])
    logits = logits[:, :covered[0], :covered[1], :]
  return tf.image.resize(logits, size, method='bilinear')


def _task(export_dir: str, outputs: Dict[str, tf.TensorSpec]) -> str:
  """The task name (`st_tf.tasks`) the signature's outputs tell
  (`Task.model_garden_match`, the first registered task that matches)."""
  for task in tasks.all_tasks():
    if task.model_garden_match(outputs):
      return task.name
  logits = outputs.get(SEGMENTATION_OUTPUT)
  kind = (' (rank-2 logits: an image classification model?)'
          if logits is not None else '')
  raise ValueError(
      f'Model Garden SavedModel {export_dir}: {teacher_lib.SIGNATURE} '
      f'outputs {sorted(outputs)}{kind} hold neither the detection outputs '
      f'{list(DETECTION_OUTPUTS)} nor segmentation {SEGMENTATION_OUTPUT!r} '
      '[B, h, w, C]; export a RetinaNet or semantic segmentation experiment '
      f'({EXPORT_HINT})')


class ModelGardenTeacher(teacher_lib.Teacher):
  """A Model Garden `image_tensor` SavedModel (see the module docstring).

  Its NMS has already run (detection); `num_classes` comes from
  `params.yaml` or the logits' channels (None when neither says).
  """

  def __init__(self, export_dir: str, loaded: Any, fn: Any,
               task: Optional[str] = None,
               input_size: Optional[Sequence[int]] = None):
    """Checks the signature and reads the export's settings.

    Args:
      export_dir: the SavedModel folder (holding saved_model.pb).
      loaded: `tf.saved_model.load(export_dir)` (kept alive with `fn`).
      fn: its `serving_default` concrete function.
      task: expected task (an `st_tf.tasks` name), or None.
      input_size: (H, W) fed to the SavedModel; default: the 'logits' size
        (segmentation), else `params.yaml`'s `task.model.input_size`.
    """
    found = image_input(fn)
    if found is None:
      raise ValueError(
          f'SavedModel {export_dir}: {teacher_lib.SIGNATURE} takes '
          f'{fn.structured_input_signature}, not one uint8 [B, H, W, 3] '
          f'tensor; {EXPORT_HINT}')
    self._input_name, spec = found
    self._batch = spec.shape[0]
    self.loaded, self._fn, self.export_dir = loaded, fn, export_dir
    outputs = dict(fn.structured_outputs)
    self.task = _task(export_dir, outputs)
    if task is not None and task != self.task:
      raise ValueError(f'SavedModel {export_dir} is a {self.task} model, not '
                       f'{task}')
    params = read_params(export_dir)
    self._normalized = _export_flag(params, 'output_normalized_coordinates')
    self.input_pad_value = pad_value(params, self.task)
    self.input_size = self._input_size(input_size, params, outputs)
    self.num_classes = self._num_classes(params, outputs)
    self.teacher_id = teacher_lib.saved_model_fingerprint(export_dir)

  def _input_size(self, input_size, params, outputs) -> Tuple[int, int]:
    candidates = [input_size,
                  tasks.get(self.task).model_garden_input_size(outputs),
                  (_model_params(params).get('input_size') or [None])[:2]]
    for size in candidates:
      if size is not None and len(size) == 2 and None not in size:
        if min(int(s) for s in size) <= 0:
          raise ValueError(f'input_size must be (height, width) > 0, got '
                           f'{size} (SavedModel {self.export_dir})')
        return int(size[0]), int(size[1])
    raise ValueError(
        f'Model Garden SavedModel {self.export_dir}: its input size is '
        f'unknown (no {PARAMS_FILE} with task.model.input_size beside it or '
        'one folder up). Fix: bind saved_model_teacher.input_size = '
        '(height, width), e.g. the export\'s --input_image_size')

  def _num_classes(self, params, outputs) -> Optional[int]:
    value = _model_params(params).get('num_classes')
    if value is None:
      value = tasks.get(self.task).model_garden_num_classes(outputs)
    return None if value is None else int(value)

  def forward(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """uint8 [B, H, W, 3] -> the signature's outputs (batch split to its
    fixed batch size, if it has one)."""
    n, b = images.shape[0], self._batch
    if b is None or n == b:
      return self._fn(**{self._input_name: images})
    if n is None or n % b:
      raise ValueError(
          f'SavedModel {self.export_dir} takes batches of exactly {b} images; '
          f'got {n}. Fix: set pseudo_label.batch_size to a multiple of {b}')
    parts = [self._fn(**{self._input_name: images[i:i + b]})
             for i in range(0, n, b)]
    return {k: tf.concat([p[k] for p in parts], 0) for k in parts[0]}

  def detections(self, images, generator):
    del generator  # The SavedModel ran its own NMS.
    out = self.forward(images)
    boxes = boxes_to_input_frame(out['detection_boxes'], out.get('image_info'),
                                 self.input_size, self._normalized)
    return {'boxes': boxes,
            'scores': tf.cast(out['detection_scores'], tf.float32),
            'classes': tf.cast(tf.round(tf.cast(out['detection_classes'],
                                                tf.float32)), tf.int32),
            'num': tf.cast(out['num_detections'], tf.int32)}

  def _probabilities(self, images: tf.Tensor) -> tf.Tensor:
    out = self.forward(images)
    logits = logits_to_input_frame(out[SEGMENTATION_OUTPUT],
                                   out.get('image_info'), self.input_size)
    return segmentation.probabilities(logits, self.input_size)

  def segment(self, images, flip):
    probs = self._probabilities(images)
    if flip:
      probs = segmentation.average_flipped(
          probs, self._probabilities(tf.image.flip_left_right(images)))
    return segmentation.confidence_and_class(probs)
