"""`Task`: what differs between detection and segmentation, in one place.

A task is one object (`st_tf.tasks.detection.DETECTION`, ...) registered by
name in `st_tf.tasks`; callers look it up with `tasks.get(name)` from the
string they hold (`Teacher.task`, a manifest's or summary's 'task', gin's
`export.task`) and call its hooks instead of comparing names. The task's
name stays the string written to manifests and reports.

The hooks refer to the existing code (labelers, quality scoring, serving
modules, evaluation functions) rather than holding it; the modules they
need are imported inside the hooks, so `st_tf.tasks` imports nothing of
`st_tf.pseudo_label`, `st_tf.export` or `st_tf.evaluation` at load time
(those modules import `st_tf.tasks`).
"""
from __future__ import annotations

import abc
from typing import (TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional,
                    Sequence, Tuple)

if TYPE_CHECKING:  # Type hints only: these modules import st_tf.tasks.
  import tensorflow as tf
  from st_tf.pseudo_label import inference
  from st_tf.pseudo_label import inputs
  from st_tf.pseudo_label import options as options_lib
  from st_tf.pseudo_label import teacher as teacher_lib
  from st_tf.pseudo_label import thresholds as thresholds_lib
  from st_tf.pseudo_label import writer as writer_lib

# `(network_fn, post_fn)` of `inference.InferenceStages` (see `stage_fns`).
StageFns = Tuple[Callable[..., Any], Callable[[Any], Any]]


class Task(abc.ABC):
  """One task's names, keys and hooks (see the module docstring).

  Attributes:
    name: the task's name ('detection'), as written in manifests,
      summary.json and gin (`export.task`).
    metric: the `eval_metrics.json` key self-training reports by default
      (gin `self_train.metric`).
    label_unit: what a pseudo-label count counts ('boxes', 'pixels').
    ground_truth_key: a `tf.Example` feature (`st_tf.data.schema`) that a
      record holding this task's labels has.
    signature_outputs: the outputs of our export's `serving_default`
      (`st_tf.export.saved_model`), which tell a SavedModel's task.
    model_builder: the gin name of this task's network builder, whose
      `backbone` a model file of gin/templates/models/ binds.
    example_model_file: such a model file (named in errors).
  """

  name: str
  metric: str
  label_unit: str
  ground_truth_key: str
  signature_outputs: Tuple[str, ...]
  model_builder: str
  example_model_file: str

  def __repr__(self) -> str:
    return f'<Task {self.name}>'

  # Models, export, evaluation.

  @abc.abstractmethod
  def network_class(self) -> type:
    """The Model Garden network class of this task's checkpoints."""

  @abc.abstractmethod
  def serving_module(self) -> type:
    """Its `st_tf.export.saved_model` serving module class."""

  @abc.abstractmethod
  def per_class(self) -> Tuple[str, str, str]:
    """The per-class metric of `eval_metrics.json`: (key prefix, name,
    what the summary's per-class table title adds)."""

  # Teachers (`st_tf.pseudo_label.teacher`, `mg_teacher`).

  @abc.abstractmethod
  def checkpoint_forward(self, teacher: 'teacher_lib.CheckpointTeacher',
                         images: 'tf.Tensor') -> Dict[str, Any]:
    """A checkpoint teacher's raw network outputs (no post-processing)."""

  def checkpoint_detection_stages(
      self, teacher: 'teacher_lib.CheckpointTeacher', generator: Any
  ) -> Optional[Tuple[Callable[..., Any], Callable[..., Any]]]:
    """A checkpoint teacher's `(network, post)` detection stages; None: the
    `Teacher` default (everything in `network`)."""
    del teacher, generator
    return None

  def check_flip_tta(self, teacher: 'teacher_lib.Teacher',
                     flip_tta: bool) -> None:
    """ValueError when `teacher` cannot run `flip_tta` for this task."""
    del teacher, flip_tta

  @abc.abstractmethod
  def model_garden_match(self, outputs: Mapping[str, Any]) -> bool:
    """Whether a Model Garden `image_tensor` export's signature `outputs`
    ({name: TensorSpec}) are this task's (`mg_teacher`)."""

  def model_garden_input_size(self, outputs: Mapping[str, Any]
                              ) -> Optional[Sequence[int]]:
    """The input size its `outputs` tell (None: they do not)."""
    del outputs
    return None

  def model_garden_num_classes(self, outputs: Mapping[str, Any]
                               ) -> Optional[int]:
    """The class count its `outputs` tell (None: they do not)."""
    del outputs
    return None

  def model_garden_pad_value(self, params: Mapping[str, Any]
                             ) -> Optional[Tuple[float, ...]]:
    """The padding RGB its `params.yaml` sets (None: Model Garden's mean)."""
    del params
    return None

  # Pseudo-labeling (`st_tf.pseudo_label`).

  @abc.abstractmethod
  def stage_fns(self, teacher: 'teacher_lib.Teacher',
                spec: 'inference.StageSpec') -> StageFns:
    """`InferenceStages`' `(network_fn, post_fn)` for this task."""

  @abc.abstractmethod
  def resolve_thresholds(self, request: 'options_lib.ThresholdOptions',
                         quality_thresholds: Sequence[float],
                         teacher: 'teacher_lib.Teacher',
                         strategy: 'tf.distribute.Strategy',
                         all_units: Sequence['inputs.WorkUnit'],
                         nms: 'options_lib.InferenceOptions',
                         job: 'options_lib.JobOptions'
                         ) -> 'thresholds_lib.Thresholds':
    """The job's thresholds (`thresholds.resolve`; 'auto' where supported)."""

  @abc.abstractmethod
  def make_labeler(self, options: Mapping[str, Any],
                   pixels: 'options_lib.PixelOptions',
                   quality_thresholds: Sequence[float]) -> Any:
    """This task's labeler (`labeler.py`); `options`: the keyword
    arguments every labeler takes."""

  @abc.abstractmethod
  def job_quality(self, folder: 'writer_lib.OutputFolder',
                  seg_counts: Mapping[str, list],
                  quality_thresholds: Sequence[float]) -> Optional[dict]:
    """A scored job's pseudo-label quality (None: nothing was scored);
    `seg_counts`: the segmentation confusion counts of its shards."""

  def resumed_counts(self, entry: Mapping[str, Any]
                     ) -> Optional[Mapping[str, list]]:
    """The quality counts a finished shard's manifest `entry` holds (None:
    the task keeps none there)."""
    del entry
    return None

  def has_quality_rows(self, path: str) -> bool:
    """Whether a finished shard's quality rows file `path` counts as its
    scoring (False: the task writes none)."""
    del path
    return False
