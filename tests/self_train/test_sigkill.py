"""A real SIGKILL of `self_train` in the student stage, twice, then resume."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import tensorflow as tf

from st_tf.pseudo_label import writer
from st_tf.self_train import stages
from tests.self_train import sigkill_job

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _events(path):
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.endswith('\n')]


def _averages(checkpoint):
  """m_h, m_p, initialized_h, initialized_p saved in `checkpoint`."""
  names = dict(tf.train.list_variables(checkpoint))
  value = lambda key: float(tf.train.load_variable(checkpoint, [  # pylint: disable=g-long-lambda
      n for n in names if n.endswith(f'/{key}/.ATTRIBUTES/VARIABLE_VALUE')][0]))
  return [value(k) for k in ('m_h', 'm_p', 'initialized_h', 'initialized_p')]


def _start(model_dir, data, events):
  env = dict(os.environ, PYTHONPATH=_ROOT, CUDA_VISIBLE_DEVICES='')
  return subprocess.Popen(
      [sys.executable, '-m', 'tests.self_train.sigkill_job', model_dir, data,
       events], cwd=_ROOT, env=env, stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE)


def _kill_at(job, events, step, timeout=900):
  """SIGKILLs `job` once it logs a student step >= `step`."""
  before = len(_events(events))  # Events of earlier runs do not count.
  deadline = time.time() + timeout
  while time.time() < deadline:
    if any(e['event'] == 'step' and e['stage'] == 'student' and
           e['step'] >= step for e in _events(events)[before:]):
      job.send_signal(signal.SIGKILL)
      job.wait()
      return
    assert job.poll() is None, job.stderr.read().decode()[-3000:]
    time.sleep(0.05)
  job.kill()
  raise AssertionError(f'student step {step} not reached in {timeout} s')


def test_sigkill_twice_in_the_student_stage_then_resume(tmp_path):
  model_dir, data = str(tmp_path / 'run'), str(tmp_path / 'data')
  events = str(tmp_path / 'events.jsonl')
  rng = random.Random()
  first = rng.randint(3, 5)  # After the first checkpoint (step 2).
  second = rng.randint(first + 2, sigkill_job.STUDENT_STEPS - 1)
  steps = f'killed at student steps {first} and {second}'

  _kill_at(_start(model_dir, data, events), events, first)
  pseudo = os.path.join(model_dir, 'round_0', 'pseudo_labels')
  manifest = writer.manifest_path(pseudo, 0, 1)
  done_before = os.stat(manifest).st_mtime_ns
  teacher = os.path.join(model_dir, 'round_0', 'teacher')
  teacher_eval = os.stat(os.path.join(teacher, 'eval_metrics.json'))
  _kill_at(_start(model_dir, data, events), events, second)
  job = _start(model_dir, data, events)
  assert job.wait(timeout=900) == 0, job.stderr.read().decode()[-3000:]

  student = os.path.join(model_dir, 'round_0', 'student')
  assert stages.final_step(student) == sigkill_job.STUDENT_STEPS, steps
  assert stages.train_complete(student) and stages.eval_complete(
      student, student)
  log = _events(events)
  begins = [e for e in log if e['event'] == 'begin']
  # No stage ran twice: the teacher trained once, its eval and the pseudo
  # labels were not redone; the student started three times, each resuming.
  assert [e['stage'] for e in begins] == ['teacher'] + ['student'] * 3, steps
  assert os.stat(manifest).st_mtime_ns == done_before
  assert os.stat(os.path.join(teacher, 'eval_metrics.json')).st_mtime_ns == (
      teacher_eval.st_mtime_ns)
  starts = [e['step'] for e in begins[2:]]
  # The kill lands after step `first`, maybe before that epoch's checkpoint.
  assert starts == sorted(starts) and starts[0] >= 2 * ((first - 1) // 2), (
      steps)
  for begin in begins[2:]:
    # The moving averages (and their started flags) come back from the
    # checkpoint the run resumed from.
    saved = _averages(os.path.join(student, f'ckpt-{begin["step"]}'))
    assert begin['averages'] == saved, (steps, begin)
    assert begin['averages'][2:] == [1.0, 1.0]
  with open(os.path.join(model_dir, 'summary.json')) as f:
    status = {s['name']: s['status'] for s in json.load(f)['stages']}
  assert status['round_0/student/train'] == 'ran'
  assert status['round_0/pseudo_labels'] == 'skipped', status
