"""Shared (package-scoped) tiny data and teachers for the mean-teacher tests."""
import pytest

from tests.pseudo_label import tiny


@pytest.fixture(scope='package')
def unlabeled(tmp_path_factory):
  """6 DigitScenes unlabeled scenes (64 px, with ground truth), one file."""
  return tiny.make_unlabeled(str(tmp_path_factory.mktemp('mt_data')), 6, 1)
