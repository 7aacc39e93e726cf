"""Names -> objects, one mechanism for every st_tf registry.

    STRATEGIES = registry.Registry('strategy', binding='get_strategy.name')

    @STRATEGIES.register('mirrored')
    def _mirrored(tpu): ...

    STRATEGIES.register('tpu', _tpu)   # the same, without the decorator
    STRATEGIES.get('gpu_pod')
    # ValueError: unknown strategy 'gpu_pod'; expected one of ['mirrored',
    # 'tpu']; fix get_strategy.name

Every registry raises the same two errors: `register` refuses a taken name
("<kind> 'x' is already registered") and `get` an unknown one ("unknown
<kind> 'x'; expected one of [<the names, sorted>]", then "; fix <binding>"
when the registry or the caller names the gin binding or flag that chose
the value).

A `Registry` is also a mutable mapping in registration order (`in`,
iteration, `registry[name]` with a KeyError, `values()`), so code and tests
that used the old per-module dicts keep working; `registry[name] = obj`
replaces an entry without the duplicate check (what `monkeypatch.setitem`
does in tests).

A plain implementation, not Model Garden's `official.core.registry`: its
`register(collection, key)` / `lookup(collection, key)` read a '/' in a
key as a path into nested dicts (a flat name holding '/' would change
meaning), and both of its errors (KeyError "registered multiple times",
LookupError "never registered ... linked to the trainer binary") would have
to be pre-empted by our own checks to keep our ValueErrors, leaving it only
`collection[key] = obj` and `collection[key]` to do.
"""
from __future__ import annotations

from typing import (Any, Callable, Dict, Iterator, List, Mapping,
                    MutableMapping, Optional, TypeVar, Union)

T = TypeVar('T')

_MISSING: Any = object()


class Registry(MutableMapping[str, T]):
  """Objects of one kind (strategies, tasks, ...) by name."""

  def __init__(self, kind: str, entries: Optional[Mapping[str, T]] = None,
               binding: Optional[str] = None):
    """Creates the registry.

    Args:
      kind: what is registered, as the errors name it ('strategy', 'task').
      entries: name -> object registered at once, in their order.
      binding: the gin binding or flag users set the name with (named in
        the unknown-name error), e.g. 'get_strategy.name'.
    """
    self.kind = kind
    self.binding = binding
    self._entries: Dict[str, T] = {}
    for name, obj in (entries or {}).items():
      self.register(name, obj)

  def register(self, name: str,
               obj: T = _MISSING) -> Union[T, Callable[[T], T]]:
    """Adds `obj` under `name` and returns it; without `obj`, a decorator.

    Raises:
      ValueError: `name` is already registered.
    """
    if obj is _MISSING:
      return lambda target: self.register(name, target)
    if name in self._entries:
      raise ValueError(f'{self.kind} {name!r} is already registered')
    self._entries[name] = obj
    return obj

  def get(self, name: str, default: Any = _MISSING, *,
          binding: Optional[str] = None) -> T:
    """The object registered as `name`.

    Args:
      name: a registered name.
      default: returned for an unknown name if given (as `dict.get`).
      binding: the gin binding or flag that chose `name`, for the error
        (default: the registry's).

    Raises:
      ValueError: unknown `name` and no `default`; the message names the
        kind, the value, the known names and the binding to fix.
    """
    if name in self._entries:
      return self._entries[name]
    if default is not _MISSING:
      return default
    message = (f'unknown {self.kind} {name!r}; expected one of '
               f'{self.names()}')
    binding = binding or self.binding
    raise ValueError(message + (f'; fix {binding}' if binding else ''))

  def names(self) -> List[str]:
    """The registered names, sorted."""
    return sorted(self._entries)

  def __contains__(self, name: object) -> bool:
    return name in self._entries

  def __getitem__(self, name: str) -> T:
    return self._entries[name]

  def __setitem__(self, name: str, obj: T) -> None:
    self._entries[name] = obj

  def __delitem__(self, name: str) -> None:
    del self._entries[name]

  def __iter__(self) -> Iterator[str]:
    return iter(self._entries)

  def __len__(self) -> int:
    return len(self._entries)

  def __repr__(self) -> str:
    return f'Registry({self.kind!r}, names={self.names()})'
