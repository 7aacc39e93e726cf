"""The anchor contract between the detection parser and the RetinaNet head.

The parser (`st_tf.data.parsers.DetectionParser`) encodes box targets
against Model Garden anchors built from (min_level, max_level, num_scales,
aspect_ratios, anchor_size); the head (`build_retinanet`) predicts one
output per anchor in the same order. If the two disagree, e.g. the parser
keeps its default aspect order (0.5, 1, 2) while the model uses the
released (1, 2, 0.5), training silently learns against the wrong anchors:
the shapes match, only the meaning differs.

`check_parser_anchors` runs when `build_retinanet` builds a model: it reads
the gin bindings of `DetectionParser` in every scope they are made in
(an unscoped binding applies to all scopes, a scoped one overrides it, the
parser's own default fills the rest) and raises ValueError naming the scope,
the parameter, both values and the fix when one differs from the model's.
Configs that bind no `DetectionParser` parameter (the parser is then not
built from gin) are not checked.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Dict, List, Sequence, Tuple

from gin import config as gin_config

# At import time: importing it later, inside a gin call, would register the
# parsers' and policies' configurables after gin locked its config.
from st_tf.data import parsers

PARSER_NAME = 'DetectionParser'
FIELDS = ('min_level', 'max_level', 'num_scales', 'aspect_ratios',
          'anchor_size')


@dataclasses.dataclass(frozen=True)
class AnchorSpec:
  """Model Garden anchor settings (see `official.vision.ops.anchor`).

  Attributes:
    min_level: lowest level with anchors (stride 2**min_level).
    max_level: highest level with anchors.
    num_scales: anchor scales per octave.
    aspect_ratios: width / height ratios, in head output order.
    anchor_size: anchor base size in units of the level stride.
  """
  min_level: int
  max_level: int
  num_scales: int
  aspect_ratios: Tuple[float, ...]
  anchor_size: float

  @classmethod
  def create(cls, min_level: int, max_level: int, num_scales: int,
             aspect_ratios: Sequence[float], anchor_size: float
            ) -> 'AnchorSpec':
    return cls(int(min_level), int(max_level), int(num_scales),
               tuple(float(a) for a in aspect_ratios), float(anchor_size))


def resolve_value(value: Any) -> Any:
  """A bound gin value with macros (`%NAME`) evaluated."""
  if isinstance(value, gin_config.ConfigurableReference) and (
      value.configurable.name == 'macro'):
    return resolve_value(value.scoped_configurable_fn())
  return value


def _parser_bindings() -> Dict[str, Dict[str, Any]]:
  """{scope: {param: value}} of every DetectionParser binding in gin."""
  out: Dict[str, Dict[str, Any]] = {}
  # gin has no public listing of the bound (scope, configurable) pairs.
  for (scope, selector), params in gin_config._CONFIG.items():  # pylint: disable=protected-access
    if selector.split('.')[-1] == PARSER_NAME:
      out[scope] = {k: resolve_value(v) for k, v in params.items() if k in FIELDS}
  if not out:
    return out
  unscoped = out.get('', {})
  merged = {}
  for scope in out:
    values = dict(unscoped)
    parts = scope.split('/') if scope else []
    for i in range(1, len(parts) + 1):  # Outer scopes, then inner ones.
      values.update(out.get('/'.join(parts[:i]), {}))
    merged[scope] = values
  return merged


def _parser_defaults() -> Dict[str, Any]:
  params = inspect.signature(parsers.DetectionParser.__init__).parameters
  return {k: params[k].default for k in FIELDS}


def parser_anchor_specs() -> Dict[str, AnchorSpec]:
  """{gin scope ('' = unscoped): the anchors DetectionParser uses there}."""
  bindings = _parser_bindings()
  defaults = _parser_defaults()
  return {scope: AnchorSpec.create(**{**defaults, **values})
          for scope, values in bindings.items()}


def check_parser_anchors(model: AnchorSpec) -> None:
  """ValueError unless every gin-configured DetectionParser uses `model`.

  Args:
    model: the anchors of the RetinaNet being built.
  """
  errors: List[str] = []
  for scope, spec in sorted(parser_anchor_specs().items()):
    for field in FIELDS:
      have, want = getattr(spec, field), getattr(model, field)
      if have != want:
        name = f'{scope}/{PARSER_NAME}' if scope else PARSER_NAME
        errors.append(f'{name}.{field} = {have!r} but build_retinanet.'
                      f'{field} = {want!r}')
  if errors:
    raise ValueError(
        'st_tf/modeling/anchors.py: the detection parser encodes targets '
        'against other anchors than the RetinaNet head predicts: '
        + '; '.join(errors) + '. Bind both from the same macros in the gin '
        'file (e.g. `DetectionParser.aspect_ratios = %ASPECT_RATIOS` next to '
        '`build_retinanet.aspect_ratios = %ASPECT_RATIOS`; the gin/paper '
        'model files do).')
