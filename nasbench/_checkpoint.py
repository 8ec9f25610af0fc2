"""Checkpoint files of one-shot searches (DARTS, Once-for-All): atomic writes, safe reads."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nasbench.errors import ConfigError

__all__ = ["atomic_write", "save_checkpoint", "load_checkpoint", "plain"]


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp)`` on a fresh temporary file beside ``path``, then rename it over ``path``.

    A kill never leaves half a file, and processes writing the same path at once (drivers of
    one search writing ``best.json``) each use their own temporary name. Missing folders are
    created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` with ``torch.save`` through a temporary file, so a kill never leaves half a file."""
    import torch

    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, device: Any = "cpu", what: str = "checkpoint") -> dict[str, Any] | None:
    """The state in ``path`` (tensors only, ``weights_only=True``), or None when there is no file.

    Raises:
        ConfigError: the file is truncated or not a checkpoint.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise ConfigError(f"cannot read {what} {path} ({type(exc).__name__}: {first}); "
                          "delete it or pass another file") from None


def plain(obj: Any) -> Any:
    """``obj`` with tuples as lists and NaN as None: how a config compares after a save/load round trip."""
    if isinstance(obj, (list, tuple)):
        return [plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj
