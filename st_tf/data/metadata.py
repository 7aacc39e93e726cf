"""Dataset metadata sidecars: the class names that travel with the records.

Every converter (`scripts/convert_coco.py`, `scripts/convert_voc.py`, the
DigitScenes makers) writes, beside the shards
``<prefix>-0000i-of-0000n.tfrecord``, the file ``<prefix>.metadata.json``
(`schema.METADATA_SUFFIX`; `files.match_files` never returns it, so a
pattern such as ``<prefix>*`` still matches only the records)::

  {"schema": "st_tf.dataset_metadata/1",
   "task": "detection" | "segmentation" | "classification",
   "num_classes": 91,               # largest class id + 1 (0 = background)
   "category_names": {"1": "person", "3": "car", ...},  # id -> name
   "num_examples": 3800, "files": ["train-00000-of-00004.tfrecord", ...],
   "source": "/data/annotations/instances_train.json"}

Ids are the class ids stored in the records (COCO category ids, gaps kept;
VOC palette indices). `category_names(file_pattern)` reads them back;
`configured_category_names()` (gin `category_names`) is what the gallery,
the self-training summary and the SavedModel export use when not given
names explicitly::

    category_names.file_pattern = %LABELED_PATTERN
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import gin
import tensorflow as tf

from st_tf import atomic_io
from st_tf.data import files as files_lib
from st_tf.data import schema

SCHEMA = 'st_tf.dataset_metadata/1'
_SHARD = re.compile(r'-\d+-of-\d+\.tfrecord$')
CategoryNames = Dict[int, str]


def metadata_path(output_prefix: str) -> str:
  """The sidecar of the shards written under `output_prefix`."""
  return output_prefix + schema.METADATA_SUFFIX


def normalize_names(names: Optional[Union[Mapping[Any, str], Sequence[str]]],
                    where: str = 'category names') -> CategoryNames:
  """{id: name} from a mapping (ids as ints or digit strings) or a list
  (index = id); ValueError naming `where` and the bad entry."""
  if not names:
    return {}
  items = (names.items() if isinstance(names, Mapping)
           else enumerate(names))
  out = {}
  for key, name in items:
    try:
      class_id = int(key)
    except (TypeError, ValueError) as e:
      raise ValueError(f'{where}: class id {key!r} is not an integer; use '
                       '{id: name} with integer ids') from e
    if class_id < 0 or not isinstance(name, str):
      raise ValueError(f'{where}: entry {key!r}: {name!r} needs an id >= 0 '
                       'and a string name')
    out[class_id] = name
  return out


def write_metadata(output_prefix: str, *, task: str,
                   category_names: Mapping[int, str],
                   num_examples: int, files: Sequence[str],
                   source: str = '',
                   num_classes: Optional[int] = None) -> str:
  """Writes `<output_prefix>.metadata.json` (atomically); returns its path.

  Args:
    output_prefix: the shards' prefix (as given to `write_sharded`).
    task: 'detection', 'segmentation' or 'classification' (DigitScenes
      scenes: 'detection+segmentation').
    category_names: {class id: name} (background included or not).
    num_examples: records written.
    files: the shard paths (their basenames are stored).
    source: where the labels came from (e.g. the COCO JSON).
    num_classes: default: largest id + 1.
  """
  names = normalize_names(category_names, metadata_path(output_prefix))
  if num_classes is None:
    num_classes = max(names, default=0) + 1
  path = metadata_path(output_prefix)
  atomic_io.write_json(path, {
      'schema': SCHEMA, 'task': task, 'num_classes': int(num_classes),
      'category_names': {str(k): v for k, v in sorted(names.items())},
      'num_examples': int(num_examples),
      'files': [os.path.basename(f) for f in files], 'source': source,
  }, indent=1)
  return path


def sidecar_of(record_file: str) -> Optional[str]:
  """The metadata file of a shard `<prefix>-i-of-n.tfrecord`, or None."""
  if not _SHARD.search(record_file):
    return None
  return metadata_path(_SHARD.sub('', record_file))


def read_metadata(file_pattern: Union[str, Sequence[str]]
                  ) -> Optional[Dict[str, Any]]:
  """The metadata of the records matching `file_pattern` (None: no sidecar).

  Raises:
    ValueError: the pattern matches nothing, or two sidecars of its files
      disagree on the class names (naming both files).
  """
  found: Dict[str, Dict[str, Any]] = {}
  for path in files_lib.match_files(file_pattern):
    sidecar = sidecar_of(path)
    if sidecar and sidecar not in found and tf.io.gfile.exists(sidecar):
      found[sidecar] = atomic_io.read_json(
          sidecar, fix='rerun the converter that wrote these records')
  if not found:
    return None
  (first, meta), *others = found.items()
  for other, other_meta in others:
    if other_meta.get('category_names') != meta.get('category_names'):
      raise ValueError(
          f'{first} and {other} (both matched by {file_pattern!r}) name the '
          'classes differently; convert both sets with the same categories '
          'or bind category_names.names')
  return meta


def category_names(file_pattern: Union[str, Sequence[str]]) -> CategoryNames:
  """{class id: name} of the records matching `file_pattern` ({}: none)."""
  meta = read_metadata(file_pattern)
  return normalize_names((meta or {}).get('category_names'),
                         f'metadata of {file_pattern!r}')


@gin.configurable('category_names')
def configured_category_names(
    file_pattern: Optional[Union[str, Sequence[str]]] = None,
    names: Optional[Union[Mapping[Any, str], Sequence[str]]] = None
) -> CategoryNames:
  """Gin: the run's class names: `names` if bound, else the metadata of
  `file_pattern` (the labeled records), else {} (bare ids are shown)."""
  if names:
    return normalize_names(names, 'category_names.names')
  return category_names(file_pattern) if file_pattern else {}


def display_name(class_id: int, names: Optional[Mapping[int, str]]) -> str:
  """The class's name, or its id as text when it has none."""
  return (names or {}).get(int(class_id), str(int(class_id)))
