"""Shared by the own-data end-to-end tests: command lines and the run."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import List, Sequence

import gin

from st_tf import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# Tiny steps for every stage (multiples of the checkpoint interval), a short
# warm-up, small batches and flip + crop only (AutoAugment's graph takes tens
# of seconds to trace on 2 busy cores; tests/data covers the policies).
TINY_RUN = ['TRAIN_STEPS = 20', 'STUDENT_STEPS = 10', 'BASELINE_STEPS = 10',
            'train.steps_per_epoch = 10', 'warmup_cosine.warmup_steps = 2',
            'BATCH_SIZE = 4', "STUDENT_POLICY = 'S1'"]


def run_commands(commands: Sequence[Sequence[str]]) -> List[str]:
  """Runs `python -m <command>` lines side by side from the repository root
  (as a user would); returns their outputs. Fails naming a failed line."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
  procs = [subprocess.Popen([sys.executable, '-m', *command], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
           for command in commands]
  outputs = []
  for command, proc in zip(commands, procs):
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, (
        f'`python -m {" ".join(command)}` failed ({proc.returncode}):\n'
        f'{output[-3000:]}')
    outputs.append(output)
  return outputs


def self_train(gin_files: Sequence[str], bindings: Sequence[str],
               model_dir: str) -> dict:
  """`python -m st_tf.main --mode=self_train` in this process (the same
  parse and run as the command line, without a second TF start-up)."""
  gin.clear_config()
  try:
    main.parse_config(list(gin_files), list(bindings))
    return main.run('self_train', model_dir)
  finally:
    gin.clear_config()
