"""Shared pytest fixtures: quiet TF, a clean gin config per test."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import gin  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _clear_gin():
  """Every test starts and ends with an empty gin config."""
  gin.clear_config()
  yield
  gin.clear_config()


# The slowest test files (CPU seconds of a full run, 2026-12-03), run
# first so that `-n 2 --dist loadfile` (with --no-loadscope-reorder, see
# pyproject.toml) does not leave one worker alone with a long file at the
# end. The rest keep their collection order.
_SLOW_FILES_FIRST = (
    'tests/e2e/test_own_data_detection.py',
    'tests/e2e/test_own_data_segmentation.py',
    'tests/pseudo_label/test_mg_teacher.py',
    'tests/self_train/test_runner.py',
    'tests/self_train/test_sigkill.py',
    'tests/export/test_saved_model.py',
    'tests/mean_teacher/test_detection_step.py',
    'tests/pseudo_label/test_runner.py',
    'tests/export/test_category_names.py',
    'tests/pseudo_label/test_runner_quality.py',
    'tests/data/test_pipeline.py',
    'tests/mean_teacher/test_segmentation_step.py',
    'tests/self_train/test_runner_remote.py',
    'tests/pseudo_label/test_teacher.py',
    'tests/pseudo_label/test_auto_threshold.py',
    'tests/test_model.py',
    'tests/test_main.py',
)


def pytest_collection_modifyitems(items):
  """Slow files first (a stable sort: each file's tests stay together)."""
  rank = {path: i for i, path in enumerate(_SLOW_FILES_FIRST)}
  items.sort(key=lambda item: rank.get(
      item.nodeid.split('::', 1)[0], len(rank)))
