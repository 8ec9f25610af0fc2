"""Loading spaces by name (built-in ``search_spaces``) or from a user's ``.py`` file."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from nasbench.errors import SpaceError
from nasbench.registry import Registry
from nasbench.space import Space

__all__ = ["SPACES", "load_space", "list_spaces"]

#: Built-in spaces: name -> module that defines ``SPACE``.
SPACES: Registry[str] = Registry("space")
for _name in ("nb201", "darts", "mobilenetv3", "resnet"):
    SPACES.register(_name, f"search_spaces.{_name}")

_cache: dict[str, Space] = {}


def list_spaces() -> list[str]:
    """Names of the built-in spaces."""
    return SPACES.names()


def load_space(name_or_path: str | Space) -> Space:
    """A built-in space by name, or the ``SPACE`` defined by a user's ``.py`` file.

    Loading a file RUNS its code (it is a Python module): load only files you trust.
    Exported architectures never need this (they rebuild from JSON alone).

    Raises:
        UnknownNameError: unknown built-in name (the message lists the valid ones).
        SpaceError: the file is missing, fails to run, or defines no ``SPACE``.
    """
    if isinstance(name_or_path, Space):
        return name_or_path
    key = str(name_or_path)
    is_file = key.endswith(".py") or "/" in key or bool(Path(key).suffix)
    if is_file:  # cache by absolute path and modification time: an edited file is loaded again
        path = Path(key).resolve()
        key = f"{path}@{path.stat().st_mtime_ns if path.is_file() else 0}"
    if key in _cache:
        return _cache[key]
    if is_file:
        space = _load_file(Path(name_or_path))
        space.source = str(path)
    else:
        module = importlib.import_module(SPACES.get(key))
        space = _space_of(module, key)
        space.source = key
    _cache[key] = space
    return space


def _load_file(path: Path) -> Space:
    if not path.is_file():
        raise SpaceError(f"space file {path} not found; pass a built-in name ({', '.join(list_spaces())}) or a .py file defining SPACE")
    module_name = f"nasbench_user_space_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SpaceError(f"cannot import {path}; it must be a Python file defining SPACE")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: report it as one line
        sys.modules.pop(module_name, None)
        raise SpaceError(f"running space file {path} failed: {type(exc).__name__}: {exc}") from exc
    return _space_of(module, str(path))


def _space_of(module: object, where: str) -> Space:
    space = getattr(module, "SPACE", None)
    if not isinstance(space, Space):
        raise SpaceError(f"{where} must define SPACE = a nasbench.space.Space (MacroSpace or CellSpace)")
    return space
