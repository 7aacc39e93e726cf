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

`--compare=mean_teacher` times the mean-teacher student's step against the
offline student's instead (issue 10), both from
gin/demo/digitscenes_detection_mean_teacher.gin's 'student' scope, on the
same batch of B/2 human images and B/2 unlabeled ones:

* offline: `SelfTrainingModel.train_step` on the B images, the unlabeled
  half labeled beforehand (what offline pseudo labels give it);
* mean teacher: `MeanTeacherModel.train_step`: the same student step plus
  the EMA teacher's forward pass on the weak views, the in-graph targets
  and the EMA update.

The teacher's boxes per image set the labeling cost: give a trained
detection checkpoint (`--init_checkpoint`, e.g. a self_train run's
round_0/teacher) to initialise both models (and the EMA); the untrained
default keeps ~no box. The boxes per image are printed.

  python scripts/bench_train_step.py --compare=mean_teacher \
      --init_checkpoint=runs/demo/round_0/teacher
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
from st_tf.datasets.digitscenes import scenes as digitscenes

_BATCH = flags.DEFINE_integer('batch_size', 16, 'Total batch (both sides).')
_STEPS = flags.DEFINE_integer('steps', 50, 'Timed steps per round.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Alternating timing rounds.')
_DATA_DIR = flags.DEFINE_string('data_dir', 'data/digitscenes',
                                'DigitScenes folder (made if missing).')

_COMPARE = flags.DEFINE_enum(
    'compare', 'model_garden', ['model_garden', 'mean_teacher'],
    'model_garden: our student step vs RetinaNetTask.train_step; '
    'mean_teacher: the mean-teacher step vs the offline student\'s.')
_INIT = flags.DEFINE_string(
    'init_checkpoint', None, '--compare=mean_teacher: a trained detection '
    'checkpoint (dir or prefix) for both models (the teacher\'s boxes per '
    'image set the labeling cost); default: untrained.')
_NUM_IMAGES = flags.DEFINE_integer(
    'num_images', 1000, 'Labeled (and, for mean_teacher, unlabeled) scenes '
    'generated when --data_dir lacks DigitScenes.')

_GIN = 'gin/demo/digitscenes_teacher_detection.gin'
_MT_GIN = 'gin/demo/digitscenes_detection_mean_teacher.gin'


def _batch(data_dir: str, batch_size: int):
  """One training batch (uint8 images, labels) from our pipeline."""
  if not digitscenes.is_complete(data_dir):  # Any finished copy will do.
    digitscenes.ensure_digitscenes(data_dir, num_labeled=_NUM_IMAGES.value,
                                   num_val=500)
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


def _mean_teacher_sides(data_dir: str, batch_size: int):
  """{'offline student train_step', 'mean-teacher train_step'} on one batch
  of batch_size / 2 human + batch_size / 2 unlabeled images (module doc)."""
  from st_tf import model as model_lib  # pylint: disable=g-import-not-at-top
  from st_tf.mean_teacher import model as mt_model  # pylint: disable=g-import-not-at-top
  from st_tf.training import init as init_lib  # pylint: disable=g-import-not-at-top
  if batch_size < 2 or batch_size % 2:
    raise app.UsageError(f'--batch_size={batch_size}: give an even number '
                         '>= 2 (half human, half unlabeled).')
  n = _NUM_IMAGES.value
  if not digitscenes.is_complete(data_dir):  # Any finished copy will do.
    digitscenes.ensure_digitscenes(data_dir, num_labeled=n, num_unlabeled=n,
                                   num_val=50)
  st_main.parse_config([_MT_GIN], [
      f"LABELED_PATTERN = '{data_dir}/labeled-*'",
      f"UNLABELED_PATTERN = '{data_dir}/unlabeled-*'",
      f'BATCH_SIZE = {batch_size // 2}'])
  with gin.config_scope('student'):
    mean_teacher = mt_model.MeanTeacherModel()
    offline = model_lib.SelfTrainingModel()
    data = gin.get_configurable('build_mean_teacher_dataset')()
  (images, labels), views = next(iter(data))
  offline(images[:1], training=True)
  for model in (mean_teacher, offline):
    if _INIT.value:
      init_lib.initialize_model(model, 'full', _INIT.value)
    model.compile(optimizer=tf_keras.optimizers.SGD(0.01, momentum=0.9))
  # The offline batch: the same images, the unlabeled half labeled by the
  # (initial) teacher as pseudo labels, `is_pseudo` set.
  mean_teacher.start_teacher(tf.constant(1.0))
  all_images, all_labels, weights, pseudo = mean_teacher._batch(  # pylint: disable=protected-access
      images, labels, views, tf.constant(1.0))
  all_labels['is_pseudo'] = weights[1]
  print('teacher boxes per unlabeled image: '
        f'{float(tf.reduce_mean(tf.cast(pseudo["num_boxes"], tf.float32))):.2f}')
  offline_step = tf.function(offline.train_step)
  mt_step = tf.function(mean_teacher.train_step)
  return {'mean-teacher train_step': lambda: mt_step(((images, labels),
                                                      views)),
          'offline student train_step':
              lambda: offline_step((all_images, all_labels))}


def _model_garden_sides(data_dir: str, batch_size: int):
  """{'st_tf student train_step', 'Model Garden ...'} (module doc)."""
  # The student's combiner: the paper's normalized loss.
  st_main.parse_config([_GIN], ['SelfTrainingModel.combiner = @normalized()'])
  images, labels = _batch(data_dir, batch_size)
  return {'st_tf student train_step': _ours(images, labels),
          'Model Garden RetinaNetTask.train_step':
              _model_garden(images, labels)}


def _time(fn, steps: int) -> float:
  start = time.perf_counter()
  for _ in range(steps):
    out = fn()
  tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, 'numpy') else t,
                        out)
  return time.perf_counter() - start


def main(argv):
  del argv
  make_sides = (_mean_teacher_sides if _COMPARE.value == 'mean_teacher'
                else _model_garden_sides)
  sides = make_sides(_DATA_DIR.value, _BATCH.value)
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
  (first, ours), (second, theirs) = best.items()
  goal = ' (goal <= 1.05x)' if _COMPARE.value == 'model_garden' else ''
  print(f'time per step, {first} / {second}: {ours / theirs:.3f}x{goal}')


if __name__ == '__main__':
  app.run(main)
