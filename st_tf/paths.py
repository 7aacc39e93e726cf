"""Path spelling: one normal form for local paths, URLs left alone.

`normalize` is applied once where a path becomes part of persistent state
(pseudo-label settings compared on resume), so `data/x.tfrecord` and
`/home/me/data/x.tfrecord` are the same file in two runs. URLs such as
`gs://bucket/x` or `ram://x` are returned unchanged: `os.path.abspath`
would turn `gs://b/x` into `<cwd>/gs:/b/x`.
"""
from __future__ import annotations

import os


def is_url(path: str) -> bool:
  """True for `scheme://...` paths (GCS, ram://, HDFS, ...)."""
  return '://' in path


def normalize(path: str) -> str:
  """Absolute, normalized local path (`~` expanded); URLs unchanged."""
  if is_url(path):
    return path
  return os.path.abspath(os.path.expanduser(path))


# The source checkout's root (gin includes and the demo data paths are
# relative to it).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
