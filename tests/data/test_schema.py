"""Schema writer sanity checks (decoder round trips live in test_decoders.py)."""
import numpy as np
import pytest

from st_tf.data import schema


def test_pseudo_example_has_score_and_teacher():
  ex = schema.detection_example(
      np.zeros((8, 8, 3), np.uint8), [[0.1, 0.2, 0.5, 0.6]], [3], 'a',
      scores=[0.9], teacher_id='teacher-1')
  feats = ex.features.feature
  assert feats[schema.TEACHER_ID].bytes_list.value == [b'teacher-1']
  assert feats[schema.SCORE].float_list.value == pytest.approx([0.9])
  assert schema.is_pseudo_example(ex)


def test_scores_use_model_gardens_confidence_key():
  ex = schema.detection_example(
      np.zeros((8, 8, 3), np.uint8), [[0.1, 0.2, 0.5, 0.6]], [3], 'a',
      scores=[0.9], teacher_id='teacher-1')
  assert schema.SCORE == 'image/object/bbox/confidence'
  assert schema.SCORE in ex.features.feature
  assert schema.LEGACY_SCORE not in ex.features.feature


def test_human_example_is_not_pseudo():
  ex = schema.detection_example(np.zeros((8, 8, 3), np.uint8), [], [], 'a')
  assert not schema.is_pseudo_example(ex)


def test_pseudo_without_scores_rejected():
  with pytest.raises(ValueError, match='scores'):
    schema.detection_example(np.zeros((8, 8, 3), np.uint8), [[0, 0, 1, 1]],
                             [1], 'a', teacher_id='t')
