"""st_tf.main: gin parsing errors, mode registry, train/eval end to end."""
import inspect
import json
import os
import subprocess
import sys

import gin
import pytest

from st_tf import main
from tests.training import tiny  # pylint: disable=unused-import

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_TRAIN_GIN = """
import tests.training.tiny

train.model = @tiny_model
train.train_dataset = @tiny_dataset
train.train_steps = 2
train.steps_per_epoch = 2
make_optimizer.learning_rate = @constant_lr()
constant_lr.learning_rate = 0.05

evaluate.model = @tiny_model
evaluate.dataset = @eval/tiny_dataset()
evaluate.metric_fn = @tiny_metric
eval/tiny_dataset.repeat = False
"""


def _write(tmp_path, text, name='config.gin'):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def test_missing_gin_file_names_it(tmp_path):
  missing = str(tmp_path / 'nope.gin')
  with pytest.raises(FileNotFoundError, match='nope.gin'):
    main.parse_config([missing])


def test_unknown_configurable_fails_at_parse(tmp_path):
  path = _write(tmp_path, _TRAIN_GIN)
  with pytest.raises(ValueError, match='no_such_builder'):
    main.parse_config([path], ['no_such_builder.size = 3'])


def test_unknown_parameter_fails_at_parse(tmp_path):
  path = _write(tmp_path, _TRAIN_GIN + '\ntrain.no_such_param = 1\n')
  with pytest.raises(ValueError, match='no_such_param'):
    main.parse_config([path])


def test_missing_required_fails_naming_it(tmp_path):
  path = _write(tmp_path, _TRAIN_GIN.replace('train.train_steps = 2', ''))
  main.parse_config([path])
  with pytest.raises(Exception, match='train_steps'):
    main.run('train', str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run' / 'config.gin')  # no work done


def test_mode_registry():
  for mode in ('train', 'eval', 'export'):
    entry = main.get_mode(mode)
    assert 'model_dir' in inspect.signature(entry).parameters, mode
  with pytest.raises(ValueError, match='pseudo_lbl'):
    main.get_mode('pseudo_lbl')


def test_strategy_flag_binds_gin(tmp_path):
  main.parse_config([_write(tmp_path, _TRAIN_GIN)], strategy='one_device')
  assert gin.query_parameter('get_strategy.name') == 'one_device'


def test_train_then_eval_in_process(tmp_path):
  model_dir = str(tmp_path / 'run')
  main.parse_config([_write(tmp_path, _TRAIN_GIN)])
  main.run('train', model_dir)
  for name in ('ckpt-2.index', 'operative_config.gin',
               'operative_config.train.gin'):
    assert os.path.exists(os.path.join(model_dir, name)), name
  result = main.run('eval', model_dir)
  assert result['step'] == 2 and result['mse'] > 0
  with open(os.path.join(model_dir, 'eval_metrics.json')) as f:
    assert json.load(f)['metrics']['mse'] == pytest.approx(result['mse'])
  assert os.path.exists(os.path.join(model_dir, 'operative_config.eval.gin'))


def test_command_line_unknown_binding_exits_nonzero(tmp_path):
  path = _write(tmp_path, _TRAIN_GIN)
  proc = subprocess.run(
      [sys.executable, '-m', 'st_tf.main', f'--gin_file={path}',
       '--gin_bindings=train.bogus_flag = 1', '--mode=train',
       f'--model_dir={tmp_path / "run"}'],
      cwd=_ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', CUDA_VISIBLE_DEVICES=''))
  assert proc.returncode != 0
  assert 'bogus_flag' in proc.stderr
  assert not os.path.exists(tmp_path / 'run')
