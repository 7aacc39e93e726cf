"""Atomic writes for the study's outputs (`st_tf.atomic_io`)."""
from __future__ import annotations

import json
import os
from typing import Any

from st_tf import atomic_io


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically (a crash leaves the old file)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  atomic_io.write_text(path, text)


def write_json(path: str, data: Any) -> None:
  """Writes `data` as indented JSON atomically."""
  write_text(path, json.dumps(data, indent=2, sort_keys=True) + '\n')


def read_json(path: str) -> Any:
  with open(path) as f:  # FileNotFoundError when missing (callers rely on it).
    return json.load(f)
