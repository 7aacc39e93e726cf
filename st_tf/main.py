r"""Command line entry: `python -m st_tf.main`.

    python -m st_tf.main --gin_file=gin/demo/teacher.gin \
        [--gin_file=more.gin] [--gin_bindings="train.train_steps = 100"] \
        --mode=train --model_dir=/tmp/teacher \
        [--strategy=tpu --tpu=local]

Every `st_tf` module is imported before the gin files are parsed, and parsing
does not skip unknown names: a missing gin file, an unknown configurable or
parameter fails at once naming it; a missing `%gin.REQUIRED` value fails when
the mode's entry point is called, before any work, naming the parameter.

Modes are a registry (`MODES`: mode -> 'module:function'); each entry point is
gin-configurable and takes `model_dir`. The train mode writes `config.gin`
and `operative_config.gin` to model_dir itself; every mode also writes
`operative_config.<mode>.gin` when it finishes.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from typing import Any, Callable, Dict, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import gin
import tensorflow as tf

import st_tf
from st_tf import paths

# mode -> 'module:function' of its gin-configurable entry point (model_dir=).
MODES: Dict[str, str] = {
    'train': 'st_tf.training.trainer:train',
    'eval': 'st_tf.evaluation.runner:evaluate',
    'export': 'st_tf.export.saved_model:export',
    'pseudo_label': 'st_tf.pseudo_label.runner:pseudo_label',
    'self_train': 'st_tf.self_train.runner:self_train',
    'pretrain': 'st_tf.pretrain.runner:pretrain',
}

_REPO_ROOT = paths.REPO_ROOT

FLAGS = flags.FLAGS
flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s), in order.')
flags.DEFINE_multi_string('gin_bindings', [],
                          'Gin bindings applied after the files, in order.')
flags.DEFINE_string('mode', 'train', f'One of {sorted(MODES)}.')
flags.DEFINE_string('model_dir', None,
                    'Checkpoints, summaries and configs (passed to the mode as '
                    'model_dir; else it must be bound in gin).')
flags.DEFINE_string('strategy', None,
                    'Distribution strategy name (binds get_strategy.name).')
flags.DEFINE_string('tpu', None, 'TPU address (binds get_strategy.tpu).')


def import_configurables() -> None:
  """Imports every `st_tf` module so all gin configurables are registered."""
  for info in pkgutil.walk_packages(st_tf.__path__, prefix='st_tf.'):
    if info.name != __name__ and info.name != 'st_tf.main':
      importlib.import_module(info.name)


def parse_config(gin_files: Sequence[str],
                 gin_bindings: Sequence[str] = (),
                 strategy: Optional[str] = None,
                 tpu: Optional[str] = None) -> None:
  """Parses gin files then bindings (no unknown names allowed).

  Raises:
    FileNotFoundError: a gin file does not exist.
    ValueError: an unknown configurable/parameter or a syntax error (gin's
      message names it and its file/line).
  """
  for path in gin_files:
    if not (tf.io.gfile.exists(path) or
            tf.io.gfile.exists(os.path.join(_REPO_ROOT, path))):
      raise FileNotFoundError(f'gin file not found: {path}')
  import_configurables()
  gin.add_config_file_search_path(_REPO_ROOT)
  bindings = list(gin_bindings)
  if strategy is not None:
    bindings.append(f'get_strategy.name = {strategy!r}')
  if tpu is not None:
    bindings.append(f'get_strategy.tpu = {tpu!r}')
  gin.parse_config_files_and_bindings(
      list(gin_files), bindings, skip_unknown=False, finalize_config=True)


def get_mode(mode: str) -> Callable[..., Any]:
  """The entry point registered for `mode`."""
  if mode not in MODES:
    raise ValueError(f'Unknown --mode={mode!r}; choose one of {sorted(MODES)}.')
  module_name, fn_name = MODES[mode].split(':')
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    raise ValueError(f'--mode={mode} is not available: {e}') from e
  return getattr(module, fn_name)


@gin.configurable
def prepare(fns: Sequence[Callable[[], Any]] = ()) -> None:
  """Runs set-up steps bound in gin before any mode (e.g. making the demo
  data: `prepare.fns = [@ensure_digitscenes]`)."""
  for fn in fns:
    fn()


def run(mode: str, model_dir: Optional[str] = None) -> Any:
  """Runs a mode with the parsed gin config; returns its result."""
  entry = get_mode(mode)
  prepare()
  kwargs = {'model_dir': model_dir} if model_dir else {}
  result = entry(**kwargs)
  out_dir = model_dir
  if not out_dir:
    try:
      out_dir = gin.query_parameter(f'{entry.__name__}.model_dir')
    except ValueError:
      out_dir = None
  if isinstance(out_dir, str) and out_dir:
    tf.io.gfile.makedirs(out_dir)
    with tf.io.gfile.GFile(
        os.path.join(out_dir, f'operative_config.{mode}.gin'), 'w') as f:
      f.write(gin.operative_config_str())
  return result


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not FLAGS.gin_file:
    raise app.UsageError('At least one --gin_file is required.')
  get_mode(FLAGS.mode)  # Fail on a bad mode before parsing.
  parse_config(FLAGS.gin_file, FLAGS.gin_bindings, FLAGS.strategy, FLAGS.tpu)
  logging.info('Gin config:\n%s', gin.config_str())
  result = run(FLAGS.mode, FLAGS.model_dir)
  logging.info('Mode %s done: %s', FLAGS.mode, result)


if __name__ == '__main__':
  app.run(main)
