"""Two MultiWorkerMirroredStrategy workers on 127.0.0.1 train in sync."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import tensorflow as tf

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_TIMEOUT_S = 150


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def test_two_workers_end_with_identical_weights(tmp_path):
  workers = [f'127.0.0.1:{p}' for p in _free_ports(2)]
  model_dir = str(tmp_path / 'run')
  procs, logs = [], []
  try:
    for index in range(2):
      env = dict(os.environ, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2',
                 TF_CONFIG=json.dumps({
                     'cluster': {'worker': workers},
                     'task': {'type': 'worker', 'index': index}}))
      log = open(tmp_path / f'worker{index}.log', 'w')
      logs.append(log)
      procs.append(subprocess.Popen(
          [sys.executable, '-m', 'tests.training.mwms_worker', model_dir,
           str(tmp_path / f'weights{index}.npz')],
          cwd=_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    for index, proc in enumerate(procs):
      code = proc.wait(timeout=_TIMEOUT_S)
      assert code == 0, (tmp_path / f'worker{index}.log').read_text()[-3000:]
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
    for log in logs:
      log.close()

  w0 = np.load(tmp_path / 'weights0.npz')
  w1 = np.load(tmp_path / 'weights1.npz')
  assert len(w0.files) == len(w1.files) > 0
  for key in w0.files:
    np.testing.assert_array_equal(w0[key], w1[key])
  # Training changed the weights, and only the chief wrote checkpoints.
  latest = tf.train.latest_checkpoint(model_dir)
  assert latest.endswith('ckpt-4')
  assert int(tf.train.load_variable(
      latest, 'step/.ATTRIBUTES/VARIABLE_VALUE')) == 4
  assert not os.path.exists(os.path.join(model_dir, '.tmp_workers',
                                         'worker_1'))
  assert os.path.exists(os.path.join(model_dir, 'operative_config.gin'))
