r"""Self-training vs the same-steps supervised baseline, over seeds.

    python scripts/bench_self_training.py                       # detection
    python scripts/bench_self_training.py --task=segmentation
    python scripts/bench_self_training.py --recipes=paper,auto_ignore --seeds=0

Per seed s (`SEED = s` reaches weight init, data order and augmentation):

* `seed_s/base`: `--mode=self_train` with `num_rounds = 0`: the teacher
  (human labels), then the supervised baseline (the teacher continued for
  STUDENT_STEPS on human labels with the student's augmentation);
* `seed_s/base_2x`: the same baseline with 2 x STUDENT_STEPS, from the same
  teacher: does more human-label training alone catch up?
* `seed_s/<recipe>`: one student per recipe, from the same teacher, with
  the same steps, human batch, augmentation and init as the baseline.

Every model is evaluated on val (recipes are chosen there) and on the test
split (reported). The table gives, per recipe, mean +- sample std over the
seeds of test AP (mIoU), and the paired gains over the 1x and 2x baselines
of the same seed, plus val, pseudo-label precision / recall at the kept
threshold (detection; coverage / mIoU of kept pixels for segmentation) and
student wall time. Writes `results.json`, `table.md` and `bench.png` to
--output_dir. Rerun the same command to resume (each run is a resumable
self_train folder; a folder run with another command is refused).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

# Runnable as `python scripts/bench_self_training.py` from a checkout.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from scripts import bench_tables  # pylint: disable=g-import-not-at-top
from scripts.bench_recipes import RECIPES, TASKS
from st_tf import atomic_io

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_TASK = flags.DEFINE_enum('task', 'detection', sorted(TASKS), 'Task.')
_RECIPES = flags.DEFINE_list(
    'recipes', None, 'Student recipes (names of scripts/bench_recipes.py); '
    'default: the task\'s list.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds.')
_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir', None, 'Default runs/bench_self_training_<task>.')
_BINDINGS = flags.DEFINE_multi_string(
    'gin_bindings', [], 'Extra bindings for every run (e.g. shorter '
    'schedules); part of each run\'s command.')
_NO_2X = flags.DEFINE_bool('no2x', False, 'Skip the 2x baseline.')
_TEACHER = flags.DEFINE_string(
    'teacher_model_dir', None, 'Use this trained teacher (trainer '
    'checkpoints; "{seed}" is replaced by the seed) instead of training one '
    'in seed_<s>/base, e.g. a longer-trained model of an earlier run.')
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'Print the commands only.')


def _command(gin_file: str, bindings: Sequence[str], model_dir: str
             ) -> List[str]:
  cmd = [sys.executable, '-m', 'st_tf.main', f'--gin_file={gin_file}',
         '--mode=self_train', f'--model_dir={model_dir}']
  return cmd + [f'--gin_bindings={b}' for b in bindings]


def _run(cmd: List[str], model_dir: str) -> Optional[dict]:
  """Runs (or resumes) one self_train; returns its summary or None."""
  os.makedirs(model_dir, exist_ok=True)
  command_file = os.path.join(model_dir, 'command.json')
  if os.path.exists(command_file):
    with open(command_file) as f:
      if json.load(f) != cmd[1:]:
        raise SystemExit(f'{model_dir} was run with another command (see '
                         f'{command_file}): use a new --output_dir')
  else:
    atomic_io.write_json(command_file, cmd[1:], indent=1)
  print('$', ' '.join(cmd), flush=True)
  start = time.time()
  with open(os.path.join(model_dir, 'log.txt'), 'a') as log:
    code = subprocess.call(cmd, cwd=_REPO, stdout=log, stderr=log,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  print(f'  exit {code} after {time.time() - start:.0f} s', flush=True)
  summary = os.path.join(model_dir, 'summary.json')
  if code != 0 or not os.path.exists(summary):
    print(f'  FAILED: see {os.path.join(model_dir, "log.txt")}')
    return None
  with open(summary) as f:
    return json.load(f)


def _seed_runs(task: dict, seed: int, out: str, recipes: Sequence[str],
               extra: Sequence[str]) -> Dict[str, Optional[dict]]:
  """The base, 2x baseline and recipe runs of one seed."""
  common = [f'SEED = {seed}'] + list(extra)
  base_dir = os.path.join(out, f'seed_{seed}', 'base')
  teacher_dir = os.path.join(base_dir, 'round_0', 'teacher')
  given_teacher = []
  if _TEACHER.value:
    teacher_dir = _TEACHER.value.replace('{seed}', str(seed))
    given_teacher = [f"self_train.teacher_model_dir = '{teacher_dir}'"]
  runs = {'base': (task['gin_file'], common + given_teacher + [
      'self_train.num_rounds = 0'], base_dir)}
  given = common + [f"self_train.teacher_model_dir = '{teacher_dir}'"]
  for name in recipes:
    recipe = RECIPES[task['name']][name]
    runs[name] = (recipe.get('gin_file', task['gin_file']), given + [
        'self_train.baseline = False', 'self_train.export_student = False'] +
                  list(recipe['bindings']),
                  os.path.join(out, f'seed_{seed}', name))
  # The 2x baseline last: the paired gains over 1x come first.
  if not _NO_2X.value:
    runs['base_2x'] = (task['gin_file'], given + [
        'self_train.num_rounds = 0',
        f'BASELINE_STEPS = {2 * task["student_steps"]}'],
                       os.path.join(out, f'seed_{seed}', 'base_2x'))
  results = {}
  for name, (gin_file, bindings, model_dir) in runs.items():
    cmd = _command(gin_file, bindings, model_dir)
    if _DRY_RUN.value:
      print('$', ' '.join(cmd))
      continue
    results[name] = _run(cmd, model_dir)
  return results


def main(argv):
  del argv
  task = TASKS[_TASK.value]
  recipes = _RECIPES.value or task['recipes']
  unknown = [r for r in recipes if r not in RECIPES[task['name']]]
  if unknown:
    raise app.UsageError(f'unknown recipes {unknown}; known: '
                         f'{sorted(RECIPES[task["name"]])}')
  out = _OUTPUT_DIR.value or os.path.join(
      _REPO, 'runs', f'bench_self_training_{task["name"]}')
  all_runs = {}
  start = time.time()
  for seed in [int(s) for s in _SEEDS.value]:
    all_runs[seed] = _seed_runs(task, seed, out, recipes, _BINDINGS.value)
  if _DRY_RUN.value:
    return
  results = bench_tables.collect(all_runs, recipes, task)
  results['wall_seconds_this_call'] = round(time.time() - start, 1)
  markdown = bench_tables.write(out, results, task)
  print(markdown)


if __name__ == '__main__':
  app.run(main)
