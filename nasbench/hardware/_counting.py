"""Parameter and multiply-accumulate (MAC) counting, plus a readable per-layer table.

FLOPs here follow the field's usual convention "FLOPs = MACs": only the multiply-accumulates
of convolutions (``Conv1d/2d/3d``, grouped and depthwise counted exactly) and ``Linear``
layers are counted. Bias additions, BatchNorm, activations, pooling and elementwise ops
(residual adds, attention scaling) are not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nasbench.errors import ConfigError

__all__ = ["count_flops", "count_params", "layer_summary"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def count_params(module: nn.Module) -> int:
    """Number of parameters of ``module``, trainable or frozen (``requires_grad`` is ignored).

    Shared parameters count once; buffers (BatchNorm running statistics) are not parameters.
    """
    return sum(p.numel() for p in module.parameters())


def _layer_macs(layer: nn.Module, output: torch.Tensor) -> int:
    """MACs of one call of a conv or linear layer over the whole batch in ``output``."""
    if isinstance(layer, _CONVS):
        per_output = (layer.in_channels // layer.groups) * math.prod(layer.kernel_size)
        return output.numel() * per_output
    return output.numel() * layer.in_features  # Linear: in*out per row, rows = numel / out


def _trace(
    module: nn.Module, input_shape: Sequence[int], batch_size: int
) -> tuple[dict[str, int], dict[str, tuple[int, ...] | None]]:
    """Run ``module`` once on zeros; return per-module-name batch MACs and output shapes (no batch)."""
    shape = tuple(input_shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ConfigError(
            f"input_shape must be positive ints without the batch dim, e.g. (3, 32, 32); got {input_shape!r}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    param = next(module.parameters(), None)
    x = torch.zeros(
        (batch_size, *shape),
        dtype=param.dtype if param is not None else torch.float32,
        device=param.device if param is not None else "cpu",
    )
    macs: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...] | None] = {}
    handles = []

    def _hook(name: str, layer: nn.Module) -> Any:
        def hook(_m: nn.Module, _inputs: Any, output: Any) -> None:
            is_tensor = isinstance(output, torch.Tensor)
            shapes[name] = tuple(output.shape[1:]) if is_tensor else None
            if is_tensor and isinstance(layer, (*_CONVS, nn.Linear)):
                macs[name] = macs.get(name, 0) + _layer_macs(layer, output)

        return hook

    modes = {m: m.training for m in module.modules()}
    try:
        for name, layer in module.named_modules():
            handles.append(layer.register_forward_hook(_hook(name, layer)))
        module.eval()
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return {k: v // batch_size for k, v in macs.items()}, shapes


def count_flops(module: nn.Module, input_shape: Sequence[int], batch_size: int = 1) -> int:
    """Multiply-accumulates (MACs, reported as "FLOPs") of ``module`` for ONE image.

    Measured with forward hooks on a zero input of shape ``(batch_size, *input_shape)`` in
    eval mode under ``no_grad``; every module's training flag is restored afterwards.
    A conv counts ``out_elements * (C_in / groups) * prod(kernel)``; a Linear counts
    ``in_features * out_features`` per output row. Bias, BatchNorm, activations, pooling
    and elementwise ops are not counted. A layer called twice counts twice.

    Args:
        module: The network.
        input_shape: One image's shape without the batch dim, e.g. ``(3, 32, 32)``.
        batch_size: Batch of the probing forward pass; the result is per image regardless.

    Raises:
        ConfigError: ``input_shape`` or ``batch_size`` is malformed.
    """
    macs, _ = _trace(module, input_shape, batch_size)
    return sum(macs.values())


def _depth(name: str) -> int:
    return 0 if name == "" else name.count(".") + 1


def layer_summary(
    module: nn.Module, input_shape: Sequence[int], depth: int = 2
) -> list[dict[str, Any]]:
    """A layer table: one row per named module cut at ``depth`` (its subtree is summed in the row).

    Rows are the modules at exactly ``depth`` plus shallower modules without children, in
    definition order, so every conv/linear belongs to exactly one row and the rows' ``flops``
    add up to :func:`count_flops` (the root counts as depth 0; a childless root is one row).

    Args:
        module: The network.
        input_shape: One image's shape without the batch dim.
        depth: How deep to descend (1 = direct children).

    Returns:
        Dicts with ``name``, ``type`` (class name), ``out_shape`` (output shape without
        the batch dim from the last call, ``None`` if not a tensor or never called),
        ``params`` (:func:`count_params` of the subtree) and ``flops`` (subtree MACs per image).

    Raises:
        ConfigError: ``depth`` is negative or ``input_shape`` is malformed.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ConfigError(f"depth must be an int >= 0, got {depth!r}")
    macs, shapes = _trace(module, input_shape, 1)
    rows = []
    for name, sub in module.named_modules():
        d = _depth(name)
        if not (d == depth or (d < depth and next(sub.children(), None) is None)):
            continue
        prefix = name + "."
        flops = sum(v for k, v in macs.items() if name == "" or k == name or k.startswith(prefix))
        rows.append(
            {
                "name": name,
                "type": type(sub).__name__,
                "out_shape": shapes.get(name),
                "params": count_params(sub),
                "flops": flops,
            }
        )
    return rows
