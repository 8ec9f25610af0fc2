"""``load_dataset``: parse a ``NAME[:PATH]`` spec, load, split, log."""

from __future__ import annotations

import logging
from pathlib import Path

from nasbench.data import _loaders  # noqa: F401  (registers the built-in datasets)
from nasbench.data._partition import make_splits
from nasbench.data._registry import DATASETS
from nasbench.data._splits import DatasetSplits
from nasbench.errors import DataError

__all__ = ["load_dataset", "parse_spec"]

logger = logging.getLogger(__name__)


def parse_spec(spec: str) -> tuple[str, Path | None]:
    """Split ``"NAME"`` or ``"NAME:PATH"`` into a lower-case name and an optional path.

    Raises:
        DataError: On an empty name or an empty path after the colon.
    """
    name, colon, path = spec.strip().partition(":")
    name = name.strip().lower()
    if not name:
        raise DataError(
            f"dataset spec {spec!r} has no name; use NAME or NAME:PATH, e.g. cifar10:/data/cifar"
        )
    if colon and not path.strip():
        raise DataError(f"dataset spec {spec!r} has an empty path; use {name} or {name}:PATH")
    return name, Path(path.strip()).expanduser() if colon else None


def load_dataset(
    spec: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    limit: int | None = None,
) -> DatasetSplits:
    """Load a dataset and split it into seeded, stratified train/val/test tensors.

    Datasets with an official test split (CIFAR-10 pickles, IDX files, image folders
    with ``test/``) keep it and ignore ``test_fraction``; validation is then carved from
    the training data by ``val_fraction``. Others are cut by both fractions. Decoded
    files are cached per process, so loading the same spec again is cheap.

    Args:
        spec: ``NAME`` or ``NAME:PATH``; names are listed by ``DATASETS.names()``.
        seed: Seed of the split (and of the synthetic images).
        val_fraction: Share of the (training) data held out for validation.
        test_fraction: Share of the data held out for testing when no official test split.
        limit: Cap on the size of every split (a stratified subset), for quick runs.

    Returns:
        The splits, images float32 NCHW in [0, 1], with training mean/std per channel.

    Raises:
        DataError: On a malformed spec or missing/malformed data.
        UnknownNameError: On an unknown dataset name.
        ConfigError: On fractions that leave no training data or a non-positive limit.
    """
    name, path = parse_spec(spec)
    loader = DATASETS.get(name)
    raw = loader(path, seed)
    splits = make_splits(
        name, raw, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, limit=limit
    )
    c, h, w = splits.input_shape
    logger.info(
        "loaded %s (%s): train %d, val %d, test %d, %d classes, %dx%dx%d, seed %d",
        name,
        raw.source,
        len(splits.train_y),
        len(splits.val_y),
        len(splits.test_y),
        splits.num_classes,
        c,
        h,
        w,
        seed,
    )
    return splits
