"""Resume accepts the same input files spelled relative or absolute."""
import os

from st_tf.pseudo_label import runner
from tests.pseudo_label import pixel_teacher


def test_rerun_with_absolute_spelling_resumes(tmp_path, monkeypatch):
  os.makedirs(tmp_path / 'in')
  pixel_teacher.write_records(
      str(tmp_path / 'in' / 'x.tfrecord'),
      [pixel_teacher.random_image(32, 32, seed=i) for i in range(3)])
  monkeypatch.chdir(tmp_path)
  events = []

  def label(pattern):
    return runner.pseudo_label(
        output_dir='out', input_pattern=pattern,
        teacher=pixel_teacher.PixelTeacher((32, 32)),
        num_classes=pixel_teacher.NUM_CLASSES, batch_size=2, gallery_size=0,
        quality=False, on_event=lambda kind, name: events.append(kind))

  label('in/*.tfrecord')
  assert 'shard' in events
  events.clear()
  manifest = label(str(tmp_path / 'in' / '*.tfrecord'))  # Not "other settings".
  assert manifest['complete'] and not events  # Nothing relabeled.
  assert manifest['settings']['input_files'] == [
      str(tmp_path / 'in' / 'x.tfrecord')]
