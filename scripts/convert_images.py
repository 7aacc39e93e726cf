r"""A folder of images (recursive; jpg, jpeg, png) -> unlabeled TFRecords.

Images are stored as they are (no re-encoding). Files that fail to decode are
skipped, counted, and named in the log. The source id is the path relative to
the folder.

  python -m scripts.convert_images --image_dir=/data/unlabeled \
    --output_prefix=/data/tfrecords/unlabeled --num_shards=16
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence

from absl import app
from absl import flags
import tensorflow as tf

from st_tf.data import schema
from st_tf.data import sharded_writer

FLAGS = flags.FLAGS
EXTENSIONS = ('.jpg', '.jpeg', '.png')


def define_flags() -> None:
  """Defines this script's flags (only when run as a script)."""
  flags.DEFINE_string('image_dir', None, 'Folder searched recursively.')
  flags.DEFINE_string('output_prefix', None, 'Output shard path prefix.')
  flags.DEFINE_integer('num_shards', 4, 'Number of output shards.')
  flags.DEFINE_integer('num_workers', None, 'Writer processes.')


def list_images(image_dir: str) -> List[tuple]:
  """Sorted (path, relative path) of the images under `image_dir`."""
  if not tf.io.gfile.isdir(image_dir):
    raise ValueError(f'image folder not found: {image_dir}')
  items = []
  for root, _, names in tf.io.gfile.walk(image_dir):
    for name in names:
      if name.lower().endswith(EXTENSIONS):
        path = os.path.join(root, name)
        items.append((path, os.path.relpath(path, image_dir)))
  if not items:
    raise ValueError(f'no {"/".join(EXTENSIONS)} images under {image_dir}')
  return sorted(items)


def make_example(item: tuple) -> tf.train.Example:
  """(path, source id) -> unlabeled tf.Example; SkipItem if undecodable."""
  path, source_id = item
  try:
    with open(path, 'rb') as f:
      encoded = f.read()
    tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return schema.unlabeled_example(encoded, source_id)
  except Exception as e:  # pylint: disable=broad-except
    raise sharded_writer.SkipItem(
        f'{path}: failed to decode ({type(e).__name__}: '
        f'{getattr(e, "message", str(e)).strip()[:200]})') from e


def convert(image_dir: str,
            output_prefix: str,
            num_shards: int = 1,
            num_workers: Optional[int] = None) -> sharded_writer.WriteResult:
  """Converts every image under `image_dir` to sharded unlabeled TFRecords."""
  return sharded_writer.write_sharded(
      list_images(image_dir), make_example, output_prefix,
      num_shards=num_shards, num_workers=num_workers, desc='images')


def main(argv: Sequence[str]) -> None:
  del argv
  if not FLAGS.image_dir or not FLAGS.output_prefix:
    raise app.UsageError('--image_dir and --output_prefix are required.')
  convert(FLAGS.image_dir, FLAGS.output_prefix, num_shards=FLAGS.num_shards,
          num_workers=FLAGS.num_workers)


if __name__ == '__main__':
  define_flags()
  app.run(main)
