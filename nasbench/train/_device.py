"""Turn a device name into a ``torch.device`` that exists on this machine."""

from __future__ import annotations

import torch

from nasbench.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return the device to train on.

    Args:
        device: ``"auto"`` or ``None`` (CUDA when available, else CPU), or a torch device
            name such as ``"cpu"``, ``"cuda"``, ``"cuda:1"``.

    Returns:
        The resolved ``torch.device``.

    Raises:
        ConfigError: The name is not a device, or names a CUDA/MPS device this machine lacks.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r} asked for but CUDA is not available; use 'auto' or 'cpu'"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {device!r} does not exist; this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} asked for but MPS is not available; use 'cpu'")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device {device!r}; use 'auto', 'cpu' or 'cuda'")
    return resolved
