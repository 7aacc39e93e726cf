"""Pseudo-labeling with inputs, teacher checkpoint and output on ram://."""
import functools

import tensorflow as tf

from st_tf.pseudo_label import runner
from st_tf.pseudo_label import teacher as teacher_lib
from st_tf.pseudo_label import writer
from tests import ram
from tests.pseudo_label import pixel_teacher
from tests.pseudo_label import tiny


def test_pseudo_label_from_and_to_ram(tmp_path):
  inputs, out, model_dir = (ram.folder('in'), ram.folder('out'),
                            ram.folder('teacher'))
  tf.io.gfile.makedirs(inputs)
  ids = pixel_teacher.write_records(
      f'{inputs}/x-00000.tfrecord',
      [pixel_teacher.random_image(64, 64, seed=i) for i in range(3)])
  tiny.save_checkpoint(tiny.segmentation_model(), model_dir, step=3)
  events = []

  def label():
    return runner.pseudo_label(
        output_dir=out, input_pattern=f'{inputs}/*.tfrecord',
        teacher=functools.partial(teacher_lib.checkpoint_teacher,
                                  model_dir=model_dir,
                                  model=tiny.segmentation_model),
        num_classes=tiny.NUM_CLASSES, batch_size=2, gallery_size=1,
        quality=False, on_event=lambda kind, name: events.append(kind))

  manifest = label()
  assert manifest['teacher_id'].endswith('@step=3')
  assert manifest['settings']['input_files'] == [f'{inputs}/x-00000.tfrecord']
  got = tiny.source_ids(tiny.read_records(writer.file_pattern(out)))
  assert got == sorted(ids)
  assert tf.io.gfile.exists(f'{out}/gallery-00000.png')
  events.clear()
  assert label()['complete'] and not events  # The rerun skips every shard.
