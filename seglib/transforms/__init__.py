"""Augmentation and input pipelines (Albumentations), their checks, compositing."""
