"""Segmentation IoU vs a numpy confusion matrix."""
import numpy as np
import pytest
import tensorflow as tf

from st_tf.evaluation import segmentation
from tests.evaluation import tiny_models


def _numpy_ious(masks, logits, num_classes):
  """Reference: upsample logits, argmax, confusion matrix over non-255."""
  up = tf.image.resize(logits, masks.shape[1:3], method='bilinear').numpy()
  pred = up.argmax(-1).reshape(-1)
  true = masks.reshape(-1)
  keep = true != 255
  cm = np.zeros([num_classes, num_classes], np.int64)
  np.add.at(cm, (true[keep], pred[keep]), 1)
  tp = np.diag(cm).astype(np.float64)
  union = cm.sum(0) + cm.sum(1) - tp
  per_class = np.where(union > 0, tp / np.maximum(union, 1), 0.0)
  return per_class, per_class[union > 0].mean()


def test_iou_matches_numpy_confusion_matrix():
  rng = np.random.RandomState(0)
  num_classes = 4
  evaluator = segmentation.SegmentationEvaluator(num_classes)
  all_masks, all_logits = [], []
  for _ in range(2):
    logits = rng.normal(size=[2, 8, 8, num_classes]).astype(np.float32)
    # Labels agree with the upsampled prediction on ~60% of pixels.
    up = tf.image.resize(logits, [32, 32]).numpy().argmax(-1)
    masks = np.where(rng.rand(2, 32, 32) < 0.6, up,
                     rng.randint(0, 3, [2, 32, 32]))  # class 3 only predicted
    masks[:, :, 28:] = 255  # padding / ignore
    masks[0, :4] = 255
    masks = masks[..., None].astype(np.int32)
    evaluator.update_state(masks, logits)
    all_masks.append(masks)
    all_logits.append(logits)
  per_class, mean = _numpy_ious(np.concatenate(all_masks)[..., 0],
                                np.concatenate(all_logits), num_classes)
  result = evaluator.result()
  assert result['mean_iou'] == pytest.approx(mean, abs=1e-5)
  for i in range(num_classes):
    assert result[f'iou/{i}'] == pytest.approx(per_class[i], abs=1e-5)
  assert 0.2 < mean < 0.9
  assert result['num_pixels'] == (np.concatenate(all_masks) != 255).sum()


def test_bad_inputs_raise():
  evaluator = segmentation.SegmentationEvaluator(3)
  with pytest.raises(ValueError, match='classes'):
    evaluator.update_state(np.zeros([1, 8, 8, 1]), np.zeros([1, 4, 4, 5]))
  with pytest.raises(ValueError, match='outside'):
    evaluator.update_state(np.full([1, 8, 8, 1], 7), np.zeros([1, 4, 4, 3]))
  with pytest.raises(ValueError, match='no valid'):
    evaluator.result()


def test_evaluate_segmentation_tiny_model():
  model = tiny_models.tiny_segmentation(num_classes=3, size=64)
  rng = np.random.RandomState(0)
  images = rng.randint(0, 255, [4, 64, 64, 3]).astype(np.uint8)
  masks = rng.randint(0, 3, [4, 64, 64, 1]).astype(np.int32)
  masks[:, 50:] = 255
  dataset = tf.data.Dataset.from_tensor_slices(
      (images, {'masks': masks})).batch(2)
  result = segmentation.evaluate_segmentation(model, dataset)
  logits = model(images, training=False)['logits'].numpy()
  per_class, mean = _numpy_ious(masks[..., 0], logits, 3)
  assert result['mean_iou'] == pytest.approx(mean, abs=1e-5)
  np.testing.assert_allclose([result[f'iou/{i}'] for i in range(3)],
                             per_class, atol=1e-5)
