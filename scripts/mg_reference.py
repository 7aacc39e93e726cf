"""Model Garden experiment overrides equal to our DigitScenes teacher gin.

Shared by scripts/compare_mg_trainer.py and scripts/bench_train_step.py, so
both compare against exactly the same Model Garden job. Mirrors
gin/demo/digitscenes_teacher_detection.gin (+ the tiny model gin): ResNet-10
x0.25, FPN(32, separable), 2-conv separable head, levels 3-5, anchor size 2,
128 px, S1 augmentation, SGD + momentum, warmup + cosine, L2 4e-5, clip 10.
"""
import os


def mg_config(data_dir: str, train_steps: int, batch_size: int) -> dict:
  """Model Garden experiment overrides equal to the teacher gin file."""
  return {
      'runtime': {'distribution_strategy': 'one_device', 'num_gpus': 0,
                  'mixed_precision_dtype': 'float32'},
      'task': {
          'annotation_file': os.path.join(data_dir, 'val.json'),
          'init_checkpoint': '',
          'model': {
              'num_classes': 11, 'input_size': [128, 128, 3],
              'min_level': 3, 'max_level': 5,
              'anchor': {'num_scales': 3, 'aspect_ratios': [0.5, 1.0, 2.0],
                         'anchor_size': 2.0},
              'backbone': {'type': 'resnet',
                           'resnet': {'model_id': 10,
                                      'depth_multiplier': 0.25}},
              'decoder': {'type': 'fpn',
                          'fpn': {'num_filters': 32,
                                  'use_separable_conv': True}},
              'head': {'num_convs': 2, 'num_filters': 32,
                       'use_separable_conv': True},
              'norm_activation': {'activation': 'relu',
                                  'use_sync_bn': False,
                                  'norm_momentum': 0.99,
                                  'norm_epsilon': 0.001},
              'detection_generator': {'nms_version': 'batched',
                                      'pre_nms_score_threshold': 0.05,
                                      'nms_iou_threshold': 0.5,
                                      'max_num_detections': 100},
          },
          'losses': {'l2_weight_decay': 4e-5},
          'train_data': {
              'input_path': os.path.join(data_dir, 'labeled-*'),
              'is_training': True, 'global_batch_size': batch_size,
              'dtype': 'float32', 'shuffle_buffer_size': 1000,
              'parser': {'aug_rand_hflip': True, 'aug_scale_min': 0.8,
                         'aug_scale_max': 1.2},
          },
          'validation_data': {
              'input_path': os.path.join(data_dir, 'val-*'),
              'is_training': False, 'global_batch_size': 50,
              'dtype': 'float32', 'drop_remainder': False,
          },
      },
      'trainer': {
          'train_steps': train_steps,
          'validation_steps': 10,  # 500 val images / 50
          'validation_interval': train_steps,
          'steps_per_loop': 250, 'summary_interval': 250,
          'checkpoint_interval': 250,
          'optimizer_config': {
              'optimizer': {'type': 'sgd',
                            'sgd': {'momentum': 0.9, 'global_clipnorm': 10.0}},
              'learning_rate': {'type': 'cosine',
                                'cosine': {'initial_learning_rate': 0.08,
                                           'decay_steps': train_steps}},
              'warmup': {'type': 'linear',
                         'linear': {'warmup_steps': 100,
                                    'warmup_learning_rate': 0.008}},
          },
      },
  }
