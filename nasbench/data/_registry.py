"""The dataset registry: name -> loader function."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nasbench.data._partition import RawDataset
from nasbench.registry import Registry

__all__ = ["DATASETS", "DatasetLoader"]

DatasetLoader = Callable[[Path | None, int], RawDataset]
"""A loader takes the spec's path (``None`` when absent) and the seed, returns decoded images.

It raises ``DataError`` when it needs a path and has none, takes no path but got one,
or finds the data missing or malformed.
"""

DATASETS: Registry[DatasetLoader] = Registry("dataset")
