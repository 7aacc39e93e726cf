"""Shared pieces of the model builders: norm/activation, L2, level checks."""
from typing import Mapping, Optional, Sequence

import tensorflow as tf
import tf_keras

from official.vision.configs import common


def norm_activation_config(activation: str,
                           use_sync_bn: bool,
                           norm_momentum: float,
                           norm_epsilon: float) -> common.NormActivation:
  """Model Garden NormActivation config shared by backbone, decoder, head."""
  return common.NormActivation(
      activation=activation,
      use_sync_bn=use_sync_bn,
      norm_momentum=norm_momentum,
      norm_epsilon=norm_epsilon)


def l2_regularizer(
    l2_weight_decay: float) -> Optional[tf_keras.regularizers.Regularizer]:
  """L2 kernel regularizer as Model Garden tasks build it.

  Model Garden uses `l2(l2_weight_decay / 2)` so that the penalty
  `sum(model.losses)` equals `l2_weight_decay / 2 * ||w||^2`. Returns None for
  a zero decay (no regularization losses are added to the model).
  """
  if l2_weight_decay < 0:
    raise ValueError(f'l2_weight_decay must be >= 0, got {l2_weight_decay}')
  if not l2_weight_decay:
    return None
  return tf_keras.regularizers.l2(l2_weight_decay / 2.0)


def check_levels(output_specs: Mapping[str, tf.TensorShape],
                 min_level: int,
                 max_level: int,
                 what: str) -> None:
  """Raises ValueError unless `output_specs` has every level in range.

  Args:
    output_specs: {str(level): shape} from a backbone or decoder.
    min_level: smallest level the head reads.
    max_level: largest level the head reads.
    what: description used in the error message (e.g. 'backbone spinenet').
  """
  if min_level > max_level:
    raise ValueError(f'min_level {min_level} > max_level {max_level}')
  have = sorted(int(k) for k in output_specs)
  missing = [l for l in range(min_level, max_level + 1) if str(l) not in
             output_specs]
  if missing:
    raise ValueError(
        f'{what} outputs levels {have} but the model needs levels '
        f'{min_level}..{max_level} (missing {missing}). Match the backbone '
        'min_level/max_level to the model, or use a decoder (e.g. @fpn()) '
        'that builds the extra levels.')


def check_input_size(input_size: Sequence[int], max_level: int) -> None:
  """Raises ValueError unless (H, W) are positive multiples of 2**max_level."""
  if len(input_size) != 2:
    raise ValueError(f'input_size must be (height, width), got {input_size}')
  stride = 2**max_level
  if any(int(s) <= 0 or int(s) % stride for s in input_size):
    raise ValueError(
        f'input_size {tuple(input_size)} must be positive multiples of '
        f'2**max_level = {stride}')


def check_num_classes(num_classes: int) -> None:
  """Class counts include the background (id 0), so they are >= 2."""
  if num_classes < 2:
    raise ValueError(
        f'num_classes counts the background and must be >= 2, got '
        f'{num_classes}')
