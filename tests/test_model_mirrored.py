"""SelfTrainingModel.fit under MirroredStrategy (2 logical CPUs).

One replica's batch holds no pseudo example. Runs tests/mirrored_worker.py
in its own process (logical devices are set before TensorFlow starts).
"""
import json
import os
import subprocess
import sys

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_global_loss_and_moving_averages_under_mirrored_strategy(tmp_path):
  out = str(tmp_path / 'result.json')
  env = dict(os.environ, PYTHONPATH=_ROOT, CUDA_VISIBLE_DEVICES='')
  proc = subprocess.run(
      [sys.executable, '-m', 'tests.mirrored_worker', str(tmp_path), out],
      cwd=_ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out) as f:
    result = json.load(f)
  got, expected = result['got'], result['expected']
  # The moving averages are the cross-replica means of the present parts.
  np.testing.assert_allclose([got['m_h'], got['m_p']],
                             [expected['m_h'], expected['m_p']], rtol=1e-5)
  # One SGD step = the gradient of the paper's loss over the global batch:
  # the replica without pseudo examples weighs its human loss like the
  # others, 1 / (1 + a), not 1.
  for g, e in zip(got['weights'], expected['weights']):
    np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
  # m_h, m_p (and their started flags) survive the trainer's checkpoint.
  np.testing.assert_allclose(result['restored'], result['saved'], rtol=1e-6)
  assert result['saved'][0] != result['expected']['m_h']  # Moved on.
