r"""Student train_step throughput vs Model Garden's RetinaNetTask.train_step.

Both sides train the same architecture (the DigitScenes tiny RetinaNet of
gin/models/digitscenes_tiny_detection.gin) with SGD + momentum on the same
total batch, taken once from our pipeline and kept in memory, so only the
step itself is timed (forward, losses, backward, apply, metrics):

* ours: `SelfTrainingModel.train_step` with the paper's `normalized`
  combiner, the batch split half human / half pseudo (`is_pseudo`);
* Model Garden: `RetinaNetTask.train_step` on the same images (normalized to
  float, as its parser emits them) and labels.

Each side is compiled with `tf.function`, warmed up, then timed over
`--steps` steps in alternating rounds (to share the machine's noise). Prints
examples/s for both and our time per step as a ratio of theirs.

  python scripts/bench_train_step.py [--batch_size=16 --steps=50 --rounds=3]
"""
import time

from absl import app
from absl import flags
import gin
import numpy as np
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.vision.ops import preprocess_ops
import st_tf.main as st_main
from st_tf.data import digitscenes

_BATCH = flags.DEFINE_integer('batch_size', 16, 'Total batch (both sides).')
_STEPS = flags.DEFINE_integer('steps', 50, 'Timed steps per round.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Alternating timing rounds.')
_DATA_DIR = flags.DEFINE_string('data_dir', 'data/digitscenes',
                                'DigitScenes folder (made if missing).')

_GIN = 'gin/demo/digitscenes_teacher_detection.gin'


def _batch(data_dir: str, batch_size: int):
  """One training batch (uint8 images, labels) from our pipeline."""
  digitscenes.ensure_digitscenes(data_dir, num_labeled=1000, num_val=500)
  from st_tf.data import pipeline  # pylint: disable=g-import-not-at-top
  dataset = pipeline.build_dataset(
      file_pattern=f'{data_dir}/labeled-*',
      parser=gin.get_configurable('train/DetectionParser')(),
      decoder=gin.get_configurable('DetectionDecoder')(),
      global_batch_size=batch_size, is_training=True, seed=0)
  images, labels = next(iter(dataset))
  half = batch_size // 2
  labels['is_pseudo'] = tf.concat(
      [tf.zeros([half]), tf.ones([batch_size - half])], 0)
  return images, labels


def _ours(images, labels):
  """Our student step as a compiled function."""
  model = gin.get_configurable('SelfTrainingModel')()
  model.compile(optimizer=tf_keras.optimizers.SGD(0.01, momentum=0.9))
  model(images[:1], training=True)
  step = tf.function(model.train_step)
  return lambda: step((images, labels))


def _model_garden(images, labels):
  """Model Garden's RetinaNetTask.train_step on the same model and batch."""
  from mg_reference import mg_config  # pylint: disable=g-import-not-at-top  (same folder)
  config = exp_factory.get_exp_config('retinanet_resnetfpn_coco')
  config.override(mg_config('unused', 1, int(images.shape[0])),
                  is_strict=False)
  task = config.task
  from official.vision.tasks import retinanet  # pylint: disable=g-import-not-at-top
  task_obj = retinanet.RetinaNetTask(task)
  model = task_obj.build_model()
  optimizer = tf_keras.optimizers.SGD(0.01, momentum=0.9)
  metrics = task_obj.build_metrics(training=True)
  float_images = preprocess_ops.normalize_image(tf.cast(images, tf.float32))
  mg_labels = {k: v for k, v in labels.items()
               if k not in ('is_pseudo', 'num_boxes')}
  model(float_images[:1], training=True)
  step = tf.function(lambda: task_obj.train_step(
      (float_images, mg_labels), model, optimizer, metrics))
  return step


def _time(fn, steps: int) -> float:
  start = time.perf_counter()
  for _ in range(steps):
    out = fn()
  tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, 'numpy') else t,
                        out)
  return time.perf_counter() - start


def main(argv):
  del argv
  # The student's combiner: the paper's normalized loss.
  st_main.parse_config([_GIN], ['SelfTrainingModel.combiner = @normalized()'])
  images, labels = _batch(_DATA_DIR.value, _BATCH.value)
  sides = {'st_tf student train_step': _ours(images, labels),
           'Model Garden RetinaNetTask.train_step':
               _model_garden(images, labels)}
  for fn in sides.values():  # warm-up: trace + a few steps
    _time(fn, 5)
  seconds = {name: [] for name in sides}
  for _ in range(_ROUNDS.value):
    for name, fn in sides.items():
      seconds[name].append(_time(fn, _STEPS.value))
  n = _BATCH.value * _STEPS.value
  print(f'batch {_BATCH.value}, {_STEPS.value} steps x {_ROUNDS.value} '
        f'rounds, {tf.config.threading.get_intra_op_parallelism_threads()} '
        'intra-op threads (0 = all cores)')
  best = {}
  for name, secs in seconds.items():
    best[name] = min(secs)
    rates = ', '.join(f'{n / s:.1f}' for s in secs)
    print(f'{name:40s} examples/s per round: {rates}  (best {n / best[name]:.1f})')
  ours, theirs = best.values()
  print(f'time per step, ours / Model Garden: {ours / theirs:.3f}x '
        '(goal <= 1.05x)')


if __name__ == '__main__':
  app.run(main)
