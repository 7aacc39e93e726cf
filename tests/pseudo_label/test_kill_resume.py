"""A real crash: SIGKILL a pseudo-label job mid-run, rerun, nothing lost."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import tensorflow as tf

from st_tf.pseudo_label import writer
from tests.pseudo_label import tiny

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# The job, as its own process. Each batch waits a little so the kill lands
# while later shards are still being labeled.
_JOB = textwrap.dedent('''
    import functools, sys, time
    from st_tf.pseudo_label import runner, teacher
    from tests.pseudo_label import tiny
    out, pattern, model_dir = sys.argv[1:4]
    runner.pseudo_label(
        output_dir=out, input_pattern=pattern, num_classes=tiny.NUM_CLASSES,
        teacher=functools.partial(teacher.checkpoint_teacher,
                                  model_dir=model_dir,
                                  model=tiny.teacher_model),
        batch_size=2, gallery_size=0, quality_thresholds=(0.5,),
        on_event=lambda kind, name: time.sleep(0.4 if kind == 'batch' else 0))
    ''')


def _finished_shards(out: str) -> dict:
  path = writer.manifest_path(out, 0, 1)
  if not os.path.exists(path):
    return {}
  return writer.read_json(path)['shards']


def test_sigkill_then_rerun_labels_every_image_once(
    tmp_path, unlabeled, detection_teacher_dir):
  out = str(tmp_path / 'out')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='',
             PYTHONPATH=_REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
  job = subprocess.Popen(
      [sys.executable, '-c', _JOB, out, unlabeled, detection_teacher_dir],
      cwd=_REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  try:
    deadline = time.time() + 120
    while not _finished_shards(out):
      assert job.poll() is None, job.stderr.read().decode()[-2000:]
      assert time.time() < deadline, 'no shard finished within 120 s'
      time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    assert job.wait(timeout=30) == -signal.SIGKILL
  finally:
    if job.poll() is None:
      job.kill()
      job.wait()
    job.stderr.close()

  done = _finished_shards(out)
  inputs = sorted(tf.io.gfile.glob(unlabeled))
  assert 1 <= len(done) < len(inputs)  # Killed mid-job.
  manifest = writer.read_json(writer.manifest_path(out, 0, 1))
  assert not manifest['complete']
  stamps = {name: os.stat(os.path.join(out, name)).st_mtime_ns
            for name in done}
  for name, entry in done.items():  # Finished shards are whole.
    assert len(tiny.read_records(os.path.join(out, name))) == (
        entry['images_in'])

  events = []
  from tests.pseudo_label import test_runner  # pylint: disable=g-import-not-at-top
  manifest = test_runner._run(  # pylint: disable=protected-access
      out, unlabeled, detection_teacher_dir, batch_size=2, gallery_size=0,
      on_event=lambda kind, name: events.append(name))
  assert not set(events) & set(done)  # Finished shards were skipped...
  assert {name: os.stat(os.path.join(out, name)).st_mtime_ns
          for name in done} == stamps  # ...and not rewritten.
  assert manifest['complete']
  assert not [n for n in os.listdir(out) if n.endswith('.tmp')]
  outputs = tiny.read_records(writer.file_pattern(out))
  assert tiny.source_ids(outputs) == tiny.source_ids(
      tiny.read_records(unlabeled))  # Every image exactly once.
  assert manifest['totals']['images_in'] == len(outputs)
