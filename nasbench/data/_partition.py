"""Turn decoded images into seeded, stratified train/val/test splits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nasbench.data._splits import DatasetSplits
from nasbench.errors import ConfigError, DataError

__all__ = ["RawDataset", "make_splits", "stratified_order"]

_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class RawDataset:
    """Decoded images before splitting, as a loader returns them.

    Attributes:
        parts: ``"all"`` for a dataset without an official split, otherwise some of
            ``"train"``, ``"val"``, ``"test"``; each maps to ``(images, labels)`` with
            images NCHW either uint8 (0..255) or float32 in [0, 1], labels int64.
            Tensors may be shared by a cache: never modify them in place.
        num_classes: Number of classes; labels are in ``[0, num_classes)``.
        source: Where the data came from, for logging.
    """

    parts: dict[str, tuple[torch.Tensor, torch.Tensor]]
    num_classes: int
    source: str


def stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random permutation in which classes are interleaved in proportion.

    Any prefix (or contiguous range) holds about the classes' overall shares, so cutting
    the order into pieces gives exact sizes that are also stratified.
    """
    n = len(labels)
    perm = rng.permutation(n)
    if n == 0:
        return perm
    classes, inverse, counts = np.unique(labels[perm], return_inverse=True, return_counts=True)
    rank = np.empty(n, dtype=np.int64)
    for k in range(len(classes)):  # loop over classes, not samples
        members = np.flatnonzero(inverse == k)
        rank[members] = np.arange(len(members))
    key = (rank + 0.5) / counts[inverse]
    return perm[np.argsort(key, kind="stable")]


def _check_fractions(val_fraction: float, test_fraction: float, limit: int | None) -> None:
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0):
        raise ConfigError(
            f"val_fraction and test_fraction must be in [0, 1), got {val_fraction} and {test_fraction}"
        )
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"val_fraction + test_fraction must be < 1 to leave training data, got {val_fraction + test_fraction}"
        )
    if limit is not None and limit <= 0:
        raise ConfigError(f"limit must be a positive number of samples per split, got {limit}")


def _to_float(images: torch.Tensor) -> torch.Tensor:
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images.to(torch.float32)


def _select(
    part: tuple[torch.Tensor, torch.Tensor], idx: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64))
    return _to_float(part[0][index]), part[1][index].to(torch.int64)


def make_splits(
    name: str,
    raw: RawDataset,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    limit: int | None,
) -> DatasetSplits:
    """Split ``raw`` into train/val/test with a seeded, stratified permutation.

    Official parts are kept: a missing ``test`` is carved from the training part by
    ``test_fraction`` and a missing ``val`` by ``val_fraction``. Without a training part
    all images are pooled and cut by both fractions. ``limit`` caps every split (a
    stratified subset). ``mean``/``std`` come from the final training split.
    """
    _check_fractions(val_fraction, test_fraction, limit)
    rng = np.random.default_rng(seed)
    parts = dict(raw.parts)
    if "train" not in parts:  # no official training data: pool everything
        pooled = [parts[k] for k in ("all", *_SPLITS) if k in parts]
        parts = {"train": (torch.cat([p[0] for p in pooled]), torch.cat([p[1] for p in pooled]))}
    pool_labels = parts["train"][1].numpy()
    n = len(pool_labels)
    n_test = 0 if "test" in parts else round(n * test_fraction)
    n_val = 0 if "val" in parts else round(n * val_fraction)
    order = stratified_order(pool_labels, rng)
    carved = {"test": order[:n_test], "val": order[n_test : n_test + n_val]}
    chosen = {"train": _select(parts["train"], order[n_test + n_val :][:limit])}
    for split in ("val", "test"):
        if split in parts:
            sub = stratified_order(parts[split][1].numpy(), rng)
            chosen[split] = _select(parts[split], sub[:limit])
        else:
            chosen[split] = _select(parts["train"], carved[split][:limit])
    train_x = chosen["train"][0]
    if len(train_x) < 2:
        raise DataError(
            f"{name}: the training split has fewer than 2 images; raise limit or add data"
        )
    std, mean = torch.std_mean(train_x, dim=(0, 2, 3))
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return DatasetSplits(
        name=name,
        train_x=train_x,
        train_y=chosen["train"][1],
        val_x=chosen["val"][0],
        val_y=chosen["val"][1],
        test_x=chosen["test"][0],
        test_y=chosen["test"][1],
        num_classes=raw.num_classes,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
    )
