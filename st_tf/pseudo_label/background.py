"""A single background thread running host work in submission order.

Pseudo-labeling hands each batch's numpy outputs to a `BackgroundWorker`
(record building, writing, quality bookkeeping) and goes on with the next
batch's inference: TensorFlow releases the GIL while it runs, so host and
device work overlap. The queue is bounded (`max_pending` batches), so a slow
writer throttles inference instead of growing memory.

Errors raised by a task are re-raised in the submitting thread at the next
`submit` / `flush`; later tasks are dropped.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Optional


class BackgroundWorker:
  """Runs `fn(*args)` tasks in order on one daemon thread."""

  def __init__(self, max_pending: int = 4, name: str = 'pseudo-label-writer'):
    if max_pending < 1:
      raise ValueError(f'max_pending must be >= 1, got {max_pending}')
    self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
    self._error: Optional[BaseException] = None
    self._cancelled = False
    self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
    self._thread.start()

  def _loop(self) -> None:
    while True:
      task = self._queue.get()
      try:
        if task is None:
          return
        if self._error is None and not self._cancelled:
          fn, args = task
          fn(*args)
      except BaseException as e:  # pylint: disable=broad-except
        self._error = e
      finally:
        self._queue.task_done()

  def _raise(self) -> None:
    if self._error is not None:
      error, self._error = self._error, None
      self._cancelled = True
      raise error

  def submit(self, fn: Callable[..., Any], *args) -> None:
    """Queues `fn(*args)`; blocks while `max_pending` tasks are queued."""
    self._raise()
    if not self._thread.is_alive():
      raise RuntimeError('BackgroundWorker is closed')
    self._queue.put((fn, args))

  def flush(self) -> None:
    """Waits until every queued task ran; re-raises a task's error."""
    self._queue.join()
    self._raise()

  def cancel(self) -> None:
    """Drops the queued tasks and waits for the running one (no raise)."""
    self._cancelled = True
    self._queue.join()
    self._cancelled = False
    self._error = None

  def close(self) -> None:
    """Stops the thread after the queued tasks (idempotent)."""
    if self._thread.is_alive():
      self._queue.put(None)
      self._thread.join()

  def __enter__(self) -> 'BackgroundWorker':
    return self

  def __exit__(self, *exc) -> None:
    if exc[0] is not None:
      self.cancel()
    self.close()
