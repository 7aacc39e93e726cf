"""run_cell: the real subprocess launcher, completion and result reading."""
import json
import os
import sys

from experiments.study import run_cell


def test_subprocess_runner_logs_output_and_stages(tmp_path, capsys):
  model_dir = tmp_path / 'cell'
  log = str(model_dir / 'log.txt')
  script = ('import json, sys; print("hello from child"); '
            'json.dump({"round_0/teacher/train": {"seconds": 3.0}}, '
            f'open({str(model_dir / "stages.json")!r}, "w")); sys.exit(3)')
  code = run_cell.subprocess_runner([sys.executable, '-c', script], log,
                                    str(tmp_path), poll_seconds=0.1)
  assert code == 3
  text = open(log).read()
  assert 'hello from child' in text and text.startswith('\n==== ')
  assert 'stage round_0/teacher/train done in 3 s' in capsys.readouterr().out
  assert run_cell.log_tail(log, 0, lines=1) == 'hello from child'


def test_completion_needs_the_student_metric(tmp_path):
  d = str(tmp_path)
  assert not run_cell.is_complete(d)
  summary = {'total_seconds': 9.5, 'rounds': [{
      'teacher': {'value': 0.25, 'step': 10},
      'student': {'value': None, 'step': 10},
      'pseudo_labels': {'labels_per_image': 1.5}}]}
  with open(os.path.join(d, 'summary.json'), 'w') as f:
    json.dump(summary, f)
  assert not run_cell.is_complete(d)
  summary['rounds'][0]['student']['value'] = 0.3
  with open(os.path.join(d, 'summary.json'), 'w') as f:
    json.dump(summary, f)
  assert run_cell.is_complete(d)
  result = run_cell.read_result(d)
  assert result['supervised_ap'] == 0.25 and result['student_ap'] == 0.3
  assert abs(result['gain'] - 0.05) < 1e-12
  assert result['pseudo_boxes_per_image'] == 1.5
  assert result['wall_seconds'] == 9.5


def test_launch_error_is_a_failed_cell(tmp_path):
  spec = run_cell.CellSpec('x', str(tmp_path / 'x'), ['/no/such/python'],
                           meta={'policy': 'S1'})
  record = run_cell.run_cell(spec)
  assert record['status'] == 'failed' and record['policy'] == 'S1'
  assert 'FileNotFoundError' in record['error']
  assert os.path.exists(tmp_path / 'x' / 'command.txt')
