"""gin/demo/digitscenes_smoke.gin with its data in a temporary folder."""
import os

from st_tf import main

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SMOKE_GIN = os.path.join(_ROOT, 'gin', 'demo', 'digitscenes_smoke.gin')
# Bindings that drop the held-out test split (and its eval stages).
NO_TEST_SPLIT = ('self_train.test_dataset = None',
                 'self_train.test_metric_fn = None')


def data_bindings(data: str) -> list:
  """Bindings that put every split of the smoke data under `data`."""
  return [f"SMOKE_DATA_DIR = '{data}'",
          f"LABELED_PATTERN = '{data}/labeled-*'",
          f"UNLABELED_PATTERN = '{data}/unlabeled-*'",
          f"VAL_PATTERN = '{data}/val-*'",
          f"VAL_ANNOTATIONS = '{data}/val.json'",
          f"TEST_PATTERN = '{data}/test-*'",
          f"TEST_ANNOTATIONS = '{data}/test.json'"]


def parse(data: str, *bindings: str) -> None:
  """Parses the smoke config with its data in `data` (+ `bindings`)."""
  main.parse_config([SMOKE_GIN], data_bindings(data) + list(bindings))
