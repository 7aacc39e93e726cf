"""Backbone pre-training by image classification (the paper's "ImageNet")."""
