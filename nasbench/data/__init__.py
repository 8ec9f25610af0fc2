"""Datasets as seeded in-memory splits, batched on-device augmentation, batch iteration."""

from __future__ import annotations

from nasbench.data._augment import Augmentation, default_augmentation
from nasbench.data._batches import iterate_batches
from nasbench.data._load import load_dataset, parse_spec
from nasbench.data._partition import RawDataset
from nasbench.data._registry import DATASETS, DatasetLoader
from nasbench.data._splits import DatasetSplits

__all__ = [
    "DATASETS",
    "Augmentation",
    "DatasetLoader",
    "DatasetSplits",
    "RawDataset",
    "default_augmentation",
    "iterate_batches",
    "load_dataset",
    "parse_spec",
]
