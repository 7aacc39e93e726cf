"""Shared (module-scoped) data and teachers for the pseudo-label tests."""
import os

import pytest

from st_tf.export import saved_model
from tests.pseudo_label import tiny


@pytest.fixture(scope='package')
def unlabeled(tmp_path_factory):
  """10 DigitScenes unlabeled scenes (64 px, with ground truth) in 3 files."""
  return tiny.make_unlabeled(str(tmp_path_factory.mktemp('data')), 10, 3)


@pytest.fixture(scope='package')
def detection_teacher_dir(tmp_path_factory):
  """Trainer-style model_dir holding a tiny RetinaNet checkpoint (step 7)."""
  model_dir = str(tmp_path_factory.mktemp('teacher'))
  tiny.save_checkpoint(tiny.teacher_model(), model_dir, step=7)
  return model_dir


@pytest.fixture(scope='package')
def detection_saved_model(tmp_path_factory):
  """The tiny RetinaNet exported by st_tf.export.saved_model."""
  export_dir = os.path.join(str(tmp_path_factory.mktemp('export')), '1')
  return saved_model.export_saved_model(
      tiny.detection_model(nms_version='batched',
                           pre_nms_score_threshold=0.3),
      export_dir, input_size=(tiny.SIZE, tiny.SIZE), task='detection')
