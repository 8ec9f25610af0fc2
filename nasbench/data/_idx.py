"""MNIST-style IDX files (``train-images-idx3-ubyte[.gz]`` and friends)."""

from __future__ import annotations

import functools
import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from nasbench.data._files import fingerprint
from nasbench.data._partition import RawDataset
from nasbench.errors import DataError

__all__ = ["IDX_FILES", "load_idx_folder", "parse_idx"]

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_UBYTE = 0x08


def parse_idx(data: bytes, ndim: int, name: str) -> np.ndarray:
    """Decode an unsigned-byte IDX payload of ``ndim`` dimensions.

    Raises:
        DataError: On a wrong magic number, dimension count or payload size.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != _UBYTE or data[3] != ndim:
        magic = data[:4].hex() if len(data) >= 4 else "none"
        raise DataError(
            f"{name}: bad IDX magic number {magic}, expected 000008{ndim:02x}; re-download the file"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header; re-download the file")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != expected:
        raise DataError(
            f"{name}: IDX payload has {len(data) - header} bytes but dimensions {dims} need {expected}; "
            "re-download the file"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _missing(folder: Path) -> list[str]:
    """The IDX files (``NAME[.gz]``) of ``IDX_FILES`` that ``folder`` lacks, in their usual order."""
    stems = [stem for pair in IDX_FILES.values() for stem in pair]
    return [f"{s}[.gz]" for s in stems if not ((folder / f"{s}.gz").is_file() or (folder / s).is_file())]


def _read(folder: Path, stem: str) -> tuple[bytes, str]:
    for name, opener in ((f"{stem}.gz", gzip.open), (stem, open)):
        file = folder / name
        if file.is_file():
            try:
                with opener(file, "rb") as handle:
                    return handle.read(), str(file)
            except (OSError, EOFError, zlib.error) as exc:
                raise DataError(f"{file}: cannot read ({exc}); re-download the file") from None
    raise DataError(
        f"{folder / stem}[.gz] not found; the folder needs the 4 MNIST-format IDX files"
    )


def load_idx_folder(folder: Path) -> RawDataset:
    """Read the train and t10k IDX image/label pairs of a folder (cached per process).

    Raises:
        DataError: On a missing, unreadable or malformed file, or mismatched counts.
    """
    if not folder.is_dir():
        raise DataError(
            f"IDX folder {folder} does not exist; pass a folder with the MNIST-format files"
        )
    return _load_cached(*fingerprint(folder))


@functools.lru_cache(maxsize=4)
def _load_cached(resolved: str, mtime_ns: int) -> RawDataset:
    del mtime_ns  # part of the cache key only
    folder = Path(resolved)
    missing = _missing(folder)
    if missing:
        raise DataError(f"{folder} lacks {len(missing)} of the 4 MNIST-format IDX files: {', '.join(missing)}; "
                        "copy them there (.gz or not)")
    parts = {}
    for part, (image_stem, label_stem) in IDX_FILES.items():
        image_bytes, image_name = _read(folder, image_stem)
        label_bytes, label_name = _read(folder, label_stem)
        images = parse_idx(image_bytes, 3, image_name)
        labels = parse_idx(label_bytes, 1, label_name)
        if len(images) != len(labels):
            raise DataError(
                f"{image_name} has {len(images)} images but {label_name} has {len(labels)} labels; "
                "re-download the files"
            )
        parts[part] = (
            torch.from_numpy(images.copy()).unsqueeze(1),
            torch.from_numpy(labels.astype(np.int64)),
        )
    if len(parts["train"][1]) == 0:
        raise DataError(f"the training IDX files in {folder} hold no images; re-download them")
    num_classes = max(int(p[1].max()) for p in parts.values() if len(p[1])) + 1
    return RawDataset(parts=parts, num_classes=num_classes, source=f"IDX files in {folder}")
