"""Genome -> ``nn.Module``: materializes a frozen architecture with ops from the registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasbench.build._cell import (
    DartsNetwork,
    DenseCell,
    NB201Network,
    TwoInputCell,
    preprocess_inputs,
)
from nasbench.build._macro import MacroNetwork
from nasbench.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from nasbench.space import Genome, Space

__all__ = ["build_model", "build_frozen", "DartsNetwork", "DenseCell", "MacroNetwork", "NB201Network", "TwoInputCell", "preprocess_inputs"]

_NETWORKS = {"macro": MacroNetwork, "nb201": NB201Network, "darts": DartsNetwork}


def build_model(space: Space, genome: Genome, num_classes: int = 10,
                input_shape: tuple[int, int, int] = (3, 32, 32)) -> nn.Module:
    """Build the PyTorch module of ``genome`` for images of ``input_shape`` (C, H, W).

    Any input channels and resolution work: strided layers use "same" padding and the
    classifier follows a global average pool.

    Raises:
        GenomeError: the genome does not belong to ``space``.
        ConfigError: ``num_classes`` or ``input_shape`` is not usable.
    """
    return build_frozen(space.freeze(genome), num_classes, input_shape)


def build_frozen(arch: dict[str, Any], num_classes: int = 10,
                 input_shape: tuple[int, int, int] = (3, 32, 32)) -> nn.Module:
    """Build a module from a frozen architecture (``space.freeze(genome)``), without the space.

    This is how exported architectures rebuild without running any space file's code.
    """
    if int(num_classes) < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    if len(input_shape) != 3 or min(int(d) for d in input_shape) < 1:
        raise ConfigError(f"input_shape must be (C, H, W) with positive sizes, got {tuple(input_shape)}")
    kind = arch.get("kind")
    key = kind if kind == "macro" else arch.get("skeleton")
    if key not in _NETWORKS:
        raise ConfigError(f"cannot build architecture of kind {kind!r}/{arch.get('skeleton')!r}; "
                          f"known: macro, nb201, darts")
    return _NETWORKS[key](arch, int(num_classes), int(input_shape[0]))
