"""Atomic, durable writes and torn-file-aware reads on any tf.io.gfile path.

The package's one writer of small files (JSON state, manifests, metrics,
markers, figures). `write_text` (and `write_bytes`) writes
`<path>.tmp<pid>`, makes it durable and renames it over `path`, so a crash
leaves the previous file (or none), never a truncated one; the temporary
file is removed when the write fails. `rename` / `rename_dir` publish a
file / folder written elsewhere under its final name.

* Local paths: the data is fsynced before the rename and the directory
  after it (a power cut cannot leave an empty file under the final name).
* URLs (`gs://`, `ram://`, ...): the filesystem's own write + rename (GCS
  objects appear whole). There is nothing to fsync.

`read_json` raises `TornFileError` (a ValueError naming the file and what
to do) for a file that is not valid JSON, e.g. one written without this
module by an older version on a filesystem without atomic renames.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

import tensorflow as tf

TMP_SUFFIX = '.tmp'


class TornFileError(ValueError):
  """A state file that does not parse (torn or truncated)."""


def is_local(path: str) -> bool:
  """True for a local filesystem path (no `scheme://`)."""
  return '://' not in path


def fsync_dir(directory: str) -> None:
  """Makes a local folder's entries (renames) durable; no-op for URLs."""
  if not is_local(directory):
    return
  try:
    fd = os.open(directory or '.', os.O_RDONLY)
  except OSError:
    return  # E.g. no permission to open the directory: best effort.
  try:
    os.fsync(fd)
  except OSError:
    pass  # Some filesystems do not fsync directories.
  finally:
    os.close(fd)


def sync(path: str) -> None:
  """Flushes a finished local file to disk (no-op for URLs)."""
  if not is_local(path):
    return
  with open(path, 'rb') as f:
    os.fsync(f.fileno())


def rename(src: str, dst: str) -> None:
  """Renames `src` over `dst`; local: fsyncs `src` first, the folder after."""
  if is_local(src):
    sync(src)
    os.replace(src, dst)
    fsync_dir(os.path.dirname(dst))
  else:
    tf.io.gfile.rename(src, dst, overwrite=True)


def _remove_quietly(path: str) -> None:
  try:
    if tf.io.gfile.exists(path):
      tf.io.gfile.remove(path)
  except (OSError, tf.errors.OpError):
    pass  # The original error matters more.


def rename_dir(src: str, dst: str) -> None:
  """Renames the folder `src` to `dst` (which must not hold files).

  Local: one rename(2), then the parent folder is fsynced (the caller makes
  the files inside durable, e.g. with `sync`). URLs: `tf.io.gfile.rename`
  (object stores copy object by object: not atomic there).
  """
  if is_local(src):
    os.replace(src, dst)
    fsync_dir(os.path.dirname(dst.rstrip('/')))
  else:
    tf.io.gfile.rename(src, dst)


def _write(path: str, data, mode: str) -> None:
  # Per process: concurrent writers of one file cannot clash (last wins).
  tmp = f'{path}{TMP_SUFFIX}{os.getpid()}'
  try:
    with tf.io.gfile.GFile(tmp, mode) as f:
      f.write(data)
    rename(tmp, path)
  except BaseException:
    _remove_quietly(tmp)
    raise


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically and durably (module docstring)."""
  _write(path, text, 'w')


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` (e.g. an encoded image) like `write_text`."""
  _write(path, data, 'wb')


def write_json(path: str, data: Any, indent: Optional[int] = None,
               sort_keys: bool = False) -> None:
  """Writes `data` as JSON to `path` atomically (see `write_text`).

  The text is built first (one write call; a value that does not serialize
  raises before any file is touched). `indent=None` writes one line through
  json's C encoder: several times faster for per-image data.
  """
  write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys))


def read_json(path: str, fix: str = '') -> Any:
  """Reads JSON; a file that does not parse raises `TornFileError`.

  Args:
    path: any tf.io.gfile path.
    fix: what the user should do, appended to the error message (default:
      delete the file).
  """
  with tf.io.gfile.GFile(path) as f:
    text = f.read()
  try:
    return json.loads(text)
  except ValueError as e:
    raise TornFileError(
        f'{path} is torn or not JSON ({len(text)} bytes: {e}). '
        f'{fix or f"Delete {path} and rerun."}') from e
