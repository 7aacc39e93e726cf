"""The anchors shared by the detection parser and the RetinaNet head.

The parser (`st_tf.data.parsers.DetectionParser`) encodes box targets
against Model Garden anchors; the head (`build_retinanet`) predicts one
output per anchor in the same order. If the two disagree, e.g. aspect order
(0.5, 1, 2) in one and the released (1, 2, 0.5) in the other, training
silently learns against the wrong anchors: the shapes match, only the
meaning differs. So both take ONE `AnchorSpec`, by default the gin
configurable `Anchors` (`configured_anchors`), bound once in gin:

  Anchors.min_level = 3
  Anchors.aspect_ratios = [1.0, 2.0, 0.5]

The mismatch left is a SCOPED binding (`student/Anchors.anchor_size = 4.0`):
the parser built in one scope would differ from the model built in another.
`check_anchor_scopes` runs when `build_retinanet` builds a model: it reads
the gin bindings of `Anchors` in every scope they are made in (an unscoped
binding applies to all scopes, a scoped one overrides it, the defaults fill
the rest) and raises ValueError naming the scope, the field, both values and
the fix when one differs from the model's anchors.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

import gin
from gin import config as gin_config

GIN_NAME = 'Anchors'
FIELDS = ('min_level', 'max_level', 'num_scales', 'aspect_ratios',
          'anchor_size')


@dataclasses.dataclass(frozen=True)
class AnchorSpec:
  """Model Garden anchor settings (see `official.vision.ops.anchor`).

  Defaults are Model Garden's (`retinanet.Anchor`, levels 3-7). At level l
  (stride 2**l pixels) each location has `num_anchors` anchors: for scale
  s = 0..num_scales-1 (outer) and ratio r (inner; the head's output order)
  an anchor of base size b = anchor_size * 2**l * 2**(s / num_scales)
  pixels, width b * sqrt(r) and height b / sqrt(r).

  Attributes:
    min_level: lowest level with anchors (stride 2**min_level pixels).
    max_level: highest level with anchors; inputs are padded to multiples
      of 2**max_level pixels.
    num_scales: anchor scales per octave.
    aspect_ratios: width / height ratios, in head output order.
    anchor_size: anchor base size in units of the level stride.
  """
  min_level: int = 3
  max_level: int = 7
  num_scales: int = 3
  aspect_ratios: Tuple[float, ...] = (0.5, 1.0, 2.0)
  anchor_size: float = 4.0

  def __post_init__(self):
    normalized = dict(
        min_level=int(self.min_level), max_level=int(self.max_level),
        num_scales=int(self.num_scales),
        aspect_ratios=tuple(float(a) for a in self.aspect_ratios),
        anchor_size=float(self.anchor_size))
    for name, value in normalized.items():
      object.__setattr__(self, name, value)
    problems = []
    if self.min_level > self.max_level:
      problems.append(f'min_level {self.min_level} > max_level '
                      f'{self.max_level}')
    if self.num_scales < 1:
      problems.append(f'num_scales {self.num_scales} < 1')
    if not self.aspect_ratios or min(self.aspect_ratios) <= 0:
      problems.append(f'aspect_ratios {self.aspect_ratios} must be '
                      'non-empty and positive')
    if self.anchor_size <= 0:
      problems.append(f'anchor_size {self.anchor_size} must be > 0')
    if problems:
      raise ValueError('st_tf/modeling/anchors.py: bad anchors: '
                       + '; '.join(problems) + f'. Fix the `{GIN_NAME}.*` '
                       'bindings (or the AnchorSpec arguments).')

  @property
  def num_anchors(self) -> int:
    """Anchors per location and level (num_scales * len(aspect_ratios))."""
    return self.num_scales * len(self.aspect_ratios)

  def model_garden_kwargs(self) -> Dict[str, Any]:
    """Keyword arguments of `anchor.build_anchor_generator` /
    `retinanet_input.Parser` (aspect ratios as a list)."""
    return dict(min_level=self.min_level, max_level=self.max_level,
                num_scales=self.num_scales,
                aspect_ratios=list(self.aspect_ratios),
                anchor_size=self.anchor_size)


_DEFAULT = AnchorSpec()


@gin.configurable(GIN_NAME)
def configured_anchors(
    min_level: int = _DEFAULT.min_level,
    max_level: int = _DEFAULT.max_level,
    num_scales: int = _DEFAULT.num_scales,
    aspect_ratios: Sequence[float] = _DEFAULT.aspect_ratios,
    anchor_size: float = _DEFAULT.anchor_size) -> AnchorSpec:
  """The gin-configured anchors (gin name `Anchors`; see `AnchorSpec`).

  `build_retinanet` and `DetectionParser` call this when not given anchors,
  so one unscoped `Anchors.<field> = ...` binding reaches both.
  """
  return AnchorSpec(min_level, max_level, num_scales, aspect_ratios,
                    anchor_size)


def resolve(anchors: Optional[AnchorSpec], where: str) -> AnchorSpec:
  """`anchors`, or the gin-configured `Anchors()` when None.

  Args:
    anchors: an `AnchorSpec` or None.
    where: the parameter, for the error (e.g. 'build_retinanet.anchors').
  """
  if anchors is None:
    return configured_anchors()
  if not isinstance(anchors, AnchorSpec):
    raise TypeError(
        f'{where} must be an st_tf.modeling.anchors.AnchorSpec or None (the '
        f'gin-configured `{GIN_NAME}()`), got {type(anchors).__name__} '
        f'{anchors!r}. Bind `{GIN_NAME}.<field> = ...` in gin instead.')
  return anchors


def resolve_value(value: Any) -> Any:
  """A bound gin value with macros (`%NAME`) evaluated."""
  if isinstance(value, gin_config.ConfigurableReference) and (
      value.configurable.name == 'macro'):
    return resolve_value(value.scoped_configurable_fn())
  return value


def _bindings() -> Dict[str, Dict[str, Any]]:
  """{scope: {field: value}} of the `Anchors` bindings in effect per scope.

  Scopes are those gin binds `Anchors` in; each merges the unscoped
  bindings, then outer scopes, then inner ones (gin's lookup order).
  """
  out: Dict[str, Dict[str, Any]] = {}
  # gin has no public listing of the bound (scope, configurable) pairs.
  for (scope, selector), params in gin_config._CONFIG.items():  # pylint: disable=protected-access
    if selector.split('.')[-1] == GIN_NAME:
      out[scope] = {k: resolve_value(v) for k, v in params.items()
                    if k in FIELDS}
  merged = {}
  for scope in out:
    values = dict(out.get('', {}))
    parts = scope.split('/') if scope else []
    for i in range(1, len(parts) + 1):  # Outer scopes, then inner ones.
      values.update(out.get('/'.join(parts[:i]), {}))
    merged[scope] = values
  return merged


def gin_anchor_specs() -> Dict[str, AnchorSpec]:
  """{gin scope ('' = unscoped): the anchors `Anchors()` gives there}, for
  the scopes gin binds `Anchors` in (empty when it binds none)."""
  defaults = dataclasses.asdict(_DEFAULT)
  return {scope: AnchorSpec(**{**defaults, **values})
          for scope, values in _bindings().items()}


def check_anchor_scopes(model: AnchorSpec) -> None:
  """ValueError unless `Anchors` gives `model` in every scope gin binds it.

  Args:
    model: the anchors of the RetinaNet being built.
  """
  errors: List[str] = []
  for scope, spec in sorted(gin_anchor_specs().items()):
    for field in FIELDS:
      have, want = getattr(spec, field), getattr(model, field)
      if have != want:
        name = f'{scope}/{GIN_NAME}' if scope else GIN_NAME
        errors.append(f'{name}.{field} = {have!r} but the RetinaNet is '
                      f'built with {field} = {want!r}')
  if errors:
    raise ValueError(
        'st_tf/modeling/anchors.py: the detection parser would encode '
        'targets against other anchors than the RetinaNet head predicts: '
        + '; '.join(errors) + '. Bind the anchors once, unscoped, in the '
        f'gin file (e.g. `{GIN_NAME}.anchor_size = 2.0`), and drop scoped '
        f'`<scope>/{GIN_NAME}.*` bindings; build_retinanet and '
        'DetectionParser then share them.')
