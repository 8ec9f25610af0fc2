"""The official CIFAR-10 "python version": pickled batches, read without running code."""

from __future__ import annotations

import functools
import io
import pickle
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from nasbench.data._files import fingerprint, is_tar, read_tar
from nasbench.data._partition import RawDataset
from nasbench.errors import DataError

__all__ = ["find_cifar_batches", "load_cifar_pickle"]

_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST = "test_batch"
_SUBFOLDER = "cifar-10-batches-py"
# Only what a pickled numpy array (and bytes pickled by Python 3 at protocol < 3) needs:
# anything else in the file is refused, so loading never runs code.
_ALLOWED = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def find_cifar_batches(path: Path) -> Path | None:
    """The folder (or the archive) holding ``data_batch_1``, or ``None`` when absent."""
    if is_tar(path):
        return None  # archives are probed by the caller on their member names
    for folder in (path, path / _SUBFOLDER):
        if (folder / _TRAIN[0]).is_file():
            return folder
    return None


def load_cifar_pickle(path: Path) -> RawDataset:
    """Read ``data_batch_1..5`` and ``test_batch`` from a folder or a tar archive (cached).

    Raises:
        DataError: On a missing batch or a batch that is not a CIFAR-10 pickle.
    """
    return _load_cached(*fingerprint(path))


def _read_batches(path: Path) -> dict[str, bytes]:
    wanted = (*_TRAIN, _TEST)
    if is_tar(path):
        members = read_tar(path, lambda name: PurePosixPath(name).name in wanted)
        found = {PurePosixPath(name).name: data for name, data in members.items()}
    else:
        found = {name: (path / name).read_bytes() for name in wanted if (path / name).is_file()}
    missing = [name for name in wanted if name not in found]
    if missing:
        raise DataError(
            f"CIFAR-10 batches {', '.join(missing)} missing in {path}; "
            "pass the complete cifar-10-batches-py folder or cifar-10-python.tar.gz"
        )
    return found


def _parse_batch(name: str, data: bytes, where: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
        batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
        images = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (
        pickle.UnpicklingError,
        EOFError,
        AttributeError,
        KeyError,
        TypeError,
        ValueError,
    ) as exc:
        raise DataError(
            f"{name} in {where} is not a CIFAR-10 python batch ({exc}); re-download it"
        ) from None
    if images.ndim != 2 or images.shape[1] != 3 * 32 * 32 or len(labels) != len(images):
        raise DataError(
            f"{name} in {where} has data {images.shape} and {len(labels)} labels; "
            "expected (N, 3072) uint8 and N labels"
        )
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{name} in {where} has labels outside 0..9; re-download it")
    return images.reshape(-1, 3, 32, 32), labels


@functools.lru_cache(maxsize=2)
def _load_cached(resolved: str, mtime_ns: int) -> RawDataset:
    del mtime_ns  # part of the cache key only
    where = Path(resolved)
    batches = _read_batches(where)
    train = [_parse_batch(name, batches[name], where) for name in _TRAIN]
    test_x, test_y = _parse_batch(_TEST, batches[_TEST], where)
    train_x = np.concatenate([b[0] for b in train])
    train_y = np.concatenate([b[1] for b in train])
    parts = {
        "train": (torch.from_numpy(train_x), torch.from_numpy(train_y)),
        "test": (torch.from_numpy(test_x), torch.from_numpy(test_y)),
    }
    return RawDataset(parts=parts, num_classes=10, source=f"CIFAR-10 python batches in {where}")
