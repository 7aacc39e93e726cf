"""The fused inference call == the two overlappable stages, bit for bit."""
import numpy as np
import pytest
import tensorflow as tf

from st_tf.datasets.digitscenes import scenes as digitscenes
from st_tf.pseudo_label import detection
from st_tf.pseudo_label import inference
from st_tf.pseudo_label import teacher as teacher_lib
from tests.pseudo_label import tiny


@pytest.mark.parametrize('task', ['detection', 'segmentation'])
def test_fused_call_equals_network_then_post(tmp_path, task):
  model_fn = (tiny.detection_model if task == 'detection' else
              tiny.segmentation_model)
  model_dir = str(tmp_path / 'teacher')
  tiny.save_checkpoint(model_fn(), model_dir, step=1)
  teacher = teacher_lib.checkpoint_teacher(model_dir=model_dir,
                                           model=model_fn)
  stages = inference.InferenceStages(
      teacher, tf.distribute.get_strategy(), batch_size=4,
      generator=detection.make_generator(0.3), flip=False,
      nms_iou_threshold=0.5, max_num_detections=100,
      num_classes=tiny.NUM_CLASSES, selection=detection.BoxSelection(0.5),
      quality_threshold=0.3)
  images = np.stack([digitscenes.scene_for('unlabeled', i, 0, tiny.SIZE)[0]
                     for i in range(4)])
  info = np.tile(np.array([[tiny.SIZE] * 2, [tiny.SIZE] * 2, [1, 1], [0, 0]],
                          np.float32), [4, 1, 1])
  for n in (4, 3):  # A full and a partial (padded) batch.
    fused = stages(images[:n], info[:n])
    staged = stages.post(stages.network(images[:n], info[:n]))
    assert set(fused) == set(staged)
    for key, value in staged.items():
      assert len(fused[key]) == n
      np.testing.assert_array_equal(fused[key], value, err_msg=key)
  if task == 'detection':
    assert fused['num_kept'].sum() + fused['valid'].sum() > 0

