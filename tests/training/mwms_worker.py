"""One worker of the MultiWorkerMirroredStrategy test (run as a subprocess).

Usage: python -m tests.training.mwms_worker MODEL_DIR WEIGHTS_NPZ
with TF_CONFIG set for this worker. Trains the tiny model for 4 steps and
saves its final weights to WEIGHTS_NPZ.
"""
import sys
import time
_T0 = time.time()

import numpy as np
import tf_keras

from st_tf.training import optimizer as opt_lib
from st_tf.training import strategy as strategy_lib
from st_tf.training import trainer
from tests.training import tiny


class _SaveWeights(tf_keras.callbacks.Callback):

  def __init__(self, path):
    super().__init__()
    self._path = path

  def on_train_end(self, logs=None):
    np.savez(self._path, *[w.numpy() for w in self.model.weights])


def main(model_dir: str, weights_path: str) -> None:
  print(f'imports {time.time() - _T0:.1f}s', flush=True)
  strategy = strategy_lib.get_strategy('multi_worker_mirrored')
  print(f'strategy {time.time() - _T0:.1f}s', flush=True)
  assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
  trainer.train(
      model_dir=model_dir, model=tiny.tiny_model,
      train_dataset=lambda input_context: tiny.tiny_dataset(
          input_context, batch_size=8),
      optimizer=lambda: opt_lib.make_optimizer(learning_rate=0.1),
      strategy=strategy, train_steps=4, steps_per_epoch=2,
      callbacks=[_SaveWeights(weights_path)])
  print(f'trained {time.time() - _T0:.1f}s', flush=True)


if __name__ == '__main__':
  main(sys.argv[1], sys.argv[2])
