"""Device decisions, made in one place for the trainer and both supernets.

- ``resolve_device``: a device name to a ``torch.device`` this machine has.
- ``resolve_amp``: ``auto | off | bf16`` to the autocast dtype (bf16 on CUDA only).
- ``batch_generator``: the random generator of a batch pipeline, on the device it draws for.
- ``place_data``: a split copied to the accelerator once (up to 1 GiB).
- ``channels_last_ok``: whether a model may run channels-last (NHWC) on a device.
- ``cuda_speedups``: cuDNN autotuning while a fixed-shape training runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from nasbench.errors import ConfigError

__all__ = ["AMP_MODES", "autocast", "batch_generator", "channels_last_ok", "cuda_speedups", "place_data",
           "private_rng", "resolve_amp", "resolve_device", "seed_device"]

#: Mixed-precision modes: ``auto`` (bf16 autocast where the device supports it: CUDA with bf16),
#: ``off`` (float32 everywhere), ``bf16`` (bf16 autocast, refused on a device without it).
AMP_MODES = ("auto", "off", "bf16")

# Splits up to this size are copied to the accelerator once instead of per batch.
MAX_DEVICE_COPY_BYTES = 1 << 30

#: oneDNN blocks channels by 8 (AVX2) or 16 (AVX-512) in its channels-last kernels. A conv whose
#: channel count is not a multiple of 8 gets its blocks padded, and on AVX2 the padded weight-gradient
#: kernels corrupt the heap (seen: ``jit_1x1:avx2`` backward_weights of a 4-channel 1x1 conv, and
#: the 1-channel stem). Channels-last is used only where every conv avoids that padding.
CHANNEL_BLOCK = 8


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
                f"{torch.cuda.device_count()} CUDA device(s) (cuda:0 to cuda:{torch.cuda.device_count() - 1})"
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} asked for but MPS is not available; use 'cpu'")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device {device!r}; use 'auto', 'cpu' or 'cuda'")
    return resolved


def _cuda_bf16(device: torch.device) -> bool:
    """Native bf16 on ``device``: compute capability 8.0 (Ampere) or later. Older GPUs only emulate it
    (``torch.cuda.is_bf16_supported()`` says yes there by default), which is slower than float32."""
    if device.type != "cuda":
        return False
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_capability(index)[0] >= 8


def resolve_amp(amp: str, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype of mixed-precision mode ``amp`` on ``device`` (None: float32).

    ``auto`` gives bf16 on a CUDA device that supports it and float32 elsewhere (CPU bf16
    autocast is slower than float32 on most CPUs); ``bf16`` insists and is refused elsewhere.

    Raises:
        ConfigError: An unknown mode, or ``bf16`` on a device without bf16.
    """
    if amp not in AMP_MODES:
        raise ConfigError(f"unknown amp mode {amp!r}; use one of {', '.join(AMP_MODES)}")
    device = torch.device(device)
    if amp == "off":
        return None
    if _cuda_bf16(device):
        return torch.bfloat16
    if amp == "bf16":
        what = "this GPU has no bf16 support" if device.type == "cuda" else f"the device is {device.type}"
        raise ConfigError(f"amp='bf16' needs a CUDA device with bf16 support, but {what}; use amp 'auto' or 'off'")
    return None


def autocast(device: str | torch.device, dtype: torch.dtype | None) -> Any:
    """An autocast context for ``dtype`` on ``device`` (a no-op context for None)."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def _cuda_index(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


@contextmanager
def private_rng(device: str | torch.device) -> Iterator[None]:
    """Restore torch's CPU RNG (and ``device``'s CUDA RNG) on exit.

    Only the RNG of the device trained on is saved, so CUDA is never initialised when
    training on the CPU.
    """
    cuda_index = _cuda_index(torch.device(device))
    with torch.random.fork_rng(devices=[] if cuda_index is None else [cuda_index]):
        yield


def seed_device(device: str | torch.device, seed: int) -> None:
    """Seed the CPU RNG and ``device``'s CUDA RNG only (``torch.manual_seed`` seeds every GPU)."""
    torch.random.default_generator.manual_seed(seed)
    cuda_index = _cuda_index(torch.device(device))
    if cuda_index is not None:
        with torch.cuda.device(cuda_index):
            torch.cuda.manual_seed(seed)


def batch_generator(seed: int, device: str | torch.device) -> torch.Generator:
    """The seeded generator a batch pipeline shuffles and augments with, on ``device``.

    Augmentation draws on the device the batch lives on, and PyTorch refuses a CPU generator
    for CUDA draws, so every pipeline takes its generator from here with its own device.
    """
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


def place_data(t: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """``t`` where a training loop should read batches from for ``device``.

    On an accelerator a split up to 1 GiB is copied there once, so batches never cross the
    bus again; a larger one stays on the host and each batch is copied when it is drawn (pinning
    the split would not help: a drawn batch is a fresh, unpinned tensor). On the CPU ``t`` itself.
    """
    device = torch.device(device)
    if device.type == "cpu" or t.device == device or t.nbytes > MAX_DEVICE_COPY_BYTES:
        return t
    return t.to(device)


def _convs(model: nn.Module, exclude: Iterable[nn.Module]) -> Iterator[nn.Conv2d]:
    skip = {id(m) for e in exclude for m in e.modules()}
    return (m for m in model.modules() if isinstance(m, nn.Conv2d) and id(m) not in skip)


def channels_last_ok(model: nn.Module, device: str | torch.device, exclude: Iterable[nn.Module] = ()) -> bool:
    """Whether ``model`` (less the modules in ``exclude``, e.g. its stem) may run channels-last on ``device``.

    CUDA: always (cuDNN's NHWC kernels, tensor cores under bf16). CPU: only when every conv has
    in and out channels that are multiples of ``CHANNEL_BLOCK`` (8), on every ISA, so that oneDNN
    never pads a channel block (the padded AVX2 kernels corrupt memory; see ``CHANNEL_BLOCK``).
    Other devices: no.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    convs = list(_convs(model, exclude))
    return bool(convs) and all(c.in_channels % CHANNEL_BLOCK == 0 and c.out_channels % CHANNEL_BLOCK == 0
                               for c in convs)


@contextmanager
def cuda_speedups(device: str | torch.device, *, benchmark: bool = True) -> Iterator[None]:
    """On CUDA, let cuDNN autotune its conv algorithms (input shapes fixed) within the block; restored after."""
    if torch.device(device).type != "cuda" or not benchmark:
        yield
        return
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old
