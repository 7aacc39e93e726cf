"""tests/conftest.py's slow-files-first list names files that exist."""
import os

from tests import conftest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_slow_files_first_exist():
  missing = [p for p in conftest._SLOW_FILES_FIRST  # pylint: disable=protected-access
             if not os.path.isfile(os.path.join(_ROOT, p))]
  assert not missing, f'remove or rename in tests/conftest.py: {missing}'
