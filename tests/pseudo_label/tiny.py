"""Tiny teachers and data for the pseudo-label tests (64 px, ~100k params)."""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
import tf_keras

from st_tf import model as model_lib
from st_tf.datasets.digitscenes import scenes as digitscenes
from st_tf.losses import self_training
from st_tf.modeling import anchors
from st_tf.modeling import backbones
from st_tf.modeling import decoders
from st_tf.modeling import detection as detection_modeling
from st_tf.modeling import segmentation as segmentation_modeling
from st_tf.pseudo_label import teacher as teacher_lib

SIZE = 64
NUM_CLASSES = digitscenes.NUM_CLASSES  # 11
# The tiny RetinaNet's anchors: levels 3-5, one anchor per location.
ANCHORS = anchors.AnchorSpec(min_level=3, max_level=5, num_scales=1,
                             aspect_ratios=(1.0,), anchor_size=2.0)


def _no_loss(outputs, labels, weight):
  del outputs, labels, weight
  return {'total': tf.constant(0.0)}


def _wrap(network: tf_keras.Model) -> model_lib.SelfTrainingModel:
  model = model_lib.SelfTrainingModel(
      network, _no_loss, self_training.get_combiner('human_only'))
  model(tf.zeros([1, SIZE, SIZE, 3], tf.uint8), training=False)
  return model


def detection_model(num_classes: int = NUM_CLASSES, bias_seed: int = 0,
                    **generator) -> model_lib.SelfTrainingModel:
  """Tiny RetinaNet with a random classifier (scores spread over [0, 1]).

  `generator` overrides `build_retinanet`'s NMS arguments.
  """
  tf_keras.utils.set_random_seed(bias_seed)
  network = detection_modeling.build_retinanet(
      input_size=(SIZE, SIZE), num_classes=num_classes,
      backbone=backbones.resnet(model_id=10, depth_multiplier=0.125),
      decoder=decoders.fpn(num_filters=16), anchors=ANCHORS,
      head_num_convs=1, head_num_filters=16, **generator)
  model = _wrap(network)
  rng = np.random.default_rng(bias_seed)
  for var in network.head.trainable_variables:
    if var.name.endswith('scores/bias:0'):
      var.assign(rng.normal(-2.5, 0.5, var.shape).astype(np.float32))
    elif var.name.endswith('scores/kernel:0'):
      var.assign(rng.normal(0.0, 1.0, var.shape).astype(np.float32))
  return model


def teacher_model(bias_seed: int = 0) -> model_lib.SelfTrainingModel:
  """`detection_model` for checkpoint teachers: the same variables, batched NMS.

  A checkpoint teacher never runs the model's own detection generator (the
  pseudo-label generator decodes the raw head outputs), only its build
  calls do: batched NMS makes those eager calls cheap.
  """
  return detection_model(bias_seed=bias_seed, nms_version='batched')


# (model_dir, latest checkpoint) -> restored CheckpointTeacher.
_TEACHERS = {}


def cached_teacher(model_dir: str) -> teacher_lib.CheckpointTeacher:
  """The checkpoint teacher of `model_dir`, built and restored once.

  `runner.pseudo_label` takes a `Teacher` as well as a factory; tests that
  run it many times on one checkpoint reuse the restored teacher (model
  build + restore is most of a tiny run). Keyed by the latest checkpoint,
  so a new checkpoint in the same folder gets a new teacher.
  """
  key = (model_dir, tf.train.latest_checkpoint(model_dir))
  if key not in _TEACHERS:
    _TEACHERS[key] = teacher_lib.checkpoint_teacher(model_dir=model_dir,
                                                    model=teacher_model)
  return _TEACHERS[key]


def segmentation_model(num_classes: int = NUM_CLASSES
                       ) -> model_lib.SelfTrainingModel:
  tf_keras.utils.set_random_seed(1)
  network = segmentation_modeling.build_segmentation_model(
      input_size=(SIZE, SIZE), num_classes=num_classes,
      backbone=backbones.resnet(model_id=10, depth_multiplier=0.125),
      decoder=decoders.fpn(num_filters=16), min_level=3, max_level=5,
      head_level=3, head_num_convs=1, head_num_filters=16)
  model = _wrap(network)
  rng = np.random.default_rng(1)
  for var in network.head.trainable_variables:  # Peaked, varied softmax.
    if var.name.endswith('segmentation_output/kernel:0'):
      var.assign(rng.normal(0.0, 8.0, var.shape).astype(np.float32))
  return model


def save_checkpoint(model: tf_keras.Model, model_dir: str,
                    step: int = 7) -> str:
  """Saves like the trainer: Checkpoint(model=, step=) as ckpt-<step>."""
  step_var = tf.Variable(step, dtype=tf.int64)
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=model, step=step_var), model_dir,
      max_to_keep=1, checkpoint_name='ckpt')
  return manager.save(checkpoint_number=step)


def make_unlabeled(data_dir: str, num: int = 10, num_shards: int = 3) -> str:
  """DigitScenes unlabeled split (64 px, ground truth kept); returns glob."""
  digitscenes.generate(data_dir, num_labeled=0, num_unlabeled=num, num_val=0,
                       num_shards=num_shards, image_size=SIZE, num_workers=1)
  return digitscenes.file_pattern(data_dir, 'unlabeled')


def read_records(pattern: str) -> list:
  """Parsed tf.train.Examples of every file matching `pattern`."""
  files = sorted(tf.io.gfile.glob(pattern))
  return [tf.train.Example.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(files)]


def source_ids(examples) -> list:
  return sorted(e.features.feature['image/source_id'].bytes_list.value[0]
                .decode() for e in examples)


def listing(path: str) -> list:
  return sorted(os.listdir(path)) if os.path.isdir(path) else []
