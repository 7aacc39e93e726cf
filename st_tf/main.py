r"""Command line entry: `python -m st_tf.main`.

    python -m st_tf.main --gin_file=gin/demo/teacher.gin \
        [--gin_file=more.gin] [--gin_bindings="train.train_steps = 100"] \
        --mode=train --model_dir=/tmp/teacher \
        [--strategy=tpu --tpu=local]

Every `st_tf` module is imported before the gin files are parsed, and parsing
does not skip unknown names: a missing gin file, an unknown configurable or
parameter, or a macro used but never set (e.g. a template without its model
file) fails at once naming it; a missing `%gin.REQUIRED` value (a parameter,
or a macro such as the templates' `LABELED_PATTERN = %gin.REQUIRED`) fails
when the mode is run, before any work, naming it, the file that declares it
and the binding that fixes it.

Modes are a registry (`MODES`: mode -> 'module:function'); each entry point is
gin-configurable and takes `model_dir`. The train mode writes `config.gin`
and `operative_config.gin` to model_dir itself; every mode also writes
`operative_config.<mode>.gin` when it finishes.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import gin
import tensorflow as tf

import st_tf
from st_tf import paths
from st_tf import registry
from st_tf import tasks

# mode -> 'module:function' of its gin-configurable entry point (model_dir=).
MODES: registry.Registry[str] = registry.Registry('mode', {
    'train': 'st_tf.training.trainer:train',
    'eval': 'st_tf.evaluation.runner:evaluate',
    'export': 'st_tf.export.saved_model:export',
    'pseudo_label': 'st_tf.pseudo_label.runner:pseudo_label',
    'self_train': 'st_tf.self_train.runner:self_train',
    'pretrain': 'st_tf.pretrain.runner:pretrain',
}, binding='--mode')

_REPO_ROOT = paths.REPO_ROOT

FLAGS = flags.FLAGS
flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s), in order.')
flags.DEFINE_multi_string('gin_bindings', [],
                          'Gin bindings applied after the files, in order.')
flags.DEFINE_string('mode', 'train', f'One of {MODES.names()}.')
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


# Macros the model files of gin/templates/models/ define (for `Anchors` and
# the backbones' levels; other gin files may use them too).
_MODEL_MACROS = ('MIN_LEVEL', 'MAX_LEVEL', 'NUM_SCALES', 'ASPECT_RATIOS',
                 'ANCHOR_SIZE')


def _model_file_hint(example: str = 'retinanet_tiny.gin') -> str:
  return (' The templates take the model from one model file, e.g. add '
          f'--gin_file=gin/templates/models/{example} (all: '
          'gin/templates/models/).')


_INCLUDE = re.compile(r"""^\s*include\s+['"]([^'"]+)['"]""")
_REQUIRED_MACRO = re.compile(
    r'^\s*([A-Za-z_][\w.]*)\s*=\s*%gin\.REQUIRED\s*(?:#\s*(.*))?$')
_UNBOUND_MACRO = re.compile(r"No bindings specified for '([\w.]+)/gin\.macro'")

# Macro -> (file:line, comment) of its last `NAME = %gin.REQUIRED` line in
# the files parsed by `parse_config` (for the error message).
_REQUIRED_DECLARATIONS: Dict[str, Tuple[str, str]] = {}


def _resolve_gin_path(path: str) -> Optional[str]:
  for candidate in (path, os.path.join(_REPO_ROOT, path)):
    if tf.io.gfile.exists(candidate):
      return candidate
  return None


def _scan_required(path: str, out: Dict[str, Tuple[str, str]],
                   seen: Optional[set] = None) -> None:
  """Records the `NAME = %gin.REQUIRED` lines of a gin file and its
  includes, in parse order."""
  seen = set() if seen is None else seen
  full = _resolve_gin_path(path)
  if full is None or full in seen:
    return
  seen.add(full)
  with tf.io.gfile.GFile(full) as f:
    lines = f.read().splitlines()
  for number, line in enumerate(lines, 1):
    include = _INCLUDE.match(line)
    if include:
      _scan_required(include.group(1), out, seen)
      continue
    required = _REQUIRED_MACRO.match(line)
    if required:
      out[required.group(1)] = (f'{path}:{number}',
                                (required.group(2) or '').strip())


def missing_required_macros() -> List[str]:
  """Macros of the parsed config whose value is (via other macros)
  `%gin.REQUIRED`: values the user must give (e.g. the templates' paths)."""
  config = gin.config._CONFIG  # pylint: disable=protected-access
  values = {scope: params.get('value')
            for (scope, selector), params in config.items()
            if selector == 'gin.macro'}

  def is_required(value, depth=0) -> bool:
    if value is gin.REQUIRED:
      return True
    if isinstance(value, gin.config.ConfigurableReference) and depth < 50:
      name = value.scoped_selector.split('/')[0]
      if name == 'gin.REQUIRED':
        return True
      if value.configurable.selector.endswith('gin.macro') and name in values:
        return is_required(values[name], depth + 1)
    return False

  return sorted(name for name, value in values.items() if is_required(value))


def check_required_macros() -> None:
  """Raises naming every macro still `%gin.REQUIRED` (gin itself would pass
  its placeholder object on to the configurable)."""
  missing = missing_required_macros()
  if not missing:
    return
  order = list(_REQUIRED_DECLARATIONS)
  missing.sort(key=lambda n: order.index(n) if n in order else len(order))
  lines, fixes = [], []
  for name in missing:
    where, comment = _REQUIRED_DECLARATIONS.get(name, ('a gin file', ''))
    lines.append(f'  {name}  ({where}' + (f': {comment})' if comment else ')'))
    example = re.search(r'e\.g\. (.+?)(?:\s+\(|$)', comment)
    fixes.append(f'  --gin_bindings="{name} = '
                 f'{example.group(1) if example else "<value>"}"')
  raise ValueError(
      'These gin values are %gin.REQUIRED and were not given (your data\'s '
      'paths, class count, input size, ...):\n' + '\n'.join(lines) +
      '\nGive each with --gin_bindings (or in a gin file parsed after the '
      'one that declares it), e.g.\n' + '\n'.join(fixes))


def parse_config(gin_files: Sequence[str],
                 gin_bindings: Sequence[str] = (),
                 strategy: Optional[str] = None,
                 tpu: Optional[str] = None) -> None:
  """Parses gin files then bindings (no unknown names allowed).

  Raises:
    FileNotFoundError: a gin file does not exist.
    ValueError: an unknown configurable/parameter or a syntax error (gin's
      message names it and its file/line); a `%gin.REQUIRED` macro not given
      or a macro used but never set, or a model builder without a model
      file (the message names them and the fix).
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
  declarations: Dict[str, Tuple[str, str]] = {}
  for path in gin_files:
    _scan_required(path, declarations)
  _REQUIRED_DECLARATIONS.clear()
  _REQUIRED_DECLARATIONS.update(declarations)
  gin.parse_config_files_and_bindings(
      list(gin_files), bindings, skip_unknown=False, finalize_config=False)
  # All missing values at once, with their files (gin's own finalize check
  # names the first only).
  check_required_macros()
  try:
    gin.finalize()
  except ValueError as e:
    unbound = _UNBOUND_MACRO.search(str(e))
    if not unbound:
      raise
    name = unbound.group(1)
    hint = (' It is a model file\'s macro.' + _model_file_hint()
            if name in _MODEL_MACROS else
            f' Set it, e.g. --gin_bindings="{name} = <value>".')
    raise ValueError(
        f'gin macro %{name} is used by {list(gin_files)} but never set.'
        + hint) from e
  check_model_file(gin_files)


def _references(name: str) -> bool:
  """Whether a parsed binding's value is `@name` or `@name()` (also inside
  a list, tuple or dict)."""
  for params in gin.config._CONFIG.values():  # pylint: disable=protected-access
    for value in params.values():
      items = list(value.values()) if isinstance(value, dict) else (
          list(value) if isinstance(value, (list, tuple)) else [value])
      if any(isinstance(v, gin.config.ConfigurableReference)
             and v.configurable.name == name for v in items):
        return True
  return False


def check_model_file(gin_files: Sequence[str]) -> None:
  """ValueError when the parsed config uses a model builder (e.g. a
  template's `@build_retinanet()`) whose backbone no file binds: the model
  file was left out."""
  bound = {selector.split('.')[-1]
           for (_, selector), params in gin.config._CONFIG.items()  # pylint: disable=protected-access
           if 'backbone' in params}
  for task in tasks.all_tasks():
    name, example = task.model_builder, task.example_model_file
    if _references(name) and name not in bound:
      raise ValueError(
          f'{list(gin_files)} use @{name}() but bind no model '
          f'({name}.backbone is not set).' + _model_file_hint(example))


def get_mode(mode: str) -> Callable[..., Any]:
  """The entry point registered for `mode`."""
  # ValueError naming the known modes.
  module_name, fn_name = MODES.get(mode).split(':')
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
  check_required_macros()
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
