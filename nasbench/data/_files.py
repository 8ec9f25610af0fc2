"""Small file helpers shared by the loaders: cache keys and in-memory tar reading."""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path

from nasbench.errors import DataError

__all__ = ["fingerprint", "is_tar", "read_tar"]

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def fingerprint(path: Path) -> tuple[str, int]:
    """A cache key: the resolved path and the newest mtime of it and its direct children."""
    resolved = path.resolve()
    mtime = resolved.stat().st_mtime_ns
    if resolved.is_dir():
        for child in resolved.iterdir():
            mtime = max(mtime, child.stat().st_mtime_ns)
    return str(resolved), mtime


def is_tar(path: Path) -> bool:
    """Whether ``path`` is a file named like a (possibly compressed) tar archive."""
    return path.is_file() and path.name.lower().endswith(_TAR_SUFFIXES)


def read_tar(path: Path, keep: Callable[[str], bool]) -> dict[str, bytes]:
    """Read the regular members whose name passes ``keep`` into memory (no extraction).

    Raises:
        DataError: If the archive cannot be read.
    """
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isfile() and keep(member.name):
                    handle = tar.extractfile(member)
                    if handle is not None:
                        out[member.name] = handle.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(
            f"cannot read archive {path}: {exc}; check the file is a complete tar archive"
        ) from None
    return out
