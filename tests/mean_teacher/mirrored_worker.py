"""MeanTeacherModel.fit under MirroredStrategy on 2 logical CPUs (subprocess).

Run by tests/mean_teacher/test_mirrored.py: logical devices must be set
before TensorFlow starts, so this runs in its own process and writes its
results (JSON) to argv[2]; argv[1] is a scratch model_dir.

The tiny RetinaNet of tests/mean_teacher/test_detection_step.py, its
`DetectionTargets`, decay 0.5 and no burn-in, trained by `trainer.train`
for 2 steps (one checkpoint each); every replica gets 2 human images and 2
two-view unlabeled images. The score bias is set to 0 (every anchor scores
0.5) so that the teacher keeps boxes.
"""
import json
import sys

import tensorflow as tf

_CPU = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(
    _CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import functools  # pylint: disable=g-import-not-at-top,wrong-import-position,wrong-import-order

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tf_keras  # pylint: disable=g-import-not-at-top,wrong-import-position

from st_tf.data import parsers  # pylint: disable=g-import-not-at-top,wrong-import-position
from st_tf.data import views as views_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from st_tf.losses import detection as detection_loss  # pylint: disable=g-import-not-at-top,wrong-import-position
from st_tf.losses import self_training  # pylint: disable=g-import-not-at-top,wrong-import-position
from st_tf.mean_teacher import model as mt_model  # pylint: disable=g-import-not-at-top,wrong-import-position
from st_tf.mean_teacher import targets as targets_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from st_tf.training import trainer  # pylint: disable=g-import-not-at-top,wrong-import-position
from tests.mean_teacher import test_detection_step as step_test  # pylint: disable=g-import-not-at-top,wrong-import-position
from tests.pseudo_label import tiny  # pylint: disable=g-import-not-at-top,wrong-import-position

DECAY = 0.5
STEPS = 2


def _parsers():
  parser = parsers.DetectionParser(
      output_size=(tiny.SIZE, tiny.SIZE), policy='S1', mode='train',
      crowd_handling='ignore', anchors=step_test.ANCHORS)
  view_parser = views_lib.TwoViewParser(
      output_size=(tiny.SIZE, tiny.SIZE), strong_augmenter=None,
      size_multiple=32, groundtruth='boxes', max_num_instances=8)
  return parser, view_parser


def build() -> mt_model.MeanTeacherModel:
  parser, _ = _parsers()
  model = mt_model.MeanTeacherModel(
      network_fn=step_test._network,  # pylint: disable=protected-access
      loss_fn=functools.partial(detection_loss.detection_loss,
                                num_classes=tiny.NUM_CLASSES),
      combiner=self_training.get_combiner('normalized'),
      targets=targets_lib.DetectionTargets(
          parser=parser, score_threshold=0.3, band_low=0.2, max_boxes=10),
      input_size=(tiny.SIZE, tiny.SIZE), ema_decay=DECAY, burn_in_steps=0)
  step_test._set_score_bias(model.network, 0.0)  # pylint: disable=protected-access
  return model


def dataset(input_context=None):
  """Element i is replica i % 2's batch (one pipeline, 2 replicas)."""
  del input_context
  parser, view_parser = _parsers()
  batches = [step_test._batch(parser, view_parser, 2) for _ in range(2)]  # pylint: disable=protected-access
  stacked = tf.nest.map_structure(lambda *t: tf.stack(t), *batches)
  return tf.data.Dataset.from_tensor_slices(stacked).repeat()


class _Record(tf_keras.callbacks.Callback):
  """Student weights at the start, logs of every step."""

  def on_train_begin(self, logs=None):
    self.start = [s.numpy() for _, s in self.model._pairs()]  # pylint: disable=protected-access
    self.logs = []

  def on_train_batch_end(self, batch, logs=None):
    self.logs.append({k: float(v) for k, v in (logs or {}).items()})


def _replicas_agree(variables) -> bool:
  """Every replica holds the same value of every (mirrored) variable."""
  for v in variables:
    values = [x.numpy() for x in getattr(v, 'values', [v])]
    if any(not np.array_equal(values[0], x) for x in values[1:]):
      return False
  return True


def main(model_dir: str, out_path: str) -> None:
  tf_keras.utils.set_random_seed(0)
  strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  holder, record = {}, _Record()

  def make():
    holder['model'] = build()
    return holder['model']

  trainer.train(model_dir=model_dir, model=make, train_dataset=dataset,
                train_steps=1, steps_per_epoch=1, strategy=strategy,
                optimizer=lambda: tf_keras.optimizers.SGD(0.01),
                init=lambda m: None, precision=lambda: None,
                callbacks=[record])
  model = holder['model']
  pairs = model._pairs()  # pylint: disable=protected-access
  trainable = {id(v) for v in model.network.trainable_variables}
  # After the first step: t = decay * s_0 + (1 - decay) * s_1.
  errors = [float(np.max(np.abs(
      t.numpy() - (DECAY * s0 + (1 - DECAY) * s.numpy())), initial=0.0))
            for (t, s), s0 in zip(pairs, record.start) if id(s) in trainable]
  moved = max(float(np.max(np.abs(s.numpy() - s0), initial=0.0))
              for (_, s), s0 in zip(pairs, record.start))
  first_logs = record.logs
  record2 = _Record()
  trainer.train(model_dir=model_dir, model=make, train_dataset=dataset,
                train_steps=STEPS, steps_per_epoch=1, strategy=strategy,
                optimizer=lambda: tf_keras.optimizers.SGD(0.01),
                init=lambda m: None, precision=lambda: None,
                callbacks=[record2])  # resumes from ckpt-1
  teacher = holder['model'].teacher_network.weights
  with open(out_path, 'w') as f:
    json.dump({'logs': first_logs + record2.logs,
               'ema_errors': errors, 'student_moved': moved,
               'num_trainable': len(errors),
               'replicas_agree': _replicas_agree(teacher),
               'teacher_finite': all(bool(np.all(np.isfinite(v.numpy())))
                                     for v in teacher),
               'ema_started': float(holder['model'].ema_started.numpy())}, f)


if __name__ == '__main__':
  main(sys.argv[1], sys.argv[2])
