"""Datasets: synthetic street scenes and the real Cityscapes and COCO 2017 loaders."""

from taskcodecs.data.errors import DatasetError

__all__ = ["DatasetError"]
