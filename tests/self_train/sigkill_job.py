"""`self_train` on the smoke config, as a process the test SIGKILLs.

    python -m tests.self_train.sigkill_job MODEL_DIR DATA_DIR EVENTS

The student trains 8 steps, a checkpoint every 2. A probe callback appends
JSON lines to EVENTS (fsynced, so a SIGKILL loses none): 'begin' (step and
combiner state when a training stage starts, i.e. after any resume), 'step'
after each student step (then sleeps, so the kill lands mid-stage) and
'epoch' (state just checkpointed).
"""
import json
import os
import sys
import time

import tf_keras

from st_tf import main as main_lib
from st_tf.training import trainer
from tests.self_train import smoke
STUDENT_STEPS = 8


class Probe(tf_keras.callbacks.Callback):

  def __init__(self, path: str, model_dir: str):
    super().__init__()
    self._path, self._stage = path, os.path.basename(model_dir)

  def _log(self, event: str) -> None:
    record = {'event': event, 'stage': self._stage,
              'step': int(self.model.optimizer.iterations.numpy())}
    combiner = getattr(self.model, 'combiner', None)
    if combiner is not None:
      record['averages'] = [float(v.numpy()) for v in (
          combiner.m_h, combiner.m_p, combiner.initialized_h,
          combiner.initialized_p)]
    with open(self._path, 'a') as f:
      f.write(json.dumps(record) + '\n')
      f.flush()
      os.fsync(f.fileno())

  def on_train_begin(self, logs=None):
    self._log('begin')

  def on_train_batch_end(self, batch, logs=None):
    if self._stage == 'student':
      self._log('step')
      time.sleep(0.3)

  def on_epoch_end(self, epoch, logs=None):
    self._log('epoch')  # After the trainer's checkpoint of this epoch.


def main(model_dir: str, data: str, events: str) -> None:
  main_lib.parse_config([smoke.SMOKE_GIN], smoke.data_bindings(data) +
                        [
                         f'STUDENT_STEPS = {STUDENT_STEPS}',
                         'student/train.steps_per_epoch = 2',
                         'self_train.baseline = False',
                         'self_train.export_student = False'] +
                        list(smoke.NO_TEST_SPLIT))
  train = trainer.train

  def probed(*args, callbacks=(), **kwargs):
    probe = Probe(events, kwargs['model_dir'])
    return train(*args, callbacks=list(callbacks) + [probe], **kwargs)

  trainer.train = probed
  main_lib.run('self_train', model_dir)


if __name__ == '__main__':
  main(*sys.argv[1:4])
