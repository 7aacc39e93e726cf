"""Teachers for pseudo-labeling: a trained checkpoint or an exported SavedModel.

SavedModels: ours (`st_tf.export.saved_model`, `SavedModelTeacher`) or Model
Garden's `image_tensor` export (`mg_teacher.ModelGardenTeacher`);
`saved_model_teacher` tells them apart by their `serving_default` signature.

All take uint8 RGB images ``[B, H, W, 3]`` (``H x W`` = the teacher's input
size, images resized and zero-padded by the caller) and give, per task:

* detection: `detections(images, generator)` -> 'boxes' float32 [B, K, 4]
  PIXEL yxyx boxes of the input frame, 'scores' [B, K], 'classes' int32
  [B, K] (>= 1), 'num' int32 [B]; rows >= num are padding.
* segmentation: `segment(images, flip)` -> float32 [B, H, W, 2]: the top
  class probability and the argmax class id per pixel.

Checkpoint teachers also run multi-scale inference (`supports_multiscale`):
`segment(images, flip, scales)` and `multiscale_detection_stages(...)`
(see `multiscale.py`); SavedModels have a fixed input size and do not.

`forward(images)` is the network alone (backbone + decoder + head, no
post-processing): the throughput ceiling used by the benchmark.

Teacher ids (provenance written into every pseudo record): the checkpoint
name, a digest of its content and its training step for checkpoints
(`checkpoint_id`: the same wherever the folder lives); the SavedModel
fingerprint checksum for SavedModels.
"""
from __future__ import annotations

import abc
import hashlib
import os
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import gin
import tensorflow as tf
import tf_keras
from official.vision.ops import preprocess_ops

from st_tf import tasks
from st_tf.export import saved_model
from st_tf.pseudo_label import detection
from st_tf.pseudo_label import multiscale
from st_tf.pseudo_label import segmentation
from st_tf.training import checkpoints

# A teacher's task (`Teacher.task`, a `st_tf.tasks` name) is told from its
# Model Garden network class (`Task.network_class`, checkpoints) or its
# signature's outputs (`Task.signature_outputs`, our SavedModels).
SIGNATURE = 'serving_default'


def _flip(images: tf.Tensor) -> tf.Tensor:
  return tf.image.flip_left_right(images)


class Teacher(abc.ABC):
  """A model producing pseudo labels (see the module docstring)."""

  task: str
  teacher_id: str
  input_size: Tuple[int, int]
  num_classes: Optional[int]  # None when the teacher cannot tell.
  supports_segmentation_flip: bool = True
  supports_multiscale: bool = False
  # RGB in [0, 255] of the input padding the teacher was trained with
  # (None: zeros, as our models; see `inputs.py`).
  input_pad_value: Optional[Tuple[float, float, float]] = None
  # {class id: name} the teacher knows (an st_tf export's); None: none.
  category_names: Optional[Dict[int, str]] = None

  @abc.abstractmethod
  def forward(self, images: tf.Tensor) -> Dict[str, Any]:
    """uint8 [B, H, W, 3] -> raw network outputs."""

  @abc.abstractmethod
  def detections(self, images: tf.Tensor,
                 generator: Any) -> detection.Detections:
    """uint8 [B, H, W, 3] -> detections in the input frame (see module)."""

  @abc.abstractmethod
  def segment(self, images: tf.Tensor, flip: bool) -> tf.Tensor:
    """uint8 [B, H, W, 3] -> [B, H, W, 2] (top probability, class id)."""

  def detection_stages(self, generator: Any
                       ) -> Tuple[Callable[[tf.Tensor], Any],
                                  Callable[[Any], detection.Detections]]:
    """`(network, post)` with `post(network(images)) == detections(...)`.

    Pseudo-labeling runs `post` (decoding + NMS) of a batch on another
    thread while `network` runs on the next batch. Default: everything in
    `network`.
    """
    return (lambda images: self.detections(images, generator)), (
        lambda outputs: outputs)

  def check_num_classes(self, num_classes: Optional[int]) -> None:
    """ValueError if the teacher's class count differs from `num_classes`."""
    if (num_classes is not None and self.num_classes is not None and
        int(num_classes) != int(self.num_classes)):
      raise ValueError(
          f'teacher {self.teacher_id} predicts {self.num_classes} classes '
          f'(background included) but the student expects num_classes='
          f'{num_classes}')


def _network_of(model: tf_keras.Model) -> tf_keras.Model:
  """The Model Garden network inside a uint8 wrapper (SelfTrainingModel)."""
  for attr in ('network', 'inner'):
    inner = getattr(model, attr, None)
    if isinstance(inner, tf_keras.Model):
      return inner
  return model


def retinanet_raw_outputs(network: tf_keras.Model,
                          images: tf.Tensor) -> Dict[str, Any]:
  """Backbone + decoder + head of a RetinaNetModel, no post-processing.

  Args:
    network: Model Garden `RetinaNetModel`.
    images: uint8 [B, H, W, 3]; normalized like `SelfTrainingModel.call`.

  Returns:
    'cls_outputs' {level: [B, H_l, W_l, A * C]} logits and 'box_outputs'
    {level: [B, H_l, W_l, A * 4]} encoded boxes.
  """
  x = preprocess_ops.normalize_image(images)
  features = network.backbone(x, training=False)
  if network.decoder:
    features = network.decoder(features, training=False)
  cls_outputs, box_outputs, _ = network.head(features, training=False)
  return {'cls_outputs': cls_outputs, 'box_outputs': box_outputs}


class CheckpointTeacher(Teacher):
  """A uint8-input model (e.g. `SelfTrainingModel`) restored from checkpoint."""

  supports_multiscale = True

  def __init__(self, model: tf_keras.Model, model_dir: Optional[str],
               checkpoint: Optional[str] = None,
               input_size: Optional[Sequence[int]] = None):
    """Builds `model`, restores it and checks what it is.

    Args:
      model: uint8-input Keras model whose Model Garden network is
        `model.network` (SelfTrainingModel) or the model itself.
      model_dir: trainer directory (its latest checkpoint is restored).
      checkpoint: explicit checkpoint prefix or directory (else latest).
      input_size: (H, W); default: the network backbone's input size.
    """
    self.model = model
    self.network = _network_of(model)
    found = [t for t in tasks.all_tasks()
             if isinstance(self.network, t.network_class())]
    if not found:
      raise ValueError(
          f'teacher network {type(self.network).__name__} is not one of '
          f'{[t.network_class().__name__ for t in tasks.all_tasks()]}')
    self.task, self._task = found[0].name, found[0]
    self.input_size = self._input_size(input_size)
    model(tf.zeros([1, *self.input_size, 3], tf.uint8), training=False)
    path, step = checkpoints.restore_model(model, model_dir, checkpoint)
    self.checkpoint_path, self.step = path, step
    self.teacher_id = checkpoint_id(path, step)
    self.num_classes = int(self.network.head.get_config()['num_classes'])

  def _input_size(self, input_size) -> Tuple[int, int]:
    if input_size is None:
      shape = self.network.backbone.inputs[0].shape
      input_size = (shape[1], shape[2])
      if None in input_size:
        raise ValueError('teacher input size unknown: pass input_size')
    return int(input_size[0]), int(input_size[1])

  def forward(self, images: tf.Tensor) -> Dict[str, Any]:
    return self._task.checkpoint_forward(self, images)

  def detections(self, images, generator):
    return detection.generate(generator, self.forward(images),
                              self.network.get_config(), self.input_size)

  def detection_stages(self, generator):
    stages = self._task.checkpoint_detection_stages(self, generator)
    return stages if stages is not None else super().detection_stages(
        generator)

  def multiscale_detection_stages(self, generator, scales, flip: bool,
                                  num_classes: int, nms_iou_threshold: float,
                                  max_num_detections: int):
    """`(network, post)` of multi-scale (and flip) inference; see
    `multiscale.detection_stages`."""
    multiscale.allow_any_input_size(self.network)
    return multiscale.detection_stages(
        self.forward, generator, self.network.get_config(), self.input_size,
        scales, flip, multiscale.size_multiple(self.network), num_classes,
        nms_iou_threshold, max_num_detections)

  def segment(self, images, flip, scales=multiscale.SINGLE_SCALE):
    if not multiscale.is_single_scale(scales):
      multiscale.allow_any_input_size(self.network)
      return multiscale.segment(self.forward, images, self.input_size, scales,
                                flip, multiscale.size_multiple(self.network))
    probs = segmentation.probabilities(self.forward(images)['logits'],
                                       self.input_size)
    if flip:
      flipped = segmentation.probabilities(
          self.forward(_flip(images))['logits'], self.input_size)
      probs = segmentation.average_flipped(probs, flipped)
    return segmentation.confidence_and_class(probs)


def checkpoint_id(path: str, step: int) -> str:
  """A stable id of a checkpoint: its name, content digest and step.

  The digest is the SHA-256 of the checkpoint's `.index` file (which holds
  every tensor's checksum), so the id stays the same when the folder moves
  or is spelled differently (relative, `gs://`), and changes when the
  weights do. Format: `checkpoint:<name>:<16 hex>@step=<step>`.
  """
  with tf.io.gfile.GFile(path + '.index', 'rb') as f:
    digest = hashlib.sha256(f.read()).hexdigest()[:16]
  name = path.rstrip('/').rsplit('/', 1)[-1]
  return f'checkpoint:{name}:{digest}@step={step}'


def saved_model_fingerprint(export_dir: str) -> str:
  """A stable id of a SavedModel: its fingerprint checksum (or pb hash)."""
  try:
    fp = tf.saved_model.experimental.read_fingerprint(export_dir)
    return f'saved_model:{fp.saved_model_checksum}'
  except (FileNotFoundError, ValueError, tf.errors.OpError):
    with tf.io.gfile.GFile(os.path.join(export_dir, 'saved_model.pb'),
                           'rb') as f:
      return f'saved_model:sha256:{hashlib.sha256(f.read()).hexdigest()}'


SAVED_MODEL_SUBDIR = 'saved_model'  # Model Garden's command line writes here.


def load_serving(export_dir: str) -> Tuple[str, Any, Any]:
  """Loads a SavedModel and its `serving_default` signature.

  Args:
    export_dir: the SavedModel folder, or a Model Garden export folder
      holding it in `saved_model/` (beside `params.yaml`).

  Returns:
    (SavedModel folder, loaded object, `serving_default` concrete function).
  """
  nested = os.path.join(export_dir, SAVED_MODEL_SUBDIR)
  if (not tf.io.gfile.exists(os.path.join(export_dir, 'saved_model.pb')) and
      tf.io.gfile.exists(os.path.join(nested, 'saved_model.pb'))):
    export_dir = nested
  if not tf.io.gfile.exists(os.path.join(export_dir, 'saved_model.pb')):
    raise ValueError(f'{export_dir} is not a SavedModel directory (no '
                     'saved_model.pb)')
  loaded = tf.saved_model.load(export_dir)
  if SIGNATURE not in loaded.signatures:
    raise ValueError(
        f'SavedModel {export_dir} has no {SIGNATURE!r} signature (has '
        f'{sorted(loaded.signatures)}); export it with '
        'st_tf.export.saved_model or Model Garden\'s export_saved_model')
  return export_dir, loaded, loaded.signatures[SIGNATURE]


class SavedModelTeacher(Teacher):
  """A SavedModel exported by `st_tf.export.saved_model` (serving_default).

  Its own NMS (the export model's detection generator) has already run;
  pseudo-labeling filters its detections. The class count is unknown to a
  SavedModel (`num_classes` None); class ids are checked at run time.
  Segmentation flip TTA is not available (only the top probability is
  exported, not the full distribution).
  """

  supports_segmentation_flip = False

  def __init__(self, export_dir: str, task: Optional[str] = None,
               serving: Optional[Tuple[str, Any, Any]] = None):
    """`serving`: `load_serving(export_dir)`'s result, if already loaded."""
    export_dir, self.loaded, self._fn = serving or load_serving(export_dir)
    _, kwargs = self._fn.structured_input_signature
    spec = kwargs.get('images')
    if (spec is None or spec.dtype != tf.uint8 or spec.shape.rank != 4 or
        spec.shape[-1] != 3 or None in spec.shape[1:3]):
      raise ValueError(
          f'SavedModel {export_dir}: {SIGNATURE} must take images=uint8 '
          f'[B, H, W, 3] with a fixed H, W; got inputs {kwargs}')
    outputs = set(self._fn.structured_outputs)
    found = [t.name for t in tasks.all_tasks()
             if set(t.signature_outputs) <= outputs]
    if not found:
      wanted = ' nor '.join(f'the {t.name} outputs {list(t.signature_outputs)}'
                            for t in tasks.all_tasks())
      raise ValueError(
          f'SavedModel {export_dir}: {SIGNATURE} outputs {sorted(outputs)} '
          f'hold neither {wanted}')
    if task is not None and task not in found:
      raise ValueError(f'SavedModel {export_dir} is a {found[0]} model, not '
                       f'{task}')
    self.task = found[0]
    self.input_size = (int(spec.shape[1]), int(spec.shape[2]))
    self.num_classes = None
    self.export_dir = export_dir
    self.teacher_id = saved_model_fingerprint(export_dir)
    self.category_names = saved_model.read_category_names(export_dir)

  def forward(self, images):
    return self._fn(images=images)

  def detections(self, images, generator):
    del generator  # The SavedModel ran its own NMS.
    out = self.forward(images)
    return {'boxes': tf.cast(out['detection_boxes'], tf.float32),
            'scores': tf.cast(out['detection_scores'], tf.float32),
            'classes': tf.cast(out['detection_classes'], tf.int32),
            'num': tf.cast(out['num_detections'], tf.int32)}

  def segment(self, images, flip):
    if flip:
      raise ValueError('segmentation flip TTA needs a checkpoint teacher '
                       '(a SavedModel only exports the top probability)')
    out = self.forward(images)
    return tf.stack([tf.cast(out['confidence'], tf.float32),
                     tf.cast(out['class_map'], tf.float32)], axis=-1)


TeacherFactory = Callable[[], Teacher]


@gin.configurable
def checkpoint_teacher(model_dir: str = gin.REQUIRED,
                       model: Union[tf_keras.Model, Callable[[], tf_keras.Model]]
                       = gin.REQUIRED,
                       checkpoint: Optional[str] = None,
                       input_size: Optional[Sequence[int]] = None
                       ) -> CheckpointTeacher:
  """Gin: teacher from the trainer's checkpoints, model built via gin.

  Bind without parentheses so it is built inside the strategy scope::

    pseudo_label.teacher = @checkpoint_teacher
    checkpoint_teacher.model_dir = '/tmp/teacher'
    checkpoint_teacher.model = @SelfTrainingModel
  """
  if not isinstance(model, tf_keras.Model) and callable(model):
    model = model()
  return CheckpointTeacher(model, model_dir, checkpoint, input_size)


@gin.configurable
def saved_model_teacher(export_dir: str = gin.REQUIRED,
                        task: Optional[str] = None,
                        input_size: Optional[Sequence[int]] = None
                        ) -> Teacher:
  """Gin: teacher from an exported SavedModel directory.

  The signature tells which exporter wrote it: `serving_default(images=...)`
  is ours (`SavedModelTeacher`); one uint8 [B, H, W, 3] input (`inputs`) is
  Model Garden's `image_tensor` export (`mg_teacher.ModelGardenTeacher`).

  Args:
    export_dir: the SavedModel folder (or a Model Garden export folder with
      `saved_model/` inside).
    task: expected task, or None.
    input_size: (H, W) fed to a Model Garden SavedModel (default: from its
      export, see `mg_teacher`); ours has a fixed input size.
  """
  from st_tf.pseudo_label import mg_teacher  # pylint: disable=g-import-not-at-top
  serving = load_serving(export_dir)
  path, loaded, fn = serving
  _, kwargs = fn.structured_input_signature
  if 'images' in kwargs:
    teacher = SavedModelTeacher(path, task, serving)
    if input_size is not None and tuple(input_size) != teacher.input_size:
      raise ValueError(
          f'SavedModel {path} takes {teacher.input_size} images, not '
          f'input_size={tuple(input_size)}; unbind '
          'saved_model_teacher.input_size')
    return teacher
  if mg_teacher.image_input(fn) is not None:
    return mg_teacher.ModelGardenTeacher(path, loaded, fn, task, input_size)
  raise ValueError(
      f'SavedModel {path}: {SIGNATURE} must take images=uint8 [B, H, W, 3] '
      '(st_tf.export.saved_model) or one uint8 [B, H, W, 3] tensor such as '
      "Model Garden's inputs= (export_saved_model --input_type=image_tensor);"
      f' got inputs {kwargs}')
