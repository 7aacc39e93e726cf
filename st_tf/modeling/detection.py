"""Gin builder of a Model Garden RetinaNet (backbone + decoder + head + NMS).

The model is Model Garden's `RetinaNetModel`, assembled by
`official.vision.modeling.factory.build_retinanet` from a `RetinaNet` config
whose backbone and decoder parts come from gin references (see
`st_tf.modeling.backbones` and `st_tf.modeling.decoders`):

  build_retinanet.backbone = @spinenet_mobile()
  build_retinanet.decoder = @identity_decoder()

Inputs: NORMALIZED float images [B, H, W, 3] (Model Garden mean/std; the
wrapper model normalizes uint8 images before calling this model), H and W
equal to `input_size` and divisible by 2**anchors.max_level.

Outputs of `model(images, training=True)`:
  cls_outputs: {str(level): [B, H/2**l, W/2**l, num_anchors * num_classes]}
    logits, num_anchors = anchors.num_scales * len(anchors.aspect_ratios).
  box_outputs: {str(level): [B, H/2**l, W/2**l, num_anchors * 4]} encoded
    box regressions (Model Garden box coder, yxyx).
With `training=False` (optionally `image_shape=[B, 2]`, and `anchor_boxes`)
it also returns `detection_boxes` [B, max_num_detections, 4] in PIXELS of the
input image (yxyx; clipped to `image_shape` [B, 2] (h, w) when it is given), `detection_scores` [B, N], `detection_classes` [B, N]
(int, 1-based; background 0 never returned) and `num_detections` [B].

NMS is Model Garden's `MultilevelDetectionGenerator`: `nms_version` 'v1'
(per-class NMS, the released eval's), 'v2' or 'batched'; soft-NMS is
chosen with `soft_nms_sigma` (a float; Model Garden applies it with
`tf.image.non_max_suppression_with_scores` in 'v1' only, so another version
is an error here rather than silently hard NMS).

Anchors (levels, scales, aspect ratios, size): one `AnchorSpec`, by default
the gin configurable `Anchors` that `DetectionParser` reads too; a scoped
`Anchors` binding that would make the two differ fails at build time
(`st_tf.modeling.anchors`).

The backbone alone (for backbone-only checkpoint init, e.g. ImageNet) is the
model's `.backbone` attribute; `model.checkpoint_items` gives
{'backbone', 'decoder' (if any), 'head'}. With l2_weight_decay > 0 the L2
penalty is in `model.losses` (the loss must add `tf.add_n(model.losses)`).
"""
from typing import Optional, Sequence

import gin
import tf_keras

from official.vision.configs import backbones as backbones_cfg
from official.vision.configs import decoders as decoders_cfg
from official.vision.configs import retinanet as retinanet_cfg
from official.vision.modeling import factory
from st_tf.modeling import anchors as anchor_lib
from st_tf.modeling import common
from st_tf.modeling import decoders
from st_tf.modeling import features


def _check_nms(nms_version: str, soft_nms_sigma: Optional[float]) -> None:
  """ValueError for soft-NMS outside 'v1' (Model Garden would ignore it)."""
  if soft_nms_sigma is None:
    return
  if nms_version != 'v1':
    raise ValueError(
        f'st_tf/modeling/detection.py: build_retinanet.soft_nms_sigma = '
        f'{soft_nms_sigma} needs build_retinanet.nms_version = \'v1\' (Model '
        f'Garden applies soft-NMS in v1 only), got {nms_version!r}. Set '
        "nms_version = 'v1' or soft_nms_sigma = None.")
  if soft_nms_sigma < 0:
    raise ValueError(
        f'st_tf/modeling/detection.py: build_retinanet.soft_nms_sigma must '
        f'be >= 0 (0 = hard NMS) or None, got {soft_nms_sigma}.')


@gin.configurable
def build_retinanet(
    input_size: Sequence[int] = (640, 640),
    num_classes: int = gin.REQUIRED,
    backbone: backbones_cfg.Backbone = gin.REQUIRED,
    decoder: Optional[decoders_cfg.Decoder] = None,
    anchors: Optional[anchor_lib.AnchorSpec] = None,
    head_num_convs: int = 4,
    head_num_filters: int = 256,
    head_use_separable_conv: bool = False,
    head_share_level_convs: bool = True,
    activation: str = 'relu',
    use_sync_bn: bool = False,
    norm_momentum: float = 0.99,
    norm_epsilon: float = 0.001,
    apply_nms: bool = True,
    pre_nms_top_k: int = 5000,
    pre_nms_score_threshold: float = 0.05,
    nms_iou_threshold: float = 0.5,
    max_num_detections: int = 100,
    nms_version: str = 'v2',
    use_cpu_nms: bool = False,
    soft_nms_sigma: Optional[float] = None,
    use_class_agnostic_nms: bool = False,
    l2_weight_decay: float = 0.0,
) -> tf_keras.Model:
  """Builds a Model Garden RetinaNetModel.

  Args:
    input_size: (height, width) in pixels; multiples of
      2**anchors.max_level.
    num_classes: number of classes INCLUDING background (class 0).
    backbone: backbone config, e.g. gin `@spinenet_mobile()`.
    decoder: decoder config, e.g. `@fpn()`; None means `identity_decoder()`.
    anchors: the anchors (`AnchorSpec`: levels min_level..max_level of the
      decoder and head, scales, width / height ratios, size in units of
      the level stride); None = the gin-configured `Anchors()`, the ones
      `DetectionParser` uses by default.
    head_num_convs: convs per head tower.
    head_num_filters: filters of the head towers.
    head_use_separable_conv: separable convs in the head.
    head_share_level_convs: share head conv weights across levels.
    activation: activation of backbone/decoder/head ('relu', 'swish', ...).
    use_sync_bn: cross-replica batch norm.
    norm_momentum: batch-norm moving-average momentum.
    norm_epsilon: batch-norm epsilon.
    apply_nms: run NMS at inference (False returns decoded boxes/scores).
    pre_nms_top_k: boxes kept per level before NMS.
    pre_nms_score_threshold: score threshold before NMS.
    nms_iou_threshold: NMS IoU threshold.
    max_num_detections: detections kept per image.
    nms_version: 'v1', 'v2', 'batched' (Model Garden generator versions).
    use_cpu_nms: place NMS on CPU.
    soft_nms_sigma: soft-NMS sigma, None = hard NMS (nms_version 'v1'
      only; ValueError otherwise).
    use_class_agnostic_nms: class-agnostic NMS (nms_version 'v2' only).
    l2_weight_decay: L2 weight decay; the regularizer is l2(decay / 2).

  Returns:
    A built `RetinaNetModel` (see module docstring for inputs/outputs).
  """
  anchors = anchor_lib.resolve(anchors, 'build_retinanet.anchors')
  anchor_lib.check_anchor_scopes(anchors)
  common.check_input_size(input_size, anchors.max_level)
  common.check_num_classes(num_classes)
  _check_nms(nms_version, soft_nms_sigma)
  decoder = decoder if decoder is not None else decoders.identity_decoder()
  norm_activation = common.norm_activation_config(
      activation, use_sync_bn, norm_momentum, norm_epsilon)
  model_config = retinanet_cfg.RetinaNet(
      num_classes=num_classes,
      input_size=[int(input_size[0]), int(input_size[1]), 3],
      min_level=anchors.min_level,
      max_level=anchors.max_level,
      backbone=backbone,
      decoder=decoder,
      head=retinanet_cfg.RetinaNetHead(
          num_convs=head_num_convs,
          num_filters=head_num_filters,
          use_separable_conv=head_use_separable_conv,
          share_level_convs=head_share_level_convs),
      detection_generator=retinanet_cfg.DetectionGenerator(
          apply_nms=apply_nms,
          pre_nms_top_k=pre_nms_top_k,
          pre_nms_score_threshold=pre_nms_score_threshold,
          nms_iou_threshold=nms_iou_threshold,
          max_num_detections=max_num_detections,
          nms_version=nms_version,
          use_cpu_nms=use_cpu_nms,
          soft_nms_sigma=soft_nms_sigma,
          use_class_agnostic_nms=use_class_agnostic_nms),
      anchor=retinanet_cfg.Anchor(
          num_scales=anchors.num_scales,
          aspect_ratios=list(anchors.aspect_ratios),
          anchor_size=anchors.anchor_size),
      norm_activation=norm_activation)
  return _build(model_config, input_size,
                common.l2_regularizer(l2_weight_decay))


def _build(model_config: retinanet_cfg.RetinaNet, input_size: Sequence[int],
           regularizer: Optional[tf_keras.regularizers.Regularizer]
          ) -> tf_keras.Model:
  """Backbone, decoder (levels checked) and Model Garden's RetinaNetModel."""
  parts = features.build_features(model_config, input_size, regularizer)
  common.check_levels(parts.output_specs, model_config.min_level,
                      model_config.max_level, parts.levels_what)
  return factory.build_retinanet(
      input_specs=parts.input_specs,
      model_config=model_config,
      l2_regularizer=regularizer,
      backbone=parts.backbone,
      decoder=parts.decoder)
