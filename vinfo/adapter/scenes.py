"""The synthetic street scenes (vinfo's default data) and the Cityscapes label ids."""

from taskcodecs.data.labels import label_ids_to_train_ids
from taskcodecs.data.synthetic import generate_dataset
from taskcodecs.experiments.train_config import SyntheticData

__all__ = ["SyntheticData", "generate_dataset", "label_ids_to_train_ids"]
