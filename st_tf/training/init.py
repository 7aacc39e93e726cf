"""Model initialisation before training: a registry chosen by gin.

* 'random': keep the initializers' values (the paper's "Rand Init").
* 'backbone': restore only the backbone from a checkpoint written as
  `tf.train.Checkpoint(backbone=...)` (the paper's "ImageNet" / "ImageNet++"
  pre-training; also Model Garden's `init_checkpoint_modules='backbone'`
  format). Heads stay random. Other objects in the checkpoint are ignored.
* 'full': restore the whole model from a checkpoint written as
  `tf.train.Checkpoint(model=...)` (e.g. our trainer's checkpoints: a student
  initialised from its teacher, the next round of self-training). The
  optimizer state is not restored.

The trainer skips initialisation when it resumes from its own checkpoint.
Gin:

    initialize_model.method = 'backbone'
    initialize_model.checkpoint = '/ckpt/imagenet/ckpt-100000'
"""
from __future__ import annotations

from typing import Callable, Optional

from absl import logging
import gin
import tensorflow as tf
import tf_keras

from st_tf import registry
from st_tf.training import checkpoints

InitFn = Callable[[tf_keras.Model, Optional[str]], None]

_INITS: registry.Registry[InitFn] = registry.Registry(
    'init method', binding='initialize_model.method')

# Decorator registering `fn(model, checkpoint_path)` under a name.
register_init = _INITS.register


def resolve_checkpoint(path: Optional[str]) -> str:
  """A checkpoint prefix from a prefix or a directory (its latest checkpoint).

  Raises:
    ValueError: no path given, or nothing restorable found there.
  """
  if not path:
    raise ValueError('An init checkpoint path is required for this init '
                     'method (set initialize_model.checkpoint).')
  return checkpoints.resolve_checkpoint(None, path)


def find_backbone(model: tf_keras.Model) -> tf_keras.Model:
  """The backbone of `model`: `model.backbone` or `model.<inner>.backbone`.

  Works for Model Garden task models (`RetinaNetModel.backbone`,
  `SegmentationModel.backbone`) and for wrappers holding one of them.
  """
  backbone = getattr(model, 'backbone', None)
  if backbone is not None:
    return backbone
  for attr in ('inner', 'model', 'network'):
    inner = getattr(model, attr, None)
    if inner is not None and getattr(inner, 'backbone', None) is not None:
      return inner.backbone
  raise ValueError(f'Cannot find a backbone on {type(model).__name__}: expected '
                   'a `backbone` attribute on it or on its `inner` model.')


@register_init('random')
def _random(model: tf_keras.Model, checkpoint: Optional[str]) -> None:
  del model
  if checkpoint:
    logging.warning('init method "random" ignores checkpoint %s', checkpoint)


@register_init('backbone')
def _backbone(model: tf_keras.Model, checkpoint: Optional[str]) -> None:
  path = resolve_checkpoint(checkpoint)
  backbone = find_backbone(model)
  status = tf.train.Checkpoint(backbone=backbone).restore(path)
  try:
    status.expect_partial().assert_existing_objects_matched()
  except AssertionError as e:
    raise ValueError(f'Checkpoint {path!r} does not hold this backbone '
                     f'(saved as tf.train.Checkpoint(backbone=...)?): {e}'
                    ) from e
  logging.info('Initialised backbone (%d variables) from %s',
               len(backbone.variables), path)


@register_init('full')
def _full(model: tf_keras.Model, checkpoint: Optional[str]) -> None:
  """Restores the weights of a trainer checkpoint (student from teacher).

  Only the network is restored when the model wraps one (`model.network`,
  as `SelfTrainingModel` does): not the optimizer (its iteration count would
  make the student start at the teacher's last step) nor the self-training
  loss averages. Other models are restored partially, optimizer excluded.
  """
  path = resolve_checkpoint(checkpoint)
  # (Not tf.train.load_checkpoint: see training/checkpoints.checkpoint_step.)
  keys = tf.compat.v1.train.NewCheckpointReader(
      path).get_variable_to_shape_map()
  if not any(k.startswith('model/') for k in keys):
    raise ValueError(f'Checkpoint {path!r} holds no `model` matching this '
                     'one (saved as tf.train.Checkpoint(model=...)?).')
  network = getattr(model, 'network', None)
  if network is not None:
    status = tf.train.Checkpoint(
        model=tf.train.Checkpoint(network=network)).restore(path)
    try:
      status.expect_partial().assert_existing_objects_matched()
    except AssertionError as e:
      raise ValueError(f'Checkpoint {path!r} does not match this network: '
                       f'{e}') from e
  else:
    tf.train.Checkpoint(model=model).restore(path).expect_partial()
  logging.info('Initialised the model weights from %s', path)


def available_inits() -> list[str]:
  """Names accepted by `initialize_model`."""
  return _INITS.names()


@gin.configurable
def initialize_model(model: tf_keras.Model,
                     method: str = 'random',
                     checkpoint: Optional[str] = None) -> None:
  """Initialises `model` in place with the registered `method`.

  Args:
    model: the freshly built model (variables may be created lazily; restores
      of not-yet-built layers are deferred by `tf.train.Checkpoint`).
    method: one of `available_inits()`.
    checkpoint: checkpoint prefix or directory (latest checkpoint used).
  """
  _INITS.get(method)(model, checkpoint)  # ValueError naming the known ones.
