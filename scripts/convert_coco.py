r"""COCO JSON + image folder -> detection TFRecords (st_tf / Model Garden schema).

A thin wrapper over Model Garden's `official/vision/data/create_coco_tf_record`
(same flags, same tf.Examples: its schema is ours) that writes through
`st_tf.data.sharded_writer.write_sharded` for atomic shards, a progress bar
and a final count. Class ids are the COCO category ids (>= 1). The
category names go into ``<output_file_prefix>.metadata.json`` beside the
shards (`st_tf/data/metadata.py`).

  python -m scripts.convert_coco --image_dir=/data/coco/train2017 \
    --object_annotations_file=/data/coco/annotations/instances_train2017.json \
    --output_file_prefix=/data/tfrecords/coco_train --num_shards=64 \
    --num_processes=8
"""
from __future__ import annotations

from typing import Optional, Sequence

from absl import app
from absl import flags
import tensorflow as tf
# Importing it defines its flags (image_dir, object_annotations_file,
# output_file_prefix, num_shards, num_processes, include_masks); we reuse them.
from official.vision.data import create_coco_tf_record as mg_coco

from st_tf.data import metadata
from st_tf.data import sharded_writer

FLAGS = flags.FLAGS


def make_example(item: tuple) -> tf.train.Example:
  """One `generate_annotations` tuple -> tf.Example (module level: picklable)."""
  example, _ = mg_coco.create_tf_example(*item)
  return example


def convert(annotations_file: str,
            image_dirs: Sequence[str],
            output_prefix: str,
            num_shards: int = 1,
            num_workers: Optional[int] = None,
            include_masks: bool = False) -> sharded_writer.WriteResult:
  """Converts a COCO instances JSON to sharded detection TFRecords.

  Args:
    annotations_file: COCO instances JSON (images, annotations, categories).
    image_dirs: folders holding the images named by ``file_name``.
    output_prefix: shards are ``<prefix>-0000i-of-0000n.tfrecord``.
    num_shards: number of shards.
    num_workers: writer processes (see `write_sharded`).
    include_masks: also store PNG instance masks.

  Returns:
    What was written (paths and counts); the category names are in
    `metadata.metadata_path(output_prefix)`.
  """
  if not tf.io.gfile.exists(annotations_file):
    raise ValueError(f'COCO annotations file not found: {annotations_file}')
  image_dirs = [image_dirs] if isinstance(image_dirs, str) else list(image_dirs)
  for d in image_dirs:
    if not tf.io.gfile.isdir(d):
      raise ValueError(f'COCO image folder not found: {d}')
  images = mg_coco._load_images_info(annotations_file)  # pylint: disable=protected-access
  img_to_obj, id_to_name = mg_coco._load_object_annotations(  # pylint: disable=protected-access
      annotations_file)
  items = list(mg_coco.generate_annotations(
      images=images, image_dirs=image_dirs, img_to_obj_annotation=img_to_obj,
      id_to_name_map=id_to_name, include_masks=include_masks))
  result = sharded_writer.write_sharded(
      items, make_example, output_prefix, num_shards=num_shards,
      num_workers=num_workers, desc='coco')
  metadata.write_metadata(
      output_prefix, task='detection', category_names=id_to_name,
      num_examples=result.num_written, files=result.paths,
      source=annotations_file)
  return result


def main(argv: Sequence[str]) -> None:
  del argv
  if not FLAGS.image_dir or not FLAGS.object_annotations_file:
    raise app.UsageError('--image_dir and --object_annotations_file are '
                         'required.')
  convert(FLAGS.object_annotations_file, FLAGS.image_dir,
          FLAGS.output_file_prefix, num_shards=FLAGS.num_shards,
          num_workers=FLAGS.num_processes, include_masks=FLAGS.include_masks)


if __name__ == '__main__':
  app.run(main)
