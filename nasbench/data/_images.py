"""Image-folder datasets: ``<root>/[<split>/]<class>/*.jpg|png``, from a folder or a tar archive."""

from __future__ import annotations

import functools
import io
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from nasbench.data._files import fingerprint, is_tar, read_tar
from nasbench.data._partition import RawDataset
from nasbench.errors import DataError

__all__ = ["load_image_folder"]

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_FORMATS = ("JPEG", "PNG")
_SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_LAYOUT_HINT = "expected <root>/<class>/<image> or <root>/<train|val|test>/<class>/<image>"


def load_image_folder(path: Path) -> RawDataset:
    """Decode every image under a folder or inside a tar archive (cached per process).

    Class indices follow the sorted class-folder names. Split folders (``train``,
    ``val``/``valid``, ``test``) become official parts; otherwise all images form one
    pool. Images are converted to RGB and must all have one size.

    Raises:
        DataError: On a missing path, no images, a mixed layout, an undecodable image
            or images of different sizes.
    """
    if not path.exists():
        raise DataError(f"image folder {path} does not exist; pass an existing folder or .tar.gz")
    return _load_cached(*fingerprint(path))


def _is_image(name: str) -> bool:
    base = PurePosixPath(name).name
    return not base.startswith(".") and base.lower().endswith(_IMAGE_SUFFIXES)


def _read_files(path: Path) -> dict[str, bytes]:
    if is_tar(path):
        return read_tar(path, _is_image)
    if not path.is_dir():
        raise DataError(f"{path} is neither a folder nor a tar archive of images; {_LAYOUT_HINT}")
    return {
        file.relative_to(path).as_posix(): file.read_bytes()
        for file in sorted(path.rglob("*"))
        if file.is_file() and _is_image(file.name)
    }


def _layout(names: list[str], where: Path) -> list[tuple[str, str]]:
    """``(part, class)`` per image name, ``part`` in {"all", "train", "val", "test"}."""
    parts = [PurePosixPath(n).parts for n in names]
    depths = {len(p) for p in parts}
    if len(depths) != 1:
        raise DataError(f"images at different folder depths under {where}; {_LAYOUT_HINT}")
    depth, skip = depths.pop(), 0
    while depth - skip > 2 and parts[0][skip] not in _SPLIT_NAMES:
        if any(p[skip] != parts[0][skip] for p in parts):
            break
        skip += 1  # a wrapping folder shared by every image
    remaining = depth - skip
    if remaining == 2:
        return [("all", p[skip]) for p in parts]
    if remaining == 3 and all(p[skip] in _SPLIT_NAMES for p in parts):
        return [(_SPLIT_NAMES[p[skip]], p[skip + 1]) for p in parts]
    raise DataError(f"cannot tell classes from the folder layout under {where}; {_LAYOUT_HINT}")


def _decode(name: str, data: bytes, where: Path) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(
            f"cannot decode image {name} in {where}: {exc}; remove or re-save it"
        ) from None


@functools.lru_cache(maxsize=4)
def _load_cached(resolved: str, mtime_ns: int) -> RawDataset:
    del mtime_ns  # part of the cache key only
    where = Path(resolved)
    files = _read_files(where)
    if not files:
        raise DataError(f"no .jpg/.jpeg/.png images found under {where}; {_LAYOUT_HINT}")
    names = sorted(files)
    layout = _layout(names, where)
    classes = sorted({cls for _, cls in layout})
    if len(classes) < 2:
        raise DataError(
            f"found only class folder {classes[0]!r} under {where}; a classifier needs at least 2"
        )
    class_index = {cls: i for i, cls in enumerate(classes)}
    arrays = [_decode(name, files[name], where) for name in names]
    first = arrays[0].shape
    for name, array in zip(names, arrays, strict=True):
        if array.shape != first:
            raise DataError(
                f"image {name} in {where} is {array.shape[1]}x{array.shape[0]} but "
                f"{names[0]} is {first[1]}x{first[0]}; resize all images to one size first"
            )
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([class_index[cls] for _, cls in layout], dtype=torch.int64)
    part_names = np.array([part for part, _ in layout])
    parts = {}
    for part in sorted(set(part_names.tolist())):
        index = torch.from_numpy(np.flatnonzero(part_names == part))
        parts[part] = (images[index], labels[index])
    return RawDataset(
        parts=parts, num_classes=len(classes), source=f"{len(names)} images in {where}"
    )
