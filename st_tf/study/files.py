"""Atomic writes for the study's outputs (temp name, then rename)."""
from __future__ import annotations

import json
import os
from typing import Any


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically (a crash leaves the old file)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, data: Any) -> None:
  """Writes `data` as indented JSON atomically."""
  write_text(path, json.dumps(data, indent=2, sort_keys=True) + '\n')


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)
