r"""Pseudo-labeling throughput and memory for the DigitScenes tiny detector.

  python scripts/bench_pseudo_label.py [--num_images=256] [--batch_size=16] \
      [--teacher_model_dir=/tmp/teacher] [--score_threshold=0.5]

Prints, in one run:

* pseudo-labeling images/s: decode + inference + NMS + box selection +
  record writing (the `pseudo_label` mode, end to end) with quality scoring
  OFF (`quality=False`: the goal's definition);
* the same with quality scoring ON, what a DigitScenes user gets by default
  (`quality='auto'` and the unlabeled split holds ground truth: per-image
  ground-truth parsing + quality rows), plus the seconds the job spends
  after its last shard on the quality table (COCO AP per threshold);
* the forward pass alone (backbone + decoder + head, no post-processing) at
  the same batch size on images already in memory: the ceiling;
* their ratios (goal >= 0.7 with quality off), for `--repeats` rounds of
  two 4N-image jobs (quality off, then on) followed by the ceiling over as
  many images, and the median ratios;
* the process CPU time per image of each (ms/img; all threads): less
  sensitive than img/s to other jobs sharing the machine;
* peak RSS after labeling N and after the 4N jobs (goal: flat), and the RSS
  at the first and last batch of a job (flat within a job).

Throughput is the steady state of a 4N-image job, from the end of its first
batch (functions traced) to its last shard written; the teacher is loaded
once. Without `--teacher_model_dir` the teacher is a randomly initialised
tiny model (gin/models/digitscenes_tiny_detection.gin) whose classifier is
randomized so that boxes pass the threshold (a fresh RetinaNet scores every
box ~0.01, which would leave NMS idle); the output says so.
"""
import functools
import os
import resource
import sys
import tempfile
import time
from typing import Tuple

# Runnable as `python scripts/bench_pseudo_label.py` from a source checkout.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import gin
import numpy as np
import tensorflow as tf

from st_tf import model as model_lib
from st_tf.datasets.digitscenes import scenes as digitscenes
from st_tf.losses import self_training
from st_tf.modeling import detection as detection_modeling
from st_tf.pseudo_label import runner
from st_tf.pseudo_label import teacher as teacher_lib

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NUM_IMAGES = flags.DEFINE_integer('num_images', 256, 'N (also runs 4N).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 16, 'Inference batch size.')
_TEACHER_DIR = flags.DEFINE_string(
    'teacher_model_dir', None, 'Trained teacher checkpoint dir (model from '
    '--model_gin); default: a random tiny model.')
_MODEL_GIN = flags.DEFINE_string(
    'model_gin', os.path.join(_REPO, 'gin/models/digitscenes_tiny_detection.gin'),
    'Gin file of the teacher network (build_retinanet).')
_SCORE = flags.DEFINE_float('score_threshold', 0.5, 'Pseudo-label threshold.')
_NMS = flags.DEFINE_string('nms_version', 'batched', 'Pseudo-label NMS.')
_WORK_DIR = flags.DEFINE_string('work_dir', None, 'Scratch folder.')
_REPEATS = flags.DEFINE_integer(
    'repeats', 3, '4N jobs, each followed by its ceiling measurement (the '
    'machine may be shared: the median ratio is reported).')


def _no_loss(outputs, labels, weight):
  del outputs, labels, weight
  return {'total': tf.constant(0.0)}


def _build_model(randomize: bool) -> model_lib.SelfTrainingModel:
  network = detection_modeling.build_retinanet()
  model = model_lib.SelfTrainingModel(
      network, _no_loss, self_training.get_combiner('human_only'))
  size = network.backbone.inputs[0].shape[1:3]
  model(tf.zeros([1, *size, 3], tf.uint8), training=False)
  if randomize:
    rng = np.random.default_rng(0)
    for var in network.head.trainable_variables:
      if var.name.endswith('scores/bias:0'):
        var.assign(rng.normal(-60.0, 0.5, var.shape).astype(np.float32))
      elif 'scores/' in var.name and 'kernel' in var.name:
        var.assign(rng.normal(0.0, 20.0, var.shape).astype(np.float32))
  return model


def _random_teacher_dir(work: str) -> str:
  model_dir = os.path.join(work, 'random_teacher')
  model = _build_model(randomize=True)
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=model, step=tf.Variable(0, dtype=tf.int64)),
      model_dir, max_to_keep=1, checkpoint_name='ckpt')
  manager.save(checkpoint_number=0)
  return model_dir


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_now_mb() -> float:
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def _forward_rate(forward, images: np.ndarray, batch_size: int,
                  num_images: int) -> Tuple[float, float]:
  """(images/s, CPU ms/image) of the network alone on in-memory images."""
  batches = [tf.constant(images[i:i + batch_size])
             for i in range(0, len(images) - batch_size + 1, batch_size)]
  tf.nest.map_structure(lambda t: t.numpy(), forward(batches[0]))  # Trace.
  steps = max(num_images // batch_size, 1)
  start, cpu = time.perf_counter(), time.process_time()
  for step in range(steps):
    out = forward(batches[step % len(batches)])
  tf.nest.map_structure(lambda t: t.numpy(), out)
  count = steps * batch_size
  return (count / (time.perf_counter() - start),
          1e3 * (time.process_time() - cpu) / count)


def main(argv):
  del argv
  n, batch = _NUM_IMAGES.value, _BATCH_SIZE.value
  work = _WORK_DIR.value or tempfile.mkdtemp(prefix='bench_pseudo_label_')
  gin.parse_config_files_and_bindings([_MODEL_GIN.value], [])
  size = digitscenes.IMAGE_SIZE
  data = {}
  for count in (n, 4 * n):
    folder = os.path.join(work, f'data_{count}')
    if not digitscenes.is_complete(folder, num_unlabeled=count):
      digitscenes.generate(folder, num_labeled=0, num_unlabeled=count,
                           num_val=0, num_shards=4, image_size=size)
    data[count] = digitscenes.file_pattern(folder, 'unlabeled')
  teacher_dir = _TEACHER_DIR.value or _random_teacher_dir(work)
  loaded = teacher_lib.checkpoint_teacher(
      model_dir=teacher_dir, model=functools.partial(_build_model, False))
  forward = tf.function(loaded.forward)
  images = np.stack([digitscenes.scene_for('unlabeled', i, 0, size)[0]
                     for i in range(max(4 * batch, 64))])

  events, rss_seen = [], []

  def on_event(kind, name):
    del name
    events.append((kind, time.perf_counter(), time.process_time()))
    rss_seen.append(_rss_now_mb())

  def label(count, quality):
    """One job over `count` images; returns (img/s, CPU ms/img, seconds
    after the last shard (quality table, manifest), manifest, RSS)."""
    events.clear()
    rss_seen.clear()
    manifest = runner.pseudo_label(
        output_dir=os.path.join(work, f'out_{count}_{time.time_ns()}'),
        input_pattern=data[count], teacher=loaded,
        num_classes=digitscenes.NUM_CLASSES, score_threshold=_SCORE.value,
        batch_size=batch, nms_version=_NMS.value, gallery_size=0,
        quality=quality, on_event=on_event)
    done = time.perf_counter()
    # Steady state: from the end of the first batch (tracing done) to the
    # end of the last shard.
    first = next(e for e in events if e[0] == 'batch')
    last = [e for e in events if e[0] == 'shard'][-1]
    return ((count - batch) / (last[1] - first[1]),
            1e3 * (last[2] - first[2]) / (count - batch), done - last[1],
            manifest, list(rss_seen))

  _, _, _, _, rss_small = label(n, 'auto')
  peak_small = _peak_rss_mb()
  rows = []
  for _ in range(_REPEATS.value):  # Jobs and ceiling back to back.
    off = label(4 * n, False)
    on = label(4 * n, 'auto')
    ceiling = _forward_rate(forward, images, batch, 4 * n)
    rows.append((off, on, ceiling))
  peak_large = _peak_rss_mb()
  rss_large = on[4]
  scored = 'quality' in on[3]

  totals = off[3]['totals']
  print('\n=== pseudo-label benchmark (DigitScenes tiny RetinaNet, '
        f'{size}x{size}, batch {batch}, {4 * n} images per job)')
  if _TEACHER_DIR.value:
    print(f'teacher: checkpoint {teacher_dir}')
  else:
    print('teacher: RANDOMLY INITIALISED tiny model, classifier randomized '
          'so that boxes pass the threshold (realistic NMS load); pass '
          '--teacher_model_dir for a trained one')
  print(f'score threshold {_SCORE.value}, nms_version {_NMS.value}; '
        f'{totals["labels_per_image"]:.1f} pseudo boxes / image kept')
  print(f'cores: {os.cpu_count()}, load average at the end: '
        f'{", ".join(f"{x:.1f}" for x in os.getloadavg())} (other jobs on '
        'the machine lower img/s; CPU ms/img is less sensitive)')
  for i, (off_row, on_row, (ceil_rate, ceil_cpu)) in enumerate(rows):
    print(f'[{i}] pseudo-labeling (decode+inference+NMS+write), quality '
          f'scoring OFF: {off_row[0]:7.1f} img/s | forward alone (ceiling): '
          f'{ceil_rate:7.1f} img/s | ratio {off_row[0] / ceil_rate:.2f}')
    print(f'[{i}] pseudo-labeling with quality scoring ON (DigitScenes '
          f'default{"" if scored else "; NO ground truth found"}): '
          f'{on_row[0]:7.1f} img/s | ratio {on_row[0] / ceil_rate:.2f}; '
          f'then {on_row[2]:.1f} s on the quality table after the last shard')
    print(f'[{i}] CPU ms/img: quality off {off_row[1]:.2f}, on '
          f'{on_row[1]:.2f}, forward alone {ceil_cpu:.2f} (CPU ratios '
          f'{ceil_cpu / off_row[1]:.2f} / {ceil_cpu / on_row[1]:.2f})')
  median = lambda values: sorted(values)[len(values) // 2]
  print('median ratio, quality scoring OFF (decode+inference+NMS+write): '
        f'{median([r[0][0] / r[2][0] for r in rows]):.2f} (goal >= 0.7)')
  print('median ratio, quality scoring ON (DigitScenes default): '
        f'{median([r[1][0] / r[2][0] for r in rows]):.2f}')
  print(f'peak RSS after {n:5d} images: {peak_small:8.1f} MB')
  print(f'peak RSS after {_REPEATS.value} x 2 x {4 * n} images: '
        f'{peak_large:8.1f} MB (+{peak_large - peak_small:.1f} MB; goal: '
        'flat)')
  print(f'RSS while labeling {n} images: {rss_small[0]:.1f} -> '
        f'{rss_small[-1]:.1f} MB; {4 * n} images (last job): '
        f'{rss_large[0]:.1f} -> {rss_large[-1]:.1f} MB (first -> last batch)')
  print(f'work dir: {work}')


if __name__ == '__main__':
  app.run(main)
