"""Pre-training classifier and its uint8 classification parser."""
import numpy as np
import pytest
import tensorflow as tf

from st_tf.datasets.digitscenes import classification as dsc
from st_tf.modeling import backbones
from st_tf.pretrain import inputs
from st_tf.pretrain import model as model_lib
from st_tf.training import init as init_lib


@pytest.fixture(scope='module')
def decoded(tmp_path_factory):
  out = str(tmp_path_factory.mktemp('cls'))
  dsc.generate_classification(out, num_train=4, num_val=2, num_shards=1,
                              image_format='png')
  records = tf.data.TFRecordDataset(dsc.file_pattern(out).replace(
      '*', '00000-of-00001'))
  return [inputs.decoder().decode(r) for r in records]


def test_eval_parse_keeps_the_uint8_image(decoded):
  image, label = inputs.ClassificationParser(mode='eval')(decoded[1])
  want, want_label, _ = dsc.crop_for('classification', 1, seed=0)
  assert image.dtype == tf.uint8 and label.dtype == tf.int32
  np.testing.assert_array_equal(image.numpy(), want)  # normalization undone
  assert int(label) == want_label


def test_train_parse_augments_inside_tf_data(decoded):
  parser = inputs.ClassificationParser(output_size=(32, 32),
                                       crop_area_range=(0.3, 0.6),
                                       mode='train')
  dataset = tf.data.Dataset.from_tensor_slices(
      {k: tf.stack([d[k] for d in decoded]) for k in decoded[0]})
  images, labels = next(iter(dataset.map(parser).batch(4)))
  assert images.shape == (4, 32, 32, 3) and images.dtype == tf.uint8
  assert labels.numpy().tolist() == [
      dsc.crop_for('classification', i, 0)[1] for i in range(4)]
  full, _ = inputs.ClassificationParser(output_size=(32, 32),
                                        mode='eval')(decoded[0])
  assert not np.array_equal(images[0].numpy(), full.numpy())  # cropped
  with pytest.raises(ValueError, match='mode'):
    inputs.ClassificationParser(mode='predict')
  with pytest.raises(ValueError, match='crop_area_range'):
    inputs.ClassificationParser(crop_area_range=(0.0, 1.0))


def test_classifier_is_backbone_pool_dense_on_uint8():
  backbone = backbones.resnet(model_id=10, depth_multiplier=0.25)
  model = model_lib.build_classifier(num_classes=10, input_size=(64, 64),
                                     backbone=backbone, l2_weight_decay=1e-4)
  logits = model(tf.fill([2, 64, 64, 3], tf.constant(200, tf.uint8)))
  assert logits.shape == (2, 10) and logits.dtype == tf.float32
  assert model.num_classes == 10
  assert init_lib.find_backbone(model) is model.backbone
  assert model.losses  # L2 on backbone and head kernels
  with pytest.raises(ValueError, match='num_classes'):
    model_lib.build_classifier(num_classes=1, backbone=backbone)
