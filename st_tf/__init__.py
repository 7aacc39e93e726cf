"""st_tf: self-training (Zoph et al. 2020) for detection and segmentation in TensorFlow."""
