r"""Input throughput: our human+pseudo pipeline vs Model Garden's RetinaNet one.

Both sides read the same DigitScenes records with the same policy (S4:
RandAugment 2 layers magnitude 10 + flip + scale jitter [0.5, 2.0]) at the
same output size and anchors:

* ours: `pipeline.build_self_training_dataset` (CombinationDatasetInputReader,
  `DetectionDecoder` + `DetectionParser`), human = labeled split, pseudo =
  unlabeled split, uint8 images;
* Model Garden: `official.core.input_reader.InputReader` with
  `TfExampleDecoder` + `retinanet_input.Parser` (float32 images) on the
  labeled split.

Images/s are measured after warm-up, one after the other in one process.

  python scripts/bench_input_pipeline.py --data_dir=/tmp/digitscenes
  python scripts/bench_input_pipeline.py   # generates small records first
"""
from __future__ import annotations

import os
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
from official.core import config_definitions as cfg
from official.core import input_reader as core_reader
from official.vision.configs import common as vision_cfg
from official.vision.dataloaders import retinanet_input
from official.vision.dataloaders import tf_example_decoder

from st_tf.data import decoders
from st_tf.datasets.digitscenes import scenes as digitscenes
from st_tf.data import parsers
from st_tf.data import pipeline
from st_tf.modeling import anchors

_DATA_DIR = flags.DEFINE_string(
    'data_dir', None, 'DigitScenes folder (digitscenes.generate output); '
    'default: generate a small one in a temporary folder.')
_SIZE = flags.DEFINE_integer('image_size', 128, 'Output size (square).')
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Images per batch (ours: '
                              'half human, half pseudo).')
_IMAGES = flags.DEFINE_integer('num_images', 512, 'Images timed per side.')
_WARMUP = flags.DEFINE_integer('warmup_batches', 20, 'Untimed batches.')
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'Alternating rounds per side; '
                               'the median is reported.')
_VALIDATE = flags.DEFINE_bool('validate', True, 'Our decoder validates '
                              'records (the default in training).')

# One anchor object for both sides (Model Garden's defaults, levels 3-7).
_ANCHORS = anchors.AnchorSpec()
_RANDAUG = dict(num_layers=2, magnitude=10., cutout_const=40.,
                translate_const=100.)


def _ours(data_dir: str) -> tf.data.Dataset:
  size = _SIZE.value
  policy = parsers.augment.randaugment_large_jitter(**_RANDAUG)
  parser = parsers.DetectionParser(output_size=(size, size), policy=policy,
                                   anchors=_ANCHORS)
  half = _BATCH.value // 2
  return pipeline.build_self_training_dataset(
      human_file_pattern=digitscenes.file_pattern(data_dir, 'labeled'),
      pseudo_file_pattern=digitscenes.file_pattern(data_dir, 'unlabeled'),
      parser=parser,
      decoder=decoders.DetectionDecoder(digitscenes.NUM_CLASSES,
                                        validate=_VALIDATE.value),
      human_batch_size=half, pseudo_batch_size=_BATCH.value - half)


def _model_garden(data_dir: str) -> tf.data.Dataset:
  size = _SIZE.value
  aug = vision_cfg.Augmentation(
      type='randaug', randaug=vision_cfg.RandAugment(**_RANDAUG))
  parser = retinanet_input.Parser(
      output_size=[size, size], aug_type=aug, aug_rand_hflip=True,
      aug_scale_min=0.5, aug_scale_max=2.0, dtype='float32',
      **_ANCHORS.model_garden_kwargs())
  params = cfg.DataConfig(
      input_path=digitscenes.file_pattern(data_dir, 'labeled'),
      global_batch_size=_BATCH.value, is_training=True,
      shuffle_buffer_size=1000)
  reader = core_reader.InputReader(
      params, decoder_fn=tf_example_decoder.TfExampleDecoder().decode,
      parser_fn=parser.parse_fn(True))
  return reader.read()


def _images_per_second(dataset: tf.data.Dataset) -> float:
  iterator = iter(dataset)
  for _ in range(_WARMUP.value):
    next(iterator)
  num_batches = max(1, _IMAGES.value // _BATCH.value)
  start = time.perf_counter()
  for _ in range(num_batches):
    images, _ = next(iterator)
  _ = images.numpy()
  return num_batches * _BATCH.value / (time.perf_counter() - start)


def main(_) -> None:
  data_dir = _DATA_DIR.value
  if data_dir is None:
    data_dir = os.path.join(tempfile.mkdtemp(), 'digitscenes')
    digitscenes.generate(data_dir, num_labeled=256, num_unlabeled=256,
                         num_val=16, seed=0, num_shards=2)
  sides = (('ours (human+pseudo)', _ours),
           ('Model Garden RetinaNet', _model_garden))
  results = {name: [] for name, _ in sides}
  for _ in range(_ROUNDS.value):  # alternate: the machine load drifts
    for name, build in sides:
      start = time.perf_counter()
      results[name].append(_images_per_second(build(data_dir)))
      print(f'{name}: {results[name][-1]:.1f} images/s (build + warm-up + '
            f'timing {time.perf_counter() - start:.0f} s)', flush=True)
  ours, mg = (float(np.median(r)) for r in results.values())
  print(f'median ours: {ours:.1f} images/s, Model Garden: {mg:.1f} images/s')
  print(f'ratio ours / Model Garden: {ours / mg:.2f} '
        f'({_IMAGES.value} images per round, {_ROUNDS.value} rounds, batch '
        f'{_BATCH.value}, {_SIZE.value}px, S4; shared machine: noisy)')


if __name__ == '__main__':
  app.run(main)
