"""Atomic JSON writes (temporary name, then rename) on any tf.io.gfile path.

A crash while writing leaves the previous file (or none), never a truncated
one: completion markers (`digitscenes.json`, `classification.json`,
`pretrain_metrics.json`) rely on it.
"""
from __future__ import annotations

import json
from typing import Any, Optional

import tensorflow as tf


def write_json(path: str, data: Any, indent: Optional[int] = None) -> None:
  """Writes `data` as JSON to `path` atomically (`path.tmp`, then rename)."""
  tmp = path + '.tmp'
  with tf.io.gfile.GFile(tmp, 'w') as f:
    json.dump(data, f, indent=indent)
  tf.io.gfile.rename(tmp, path, overwrite=True)
