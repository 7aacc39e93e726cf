r"""Our DigitScenes teacher vs Model Garden's own trainer on the same job.

Runs, one after the other on this machine:
  1. `python -m st_tf.main --mode=train` then `--mode=eval` with
     gin/demo/digitscenes_teacher_detection.gin;
  2. `python -m official.vision.train --experiment=retinanet_resnetfpn_coco
     --mode=train_and_eval` with a config written here that mirrors the gin
     file: same records, backbone (ResNet-10 x0.25), FPN, head, anchors,
     128 px input, batch, steps, SGD + momentum, warmup + cosine schedule,
     L2 and clipping, and the same S1 augmentation (flip + scale [0.8, 1.2]).
Then prints both val AP figures and both wall times, and writes them as JSON.

  python scripts/compare_mg_trainer.py --output_dir=runs/compare_mg \
      [--train_steps=1500]

The learning-rate schedules differ in one detail: ours runs the cosine over
the steps after warmup, Model Garden's over all steps (its warmup overrides
the first steps). Everything else is bound to the same values.
"""
import json
import os
import re
import subprocess
import sys
import time

from absl import app
from absl import flags

from mg_reference import mg_config  # same folder

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from st_tf import atomic_io  # pylint: disable=g-import-not-at-top

_OUTPUT_DIR = flags.DEFINE_string('output_dir', 'runs/compare_mg',
                                  'Where both runs and the report go.')
_DATA_DIR = flags.DEFINE_string('data_dir', 'data/digitscenes',
                                'DigitScenes folder (made if missing).')
_TRAIN_STEPS = flags.DEFINE_integer('train_steps', 1500, 'Steps for both.')
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Global batch for both.')
_SKIP_OURS = flags.DEFINE_bool('skip_ours', False, 'Only run Model Garden.')

_GIN = 'gin/demo/digitscenes_teacher_detection.gin'


def _run(cmd, log_path: str) -> float:
  """Runs `cmd`, teeing output to `log_path`; returns wall seconds."""
  print('$', ' '.join(cmd), flush=True)
  start = time.time()
  with open(log_path, 'w') as log:
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
  wall = time.time() - start
  if proc.returncode:
    raise RuntimeError(f'{cmd[2]} failed (exit {proc.returncode}); see '
                       f'{log_path}')
  return wall


def _mg_ap(log_path: str) -> float:
  """Reads the final validation AP that Model Garden logs."""
  text = open(log_path).read()
  found = re.findall(r"'AP': (?:np\.float32\()?([0-9.eE+-]+)", text)
  if not found:
    raise RuntimeError(f'no AP found in {log_path}')
  return float(found[-1])


def main(argv):
  del argv
  import yaml  # pylint: disable=g-import-not-at-top
  out = _OUTPUT_DIR.value
  os.makedirs(out, exist_ok=True)
  report = {'train_steps': _TRAIN_STEPS.value, 'batch_size': _BATCH.value}
  bindings = [f'TRAIN_STEPS = {_TRAIN_STEPS.value}',
              f'BATCH_SIZE = {_BATCH.value}']
  if not _SKIP_OURS.value:
    ours_dir = os.path.join(out, 'st_tf')
    common = [sys.executable, '-m', 'st_tf.main', f'--gin_file={_GIN}',
              f'--model_dir={ours_dir}'] + [f'--gin_bindings={b}'
                                            for b in bindings]
    wall_train = _run(common + ['--mode=train'],
                      os.path.join(out, 'st_tf_train.log'))
    wall_eval = _run(common + ['--mode=eval'],
                     os.path.join(out, 'st_tf_eval.log'))
    with open(os.path.join(ours_dir, 'eval_metrics.json')) as f:
      ours = json.load(f)['metrics']
    report['st_tf'] = {'AP': ours['AP'], 'AP50': ours['AP50'],
                       'train_wall_s': wall_train, 'eval_wall_s': wall_eval}
  mg_dir = os.path.join(out, 'model_garden')
  cfg_path = os.path.join(out, 'model_garden.yaml')
  with open(cfg_path, 'w') as f:
    yaml.safe_dump(mg_config(_DATA_DIR.value, _TRAIN_STEPS.value,
                             _BATCH.value), f)
  mg_log = os.path.join(out, 'model_garden.log')
  wall_mg = _run([sys.executable, '-m', 'official.vision.train',
                  '--experiment=retinanet_resnetfpn_coco',
                  '--mode=train_and_eval', f'--model_dir={mg_dir}',
                  f'--config_file={cfg_path}'], mg_log)
  report['model_garden'] = {'AP': _mg_ap(mg_log), 'train_and_eval_wall_s':
                            wall_mg}
  atomic_io.write_json(os.path.join(out, 'report.json'), report, indent=2)
  print(json.dumps(report, indent=2))
  if 'st_tf' in report:
    print(f"val AP: st_tf {report['st_tf']['AP']:.4f} vs Model Garden "
          f"{report['model_garden']['AP']:.4f} "
          f"(diff {report['st_tf']['AP'] - report['model_garden']['AP']:+.4f})")


if __name__ == '__main__':
  app.run(main)
