"""The built-in datasets: digits, synthetic, cifar10, mnist, fashion-mnist, imagefolder."""

from __future__ import annotations

import functools
import os
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F

from nasbench.data._cifar_pickle import find_cifar_batches, load_cifar_pickle
from nasbench.data._files import fingerprint, is_tar
from nasbench.data._idx import load_idx_folder
from nasbench.data._images import load_image_folder
from nasbench.data._partition import RawDataset
from nasbench.data._registry import DATASETS
from nasbench.errors import DataError

__all__: list[str] = []

_CACHE_ROOT = Path("~/.cache/nasbench")
# Debian's package ``dataset-fashion-mnist`` installs the four IDX .gz files here
# (see ``dpkg -L dataset-fashion-mnist``).
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_CIFAR_HINT = "pass --dataset cifar10:PATH (pickle batch folder, JPEG folder or .tar.gz)"


def _no_path(name: str, path: Path | None) -> None:
    if path is not None:
        raise DataError(f"dataset {name!r} takes no path, got {str(path)!r}; use --dataset {name}")


def _locate(name: str, env: str, defaults: tuple[Path, ...], hint: str) -> Path:
    """The first existing default location: ``$env`` when set, then ``defaults``."""
    looked: list[str] = []
    candidates = ([Path(os.environ[env])] if os.environ.get(env) else []) + list(defaults)
    for candidate in candidates:
        candidate = candidate.expanduser()
        if candidate.exists():
            return candidate
        looked.append(str(candidate))
    if not os.environ.get(env):
        looked.insert(0, f"${env} (unset)")
    raise DataError(f"{name} not found (looked at {', '.join(looked)}); {hint}")


def _existing(name: str, path: Path, hint: str) -> Path:
    path = path.expanduser()
    if not path.exists():
        raise DataError(f"{name}: {path} does not exist; {hint}")
    return path


@DATASETS.register("digits")
def _digits(path: Path | None, seed: int) -> RawDataset:
    """scikit-learn's 1,797 8×8 handwritten digits (offline), scaled to [0, 1]."""
    _no_path("digits", path)
    images, labels = _digits_arrays()
    return RawDataset(parts={"all": (images, labels)}, num_classes=10, source="sklearn load_digits")


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy((bunch.data / 16.0).astype(np.float32)).reshape(-1, 1, 8, 8)
    return images, torch.from_numpy(bunch.target.astype(np.int64))


@DATASETS.register("synthetic")
def _synthetic(path: Path | None, seed: int) -> RawDataset:
    """2,000 3×32×32 images of 10 classes: a smooth per-class pattern plus noise, from ``seed``."""
    _no_path("synthetic", path)
    gen = torch.Generator().manual_seed(seed)
    n, classes = 2000, 10
    templates = F.interpolate(
        torch.rand(classes, 3, 4, 4, generator=gen),
        size=(32, 32),
        mode="bilinear",
        align_corners=False,
    )
    labels = (torch.arange(n) % classes)[torch.randperm(n, generator=gen)]
    images = 0.6 * templates[labels] + 0.4 * torch.rand(n, 3, 32, 32, generator=gen)
    return RawDataset(
        parts={"all": (images, labels)}, num_classes=classes, source=f"synthetic seed {seed}"
    )


@functools.lru_cache(maxsize=4)
def _tar_has_cifar_batches(resolved: str, mtime_ns: int) -> bool:
    """Whether an archive holds pickle batches (not images); stops at the first telling member."""
    del mtime_ns  # part of the cache key only
    try:
        with tarfile.open(resolved, "r:*") as tar:
            for member in tar:
                base = PurePosixPath(member.name).name
                if member.isfile() and (base == "data_batch_1" or base.startswith("data_batch_")):
                    return True
                if member.isfile() and base.lower().endswith((".jpg", ".jpeg", ".png")):
                    return False
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"cannot read archive {resolved}: {exc}; {_CIFAR_HINT}") from None
    return False


@DATASETS.register("cifar10")
def _cifar10(path: Path | None, seed: int) -> RawDataset:
    """CIFAR-10 from python pickle batches, a JPEG/PNG folder, or a tar archive of either."""
    if path is None:
        path = _locate("cifar10", "NASBENCH_CIFAR10", (_CACHE_ROOT / "cifar10",), _CIFAR_HINT)
    else:
        path = _existing("cifar10", path, _CIFAR_HINT)
    if is_tar(path):
        if _tar_has_cifar_batches(*fingerprint(path)):
            return load_cifar_pickle(path)
        return load_image_folder(path)
    batches = find_cifar_batches(path)
    if batches is not None:
        return load_cifar_pickle(batches)
    if path.is_dir():
        return load_image_folder(path)
    raise DataError(f"cifar10: {path} is not a folder or a tar archive; {_CIFAR_HINT}")


def _idx_loader(name: str, env: str, defaults: tuple[Path, ...], install: str = "") -> None:
    hint = f"pass --dataset {name}:PATH (a folder with the 4 MNIST-format IDX files, .gz or not){install}"

    def load(path: Path | None, seed: int) -> RawDataset:
        folder = _locate(name, env, defaults, hint) if path is None else _existing(name, path, hint)
        return load_idx_folder(folder)

    load.__doc__ = f"{name} from the four IDX files of a folder (default: ${env}, then {defaults})."
    DATASETS.register(name, load)


_idx_loader("mnist", "NASBENCH_MNIST", (_CACHE_ROOT / "mnist",))
_idx_loader(
    "fashion-mnist", "NASBENCH_FASHION_MNIST", (DEBIAN_FASHION_MNIST, _CACHE_ROOT / "fashion-mnist"),
    f", or 'apt-get install dataset-fashion-mnist' (Debian; it puts them in {DEBIAN_FASHION_MNIST})",
)


@DATASETS.register("imagefolder")
def _imagefolder(path: Path | None, seed: int) -> RawDataset:
    """Any ``<PATH>/[<split>/]<class>/*.jpg|png`` folder or tar archive of one image size."""
    if path is None:
        raise DataError("dataset 'imagefolder' needs a path; use --dataset imagefolder:PATH")
    return load_image_folder(_existing("imagefolder", path, "pass an existing folder or .tar.gz"))
