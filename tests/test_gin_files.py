"""Every shipped gin file under gin/ parses; tiny model files also build.

Files are globbed, so gin files added later are covered automatically:
- every `gin/**/*.gin` must parse (unknown configurables, bad syntax, missing
  includes fail the test with the file's name). Includes are resolved
  relative to the repository root (`include 'gin/models/x.gin'`);
- files under `gin/models/` are tiny by contract: the model they bind
  (`build_retinanet` or `build_segmentation_model`) is built and run once;
- files under `gin/paper/` are only parsed (SpineNet-143/190 and
  EfficientNet-B7 are too slow to build in a unit test), and their model
  builder's key bindings are checked.

All `st_tf` submodules are imported first so every configurable is
registered, whichever module another part of the project puts it in.
"""
import importlib
import os
import pkgutil

import gin
import pytest
import tensorflow as tf

import st_tf

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_GIN_ROOT = os.path.join(_REPO_ROOT, 'gin')

# Extra bindings per file (path relative to gin/) needed to build or parse,
# e.g. for %gin.REQUIRED values. Model files currently need none.
_EXTRA_BINDINGS = {}

_BUILDERS = ('build_retinanet', 'build_segmentation_model')


def _import_all_st_tf_modules():
  """Imports every st_tf submodule (registers all gin configurables)."""
  errors = []
  for info in pkgutil.walk_packages(st_tf.__path__, prefix='st_tf.'):
    try:
      importlib.import_module(info.name)
    except Exception as e:  # pylint: disable=broad-except
      errors.append(f'{info.name}: {type(e).__name__}: {e}')
  return errors


_IMPORT_ERRORS = _import_all_st_tf_modules()


def _gin_files():
  files = []
  for dirpath, _, names in os.walk(_GIN_ROOT):
    for name in names:
      if name.endswith('.gin'):
        files.append(os.path.relpath(os.path.join(dirpath, name), _GIN_ROOT))
  return sorted(files)


_FILES = _gin_files()


def _parse(rel_path):
  if _REPO_ROOT not in gin.config._LOCATION_PREFIXES:  # pylint: disable=protected-access
    gin.add_config_file_search_path(_REPO_ROOT)
  try:
    gin.parse_config_files_and_bindings(
        [os.path.join(_GIN_ROOT, rel_path)],
        _EXTRA_BINDINGS.get(rel_path, []),
        finalize_config=False)
  except Exception as e:  # pylint: disable=broad-except
    pytest.fail(f'gin/{rel_path} does not parse: {type(e).__name__}: {e}')


def _bound_builder(rel_path):
  """Name of the model builder the parsed config binds, or None."""
  bound = []
  for name in _BUILDERS:
    try:
      gin.query_parameter(f'{name}.backbone')
      bound.append(name)
    except ValueError:
      pass
  if len(bound) > 1:
    pytest.fail(f'gin/{rel_path} binds more than one model: {bound}')
  return bound[0] if bound else None


def test_st_tf_modules_import():
  assert not _IMPORT_ERRORS, 'st_tf modules failed to import:\n' + '\n'.join(
      _IMPORT_ERRORS)


def test_shipped_model_files_exist():
  for name in ('models/digitscenes_tiny_detection.gin',
               'models/digitscenes_tiny_segmentation.gin',
               'paper/coco_spinenet143_retinanet.gin',
               'paper/coco_spinenet190_retinanet.gin',
               'paper/pascal_effnetb7_nasfpn_segmentation.gin'):
    assert name in _FILES, f'gin/{name} is missing'


@pytest.mark.parametrize('rel_path', _FILES)
def test_gin_file_parses(rel_path):
  _parse(rel_path)
  if rel_path.startswith('paper' + os.sep):
    builder = _bound_builder(rel_path)
    if builder is not None:
      for param in ('num_classes', 'input_size', 'backbone'):
        try:
          gin.query_parameter(f'{builder}.{param}')
        except ValueError:
          pytest.fail(f'gin/{rel_path} does not bind {builder}.{param}')


@pytest.mark.parametrize(
    'rel_path', [f for f in _FILES if f.startswith('models' + os.sep)])
def test_model_file_builds_tiny_model(rel_path):
  import st_tf.modeling as modeling  # pylint: disable=g-import-not-at-top
  _parse(rel_path)
  builder = _bound_builder(rel_path)
  assert builder is not None, (
      f'gin/{rel_path} is a model file but binds none of {_BUILDERS}')
  model = getattr(modeling, builder)()
  _, height, width, _ = model.backbone.inputs[0].shape
  outputs = model(tf.zeros([1, height, width, 3]), training=True)
  key = 'cls_outputs' if builder == 'build_retinanet' else 'logits'
  assert key in outputs, f'gin/{rel_path}: model outputs lack {key}'
  assert model.count_params() < 1_000_000, (
      f'gin/{rel_path}: {model.count_params()} params is not tiny')


def test_bad_gin_file_fails_with_its_name(tmp_path):
  bad = tmp_path / 'broken_model.gin'
  bad.write_text('build_retinanet.no_such_parameter = 3\n')
  with pytest.raises(pytest.fail.Exception, match='broken_model.gin'):
    _parse(str(bad))


def test_model_file_can_be_included_and_scoped(tmp_path):
  student = tmp_path / 'student.gin'
  student.write_text(
      "include 'gin/models/digitscenes_tiny_detection.gin'\n"
      'student/build_retinanet.head_num_filters = 48\n')
  _parse(str(student))
  assert gin.query_parameter('resnet.model_id') == 10
  assert gin.query_parameter('build_retinanet.head_num_filters') == 32
  assert gin.query_parameter('student/build_retinanet.head_num_filters') == 48


# ---- gin/templates: your-data templates and their model files -------------

_TEMPLATE_MODELS = sorted(
    f for f in _FILES if f.startswith(os.path.join('templates', 'models')))
# Model files that are built and run here (the paper's are parsed only).
# The tiny ones are built through gin/models/digitscenes_tiny_*.gin above.
_BUILT_TEMPLATE_MODELS = ('retinanet_spinenet49_mobile.gin',
                          'segmentation_mobilenetv2_deeplabv3.gin')


def _template_for(model_rel_path):
  name = os.path.basename(model_rel_path)
  return 'detection' if name.startswith('retinanet') else 'segmentation'


def _data_bindings(task, size=128):
  bindings = ["LABELED_PATTERN = '/data/mine/train-*'",
              "UNLABELED_PATTERN = '/data/mine/unlabeled-*'",
              "VAL_PATTERN = '/data/mine/val-*'",
              'NUM_CLASSES = 8', f'INPUT_SIZE = ({size}, {size})']
  if task == 'detection':
    bindings.append("VAL_ANNOTATIONS = '/data/mine/val.json'")
  return bindings


def test_template_files_ship_required_macros_and_no_digitscenes():
  for task in ('detection', 'segmentation'):
    with open(os.path.join(_GIN_ROOT, 'templates', f'{task}.gin')) as f:
      text = f.read()
    assert 'digitscenes' not in text.replace(
        'gin/demo/digitscenes', '').replace('gin/models/digitscenes', '')
    for macro in ('LABELED_PATTERN', 'UNLABELED_PATTERN', 'VAL_PATTERN',
                  'NUM_CLASSES', 'INPUT_SIZE') + (
                      ('VAL_ANNOTATIONS',) if task == 'detection' else ()):
      assert f'\n{macro} = %gin.REQUIRED' in text, (task, macro)
  assert len(_TEMPLATE_MODELS) >= 6, _TEMPLATE_MODELS


@pytest.mark.parametrize('model_file', _TEMPLATE_MODELS)
def test_template_with_model_file_parses_and_binds_the_data(model_file):
  from st_tf import main  # pylint: disable=g-import-not-at-top
  task = _template_for(model_file)
  main.parse_config([f'gin/templates/{task}.gin', f'gin/{model_file}'],
                    _data_bindings(task))
  builder = ('build_retinanet' if task == 'detection'
             else 'build_segmentation_model')
  assert gin.query_parameter('prepare.fns') == []
  assert gin.query_parameter(f'{builder}.backbone') is not None
  # The model takes the data's class count and size from the template.
  assert gin.query_parameter('%NUM_CLASSES') == 8
  assert gin.query_parameter('%INPUT_SIZE') == (128, 128)
  for param in ('num_classes', 'input_size'):
    assert str(gin.query_parameter(f'{builder}.{param}')) == (
        f'%{param.upper()}'), (model_file, param)


@pytest.mark.parametrize('name', _BUILT_TEMPLATE_MODELS)
def test_template_model_file_builds(name):
  import st_tf.modeling as modeling  # pylint: disable=g-import-not-at-top
  task = _template_for(name)
  _parse(os.path.join('templates', 'models', name))
  for binding in _data_bindings(task):
    gin.parse_config(binding)
  builder = ('build_retinanet' if task == 'detection'
             else 'build_segmentation_model')
  model = getattr(modeling, builder)()
  outputs = model(tf.zeros([1, 128, 128, 3]), training=True)
  key = 'cls_outputs' if task == 'detection' else 'logits'
  assert key in outputs
  assert model.count_params() < 3_000_000, (name, model.count_params())


def test_template_errors_name_the_missing_values_and_the_model_file():
  from st_tf import main  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=r'(?s)LABELED_PATTERN.*'
                     r'gin/templates/detection\.gin:\d+.*'
                     r'--gin_bindings="LABELED_PATTERN = \'data/mine/train-\*\'"'):
    main.parse_config(['gin/templates/detection.gin',
                       'gin/templates/models/retinanet_tiny.gin'])
  for task, builder, model_file in (
      ('detection', 'build_retinanet', 'retinanet_tiny'),
      ('segmentation', 'build_segmentation_model', 'segmentation_tiny')):
    gin.clear_config()
    with pytest.raises(ValueError, match=rf'@{builder}\(\) but bind no model'
                       rf'.*gin/templates/models/{model_file}\.gin'):
      main.parse_config([f'gin/templates/{task}.gin'], _data_bindings(task))
