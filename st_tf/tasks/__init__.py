"""The tasks st_tf trains, by name: `get('detection')` -> its `Task`.

    from st_tf import tasks
    task = tasks.get(teacher.task)   # ValueError naming the known tasks
    labeler = task.make_labeler(...)

Each task is one object of a `base.Task` subclass (`detection.DETECTION`,
`segmentation.SEGMENTATION`), registered here in this order (the order
`all_tasks` lists them, e.g. when a teacher's task is told from its
network or signature). Adding a task: DEVELOPERS.md, "Adding a task".
"""
from __future__ import annotations

from typing import List, Tuple

from st_tf import registry
from st_tf.tasks.base import Task
from st_tf.tasks.detection import DETECTION
from st_tf.tasks.segmentation import SEGMENTATION

_TASKS: registry.Registry[Task] = registry.Registry('task')


def register(task: Task) -> Task:
  """Adds `task` under `task.name` (ValueError if the name is taken)."""
  return _TASKS.register(task.name, task)


def names() -> List[str]:
  """The registered task names, sorted."""
  return _TASKS.names()


def all_tasks() -> Tuple[Task, ...]:
  """The registered tasks in registration order."""
  return tuple(_TASKS.values())


def get(name: str) -> Task:
  """The task registered as `name`; ValueError naming the known ones."""
  return _TASKS.get(name)


def for_metric(metric: str) -> Task:
  """The task whose default `metric` is `metric`, else segmentation (a
  report without pseudo-label rounds knows only its metric: any metric but
  detection's 'AP' has always meant segmentation there)."""
  for task in _TASKS.values():
    if task.metric == metric:
      return task
  return SEGMENTATION


register(DETECTION)
register(SEGMENTATION)

__all__ = ['DETECTION', 'SEGMENTATION', 'Task', 'all_tasks', 'for_metric',
           'get', 'names', 'register']
