"""A teacher that finds nothing: warned, or refused and never marked done."""
import functools
import logging

import pytest
import tensorflow as tf

from st_tf.pseudo_label import runner
from st_tf.pseudo_label import teacher as teacher_lib
from st_tf.pseudo_label import writer
from st_tf.self_train import stages
from tests.pseudo_label import tiny


def _run(out, pattern, model_dir, **kwargs):
  return runner.pseudo_label(
      output_dir=out, input_pattern=pattern, num_classes=tiny.NUM_CLASSES,
      teacher=functools.partial(teacher_lib.checkpoint_teacher,
                                model_dir=model_dir,
                                model=tiny.detection_model),
      batch_size=4, gallery_size=0, quality=False, **kwargs)


def _one_file(unlabeled):
  return sorted(tf.io.gfile.glob(unlabeled))[0]


def test_no_image_written_is_refused_and_stays_incomplete(
    tmp_path, unlabeled, detection_teacher_dir):
  out = str(tmp_path / 'out')
  for _ in range(2):  # The rerun fails the same way, with the fix.
    with pytest.raises(writer.EmptyPseudoLabelsError,
                       match='wrote no image.*keep_empty_images=True'):
      _run(out, _one_file(unlabeled), detection_teacher_dir,
           score_threshold=1.0, keep_empty_images=False)
  assert not writer.read_json(writer.manifest_path(out, 0, 1))['complete']
  assert not stages.pseudo_labels_complete(out)


def test_nothing_found_warns_or_is_refused_by_threshold(
    tmp_path, unlabeled, detection_teacher_dir, caplog):
  out = str(tmp_path / 'out')
  with caplog.at_level(logging.WARNING):
    manifest = _run(out, _one_file(unlabeled), detection_teacher_dir,
                    score_threshold=1.0)
  assert manifest['complete'] and manifest['totals']['images_out'] > 0
  assert 'will train as background' in caplog.text
  with pytest.raises(writer.EmptyPseudoLabelsError,
                     match='min_labels_per_image=0.5'):
    _run(str(tmp_path / 'strict'), _one_file(unlabeled),
         detection_teacher_dir, score_threshold=1.0, min_labels_per_image=0.5)
  assert not stages.pseudo_labels_complete(str(tmp_path / 'strict'))
