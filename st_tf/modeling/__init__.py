"""Gin builders over Model Garden backbones, decoders and heads.

Importing this package registers every modeling gin configurable:
backbones (`resnet`, `spinenet`, `spinenet_mobile`, `efficientnet`,
`mobilenet`), decoders (`identity_decoder`, `fpn`, `nasfpn`, `aspp`) and the
model builders `build_retinanet` and `build_segmentation_model`.
"""
from st_tf.modeling import backbones
from st_tf.modeling import decoders
from st_tf.modeling.detection import build_retinanet
from st_tf.modeling.segmentation import build_segmentation_model

__all__ = ['backbones', 'decoders', 'build_retinanet',
           'build_segmentation_model']
