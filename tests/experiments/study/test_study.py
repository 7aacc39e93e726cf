"""The study driver with a fake subprocess: resume, failures, pretrain, ablation."""
import json
import os

import pytest
import tensorflow as tf

from experiments.study import ablation
from experiments.study import commands
from experiments.study import run_cell
from experiments.study import study
from st_tf.training import loss_log

_AP = {'S1': 0.30, 'S2': 0.32, 'S3': 0.34, 'S4': 0.36}


def _bindings(argv):
  out = {}
  for arg in argv:
    if arg.startswith('--gin_bindings='):
      key, value = arg[len('--gin_bindings='):].split(' = ', 1)
      out[key] = value
  return out


def _arg(argv, name):
  return next(a.split('=', 1)[1] for a in argv if a.startswith(f'--{name}='))


def _write_json(path, data):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(data, f)


class FakeRunner:
  """Stands in for `python -m st_tf.main`: writes what self_train writes.

  Teacher AP = _AP[policy] (+0.05 if pretrained); student = teacher + 0.02.
  `fail` names model_dir basenames that exit 1; `fail_pretrain` too.
  """

  def __init__(self, fail=(), fail_pretrain=False, threshold=0.3):
    self.calls = []
    self.fail = set(fail)
    self.fail_pretrain = fail_pretrain
    self.threshold = threshold

  def __call__(self, argv, log_path, cwd):
    assert cwd == commands.REPO_ROOT
    model_dir = _arg(argv, 'model_dir')
    self.calls.append(model_dir)
    with open(log_path, 'a') as log:
      log.write('some TF noise\n')
      if os.path.basename(model_dir) in self.fail:
        log.write('Traceback ...\nValueError: boom in cell\n')
        return 1
    if _arg(argv, 'mode') == 'pretrain':
      if self.fail_pretrain:
        with open(log_path, 'a') as log:
          log.write('ValueError: no pretrain mode\n')
        return 1
      os.makedirs(os.path.join(model_dir, 'backbone'))
      _write_json(os.path.join(model_dir, 'pretrain_metrics.json'),
                  {'accuracy': 0.9})
      return 0
    b = _bindings(argv)
    teacher_dir = os.path.join(model_dir, 'round_0', 'teacher')
    given = b.get('self_train.teacher_model_dir', '').strip("'")
    if given:
      assert os.path.exists(os.path.join(given, 'train_done.json'))
    else:
      _write_json(os.path.join(teacher_dir, 'train_done.json'), {'step': 4})
    pseudo_dir = os.path.join(model_dir, 'round_0', 'pseudo_labels')
    if not os.path.exists(pseudo_dir):
      _write_json(os.path.join(pseudo_dir, 'manifest-00000-of-00001.json'),
                  {'complete': True, 'num_shards': 1, 'settings': {
                      'selection': {'score_threshold': self.threshold}}})
      with open(os.path.join(pseudo_dir, 'pseudo-0.tfrecord'), 'w') as f:
        f.write('records')
    teacher_ap = _AP[b['POLICY'].strip("'")] + (
        0.05 if b['INIT_METHOD'] == "'backbone'" else 0.0)
    student_ap = teacher_ap + 0.02
    a = float(b['PSEUDO_WEIGHT'])
    if given and 'weighted' in b.get('student/SelfTrainingModel.combiner',
                                     ''):
      student_ap = 0.05
    log_rows = [1.0] * 20
    if a == 4.0 and 'weighted' in str(b):
      log_rows[15] = 10.0  # a spike
    path = os.path.join(model_dir, 'round_0', 'student', 'train_log.csv')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
      f.write(','.join(loss_log.COLUMNS) + '\n')
      for i, v in enumerate(log_rows):
        f.write(f'{10 * (i + 1)},{v},,,0.1,\n')
    _write_json(os.path.join(model_dir, 'stages.json'),
                {'round_0/teacher/train': {'seconds': 5.0},
                 'round_0/student/train': {'seconds': 7.0}})
    _write_json(os.path.join(model_dir, 'summary.json'), {
        'metric': 'AP', 'total_seconds': 12.0, 'rounds': [{
            'round': 0, 'teacher': {'value': teacher_ap, 'step': 4},
            'student': {'value': student_ap, 'step': 4},
            'gain': student_ap - teacher_ap,
            'pseudo_labels': {'labels_per_image': 2.5}}]})
    return 0


def _data(tmp_path):
  data = tmp_path / 'data'
  data.mkdir()
  with tf.io.TFRecordWriter(str(data / 'labeled-00000-of-00001.tfrecord')) as w:
    for i in range(10):
      w.write(str(i).encode())
  return str(data)


def _options(tmp_path, only='', abl=False, steps=4, grid='small', seeds=(0,),
             dry_run=False):
  settings = commands.Settings(output_dir=str(tmp_path / 'out'),
                               data_dir=str(tmp_path / 'data'), steps=steps)
  return study.Options(grid=grid, seeds=list(seeds), settings=settings,
                       only=only, ablation=abl, dry_run=dry_run)


def _run(options, runner, lines=None):
  lines = [] if lines is None else lines
  return study.run_study(options, runner=runner, print_fn=lines.append,
                         prepare_data=lambda d: 10)


def _results(tmp_path):
  with open(tmp_path / 'out' / 'results.json') as f:
    return json.load(f)


def test_rand_cells_run_then_are_skipped(tmp_path):
  _data(tmp_path)
  runner, lines = FakeRunner(), []
  assert _run(_options(tmp_path, only='rand'), runner, lines) == 0
  assert len(runner.calls) == 6
  out = tmp_path / 'out'
  for name in ('results.json', 'tables.md', 'tables.json',
               'ap_vs_fraction.png'):
    assert (out / name).exists()
  res = _results(tmp_path)
  assert len(res['cells']) == 12  # every grid cell, run or not
  by_name = {c['name']: c for c in res['cells']}
  s1 = by_name['S1_p100_rand_s0']
  assert s1['status'] == 'complete' and s1['ran']
  assert s1['supervised_ap'] == pytest.approx(0.30)
  assert s1['gain'] == pytest.approx(0.02)
  assert s1['pseudo_boxes_per_image'] == 2.5 and s1['wall_seconds'] == 12.0
  assert by_name['S1_p100_pretrained_s0']['status'] == 'not_run'
  cell = out / 'cells' / 'S4_p20_rand_s0'
  assert 'S4_p20_rand_s0' in (cell / 'command.txt').read_text()
  assert json.loads((cell / 'cell.json').read_text())['fraction'] == 20
  # The 20 % subset: first 2 of 10 records.
  subset = out / 'data' / 'labeled_p20-00000-of-00001.tfrecord'
  assert [r.numpy() for r in tf.data.TFRecordDataset(str(subset))] == [
      b'0', b'1']
  assert any('ETA' in l for l in lines)
  assert '| Rand Init | 30.0 | 32.0 | 34.0 | 36.0 |' in (
      out / 'tables.md').read_text()

  runner2 = FakeRunner()
  assert _run(_options(tmp_path, only='rand'), runner2) == 0
  assert runner2.calls == []  # complete cells are never rerun
  assert not _results(tmp_path)['cells'][0]['ran']


def test_half_finished_cell_resumes_and_changed_config_is_refused(tmp_path):
  _data(tmp_path)
  options = _options(tmp_path, only='S1_p100_rand')
  spec = study.grid_spec(options.settings, study.cells_lib.Cell(
      'S1', 100, 'rand', 0))
  os.makedirs(spec.model_dir)
  with open(os.path.join(spec.model_dir, run_cell.CELL_FILE), 'w') as f:
    json.dump({'args': spec.argv[1:]}, f)  # started, no summary yet
  runner = FakeRunner()
  assert _run(options, runner) == 0
  assert runner.calls == [spec.model_dir]
  # Other steps, same folder: refused, not rerun, not mixed.
  os.remove(os.path.join(spec.model_dir, 'summary.json'))
  runner = FakeRunner()
  assert _run(_options(tmp_path, only='S1_p100_rand', steps=8), runner) == 1
  assert runner.calls == []
  assert 'other arguments' in _results(tmp_path)['cells'][0]['error']


def test_failing_cell_is_recorded_and_others_continue(tmp_path):
  _data(tmp_path)
  runner, lines = FakeRunner(fail={'S2_p100_rand_s0'}), []
  assert _run(_options(tmp_path, only='p100_rand'), runner, lines) == 1
  assert len(runner.calls) == 4
  by_name = {c['name']: c for c in _results(tmp_path)['cells']}
  failed = by_name['S2_p100_rand_s0']
  assert failed['status'] == 'failed'
  assert failed['error'].startswith('exit code 1')
  assert 'ValueError: boom in cell' in failed['error']
  assert by_name['S3_p100_rand_s0']['status'] == 'complete'
  assert any('FAILED' in l for l in lines)


def test_pretrain_runs_once_and_its_failure_fails_only_pretrained(tmp_path):
  _data(tmp_path)
  runner = FakeRunner()
  assert _run(_options(tmp_path, only='S4_p100'), runner) == 0
  pretrain = str(tmp_path / 'out' / 'pretrain')
  assert runner.calls.count(pretrain) == 1
  assert runner.calls.index(pretrain) == 1  # after the rand cell
  by_name = {c['name']: c for c in _results(tmp_path)['cells']}
  assert by_name['S4_p100_pretrained_s0']['supervised_ap'] == pytest.approx(
      0.41)
  cell = json.loads((tmp_path / 'out' / 'cells' / 'S4_p100_pretrained_s0' /
                     'cell.json').read_text())
  assert _bindings(cell['args'])['INIT_CHECKPOINT'] == (
      repr(f'{pretrain}/backbone'))
  # Done: another pre-trained cell does not pre-train again.
  runner = FakeRunner()
  assert _run(_options(tmp_path, only='S4_p50_pretrained'), runner) == 0
  assert pretrain not in runner.calls

  other = tmp_path / 'b'
  other.mkdir()
  _data(other)
  runner = FakeRunner(fail_pretrain=True)
  assert _run(_options(other, only='S1_p100'), runner) == 1
  by_name = {c['name']: c for c in _results(other)['cells']}
  assert by_name['S1_p100_rand_s0']['status'] == 'complete'
  pre = by_name['S1_p100_pretrained_s0']
  assert pre['status'] == 'failed' and 'pre-training failed' in pre['error']
  assert 'no pretrain mode' in pre['error']


def test_ablation_reuses_base_teacher_and_reports_stability(tmp_path):
  _data(tmp_path)
  runner, lines = FakeRunner(), []
  assert _run(_options(tmp_path, only='ablation/', abl=True), runner,
              lines) == 0
  base = str(tmp_path / 'out' / 'cells' / 'S4_p100_rand_s0')
  assert runner.calls[0] == base  # the base cell first
  assert len(runner.calls) == 9
  abl = {r['name']: r for r in _results(tmp_path)['ablation']}
  w4 = abl['ablation/weighted_a4']
  assert w4['status'] == 'complete' and w4['student_ap'] == 0.05
  assert w4['stability']['spiked'] is True
  assert abl['ablation/normalized_a1']['stability']['spiked'] is False
  run_dir = os.path.join(str(tmp_path / 'out'), 'ablation', 'weighted_a4')
  # The base cell's pseudo labels were reused (hard link or copy).
  assert os.path.exists(os.path.join(run_dir, 'round_0', 'pseudo_labels',
                                     'pseudo-0.tfrecord'))
  command = open(os.path.join(run_dir, 'command.txt')).read()
  assert '@weighted()' in command and 'PSEUDO_WEIGHT = 4.0' in command
  assert 'teacher_model_dir' in command
  md = (tmp_path / 'out' / 'tables.md').read_text()
  assert '| weighted | 4 | 5.0 | 36.0 |' in md
  assert ablation.stability.SPIKED_DEFINITION in md


def test_ablation_does_not_reuse_other_threshold(tmp_path):
  _data(tmp_path)
  settings = _options(tmp_path).settings
  base_round = os.path.dirname(ablation.base_teacher_dir(settings))
  _write_json(os.path.join(base_round, 'pseudo_labels',
                           'manifest-00000-of-00001.json'),
              {'complete': True, 'settings': {
                  'selection': {'score_threshold': 0.5}}})
  _write_json(os.path.join(base_round, 'teacher', 'eval_metrics.json'),
              {'step': 4})
  cell = ablation.AblationCell('weighted', 2.0)
  reused = ablation.reuse_teacher_outputs(settings, cell)
  assert reused == {'eval': True, 'pseudo_labels': False}


def test_dry_run_runs_and_writes_nothing(tmp_path):
  runner, lines = FakeRunner(), []
  assert _run(_options(tmp_path, abl=True, dry_run=True), runner, lines) == 0
  assert runner.calls == [] and not (tmp_path / 'out').exists()
  text = '\n'.join(lines)
  assert 'S4_p20_pretrained_s0 (not_run)' in text
  assert '--mode=pretrain' in text and 'ablation/weighted_a0.5' in text
