"""The detection mean-teacher train step under MirroredStrategy (2 logical
CPUs), through the trainer: finite losses, the EMA updated, replicas in
sync. Runs tests/mean_teacher/mirrored_worker.py in its own process
(logical devices are set before TensorFlow starts)."""
import pytest
import json
import math
import os
import subprocess
import sys

# Slow (> 1 min of CPU): not in the default run (pyproject addopts);
# `python -m pytest -m slow tests` runs them.
pytestmark = pytest.mark.slow

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def test_mean_teacher_step_under_mirrored_strategy(tmp_path):
  out = str(tmp_path / 'result.json')
  env = dict(os.environ, PYTHONPATH=_ROOT, CUDA_VISIBLE_DEVICES='')
  proc = subprocess.run(
      [sys.executable, '-m', 'tests.mean_teacher.mirrored_worker',
       str(tmp_path / 'run'), out],
      cwd=_ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out) as f:
    result = json.load(f)
  logs = result['logs']
  assert len(logs) == 2  # step 1, then step 2 after a resume
  for step in logs:
    for key in ('loss', 'human_loss', 'pseudo_loss', 'pseudo_precision',
                'pseudo_recall'):
      assert math.isfinite(step[key]), (key, step)
    # Every anchor scores 0.5 >= 0.3: the teacher keeps max_boxes boxes.
    assert step['pseudo_boxes_per_image'] == 10.0
    assert step['pseudo_weight'] > 0 and step['ema_started'] == 1.0
  # The EMA started from the student and averaged in its update (the
  # student's batch-norm statistics are per replica: trainable weights
  # only), the same on both replicas.
  assert result['num_trainable'] > 0 and result['student_moved'] > 1e-6
  assert max(result['ema_errors']) < 1e-5
  assert result['replicas_agree'] and result['teacher_finite']
  assert result['ema_started'] == 1.0
