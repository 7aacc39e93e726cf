"""Unique `ram://` folders: TensorFlow's in-memory filesystem stands in for
GCS in the tests (paths with a scheme, no local disk, no real folders)."""
import uuid


def folder(name: str) -> str:
  """A fresh `ram://` folder (the filesystem lives as long as the process)."""
  return f'ram://{name}-{uuid.uuid4().hex[:8]}'
