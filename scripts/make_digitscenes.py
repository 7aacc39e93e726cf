r"""Generates the DigitScenes dataset (see st_tf/datasets/digitscenes/scenes.py).

  python scripts/make_digitscenes.py --output_dir=/tmp/digitscenes

Writes ``{labeled,unlabeled,val[,test]}-*.tfrecord`` shards, ``<split>.json`` COCO
annotations and the ``digitscenes.json`` metadata file. With
``--num_classification=N`` it also writes the backbone pre-training parts
(st_tf/datasets/digitscenes/classification.py): ``classification-*.tfrecord``
(N single-digit 64x64 crops), ``classification_val-*.tfrecord`` and
``classification.json``.
"""
import os
import sys

# Runnable as `python scripts/make_digitscenes.py` from a source checkout.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from st_tf.datasets.digitscenes import scenes as digitscenes
from st_tf.datasets.digitscenes import (
    classification as digitscenes_classification)

_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir', None, 'Folder to write the dataset to.', required=True)
_LAYOUT = flags.DEFINE_enum(
    'layout', digitscenes.DEFAULT_LAYOUT, sorted(digitscenes.LAYOUTS),
    'Which digit pool each split draws from: v2 = small labeled pool, 4.5x '
    'larger unlabeled pool, val and test pools (the self-training demos); '
    'v1 = labeled and unlabeled share a pool, no test split.')
_NUM_LABELED = flags.DEFINE_integer(
    'num_labeled', None, 'Labeled scenes (default: the layout\'s).')
_NUM_UNLABELED = flags.DEFINE_integer(
    'num_unlabeled', None,
    'Unlabeled scenes (labels are kept in the records for evaluation).')
_NUM_VAL = flags.DEFINE_integer('num_val', None, 'Validation scenes.')
_NUM_TEST = flags.DEFINE_integer('num_test', None,
                                 'Test scenes (layout v2 only).')
_SEED = flags.DEFINE_integer('seed', 0, 'Random seed (>= 0).')
_NUM_SHARDS = flags.DEFINE_integer(
    'num_shards', 4, 'Maximum number of TFRecord shards per split.')
_NUM_WORKERS = flags.DEFINE_integer(
    'num_workers', None, 'Writer processes (default: automatic).')
_IMAGE_FORMAT = flags.DEFINE_enum(
    'image_format', 'jpeg', ['jpeg', 'png'],
    'Image encoding in the records (masks are always PNG).')
_WRITE_IMAGES = flags.DEFINE_bool(
    'write_images', False, 'Also write PNG files under <output_dir>/images/.')
_NUM_CLASSIFICATION = flags.DEFINE_integer(
    'num_classification', 0,
    'Single-digit classification crops for backbone pre-training (0 = skip).')
_NUM_CLASSIFICATION_VAL = flags.DEFINE_integer(
    'num_classification_val', digitscenes_classification.DEFAULT_NUM_VAL,
    'Held-out classification crops (top-1), when --num_classification > 0.')


def main(argv):
  del argv
  paths = digitscenes.generate(
      _OUTPUT_DIR.value, num_labeled=_NUM_LABELED.value,
      num_unlabeled=_NUM_UNLABELED.value, num_val=_NUM_VAL.value,
      num_test=_NUM_TEST.value, layout=_LAYOUT.value, seed=_SEED.value, num_shards=_NUM_SHARDS.value,
      num_workers=_NUM_WORKERS.value, image_format=_IMAGE_FORMAT.value,
      write_images=_WRITE_IMAGES.value)
  meta = digitscenes.load_metadata(_OUTPUT_DIR.value)
  print(f'DigitScenes written to {_OUTPUT_DIR.value}')
  for split, files in paths.items():
    print(f'  {split}: {meta["splits"][split]["num_examples"]} scenes in '
          f'{len(files)} shards, COCO annotations {split}.json')
  if _NUM_CLASSIFICATION.value > 0:
    parts = digitscenes_classification.generate_classification(
        _OUTPUT_DIR.value, num_train=_NUM_CLASSIFICATION.value,
        num_val=_NUM_CLASSIFICATION_VAL.value, seed=_SEED.value,
        num_shards=_NUM_SHARDS.value, num_workers=_NUM_WORKERS.value,
        image_format=_IMAGE_FORMAT.value)
    meta = digitscenes_classification.load_classification_metadata(
        _OUTPUT_DIR.value)
    for split, files in parts.items():
      print(f'  {split}: {meta["splits"][split]["num_examples"]} crops in '
            f'{len(files)} shards')


if __name__ == '__main__':
  app.run(main)
