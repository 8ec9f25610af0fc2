"""Cell networks: the NAS-Bench-201 and DARTS skeletons around searched cells."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nasbench.ops import create_op

__all__ = ["DenseCell", "TwoInputCell", "NB201Network", "DartsNetwork", "preprocess_inputs"]


class DenseCell(nn.Module):
    """Single-input cell: node j = sum over i < j of op_ij(node i); the last node is the output.

    Edges whose op is ``zero`` are left out (they add nothing); a node with no live input is zero.
    """

    def __init__(self, cell: dict[str, Any], channels: int) -> None:
        super().__init__()
        self.nodes = cell["nodes"]
        self.edge_ops = nn.ModuleDict()
        self.edges: list[tuple[int, int, str]] = []
        for src, dst, op, params in cell["edges"]:
            if op == "zero":
                continue
            key = f"{src}_{dst}"
            self.edge_ops[key] = create_op(op, channels, channels, 1, **params)
            self.edges.append((src, dst, key))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the last node, same shape as ``x``."""
        states: list[torch.Tensor | None] = [x] + [None] * (self.nodes - 1)
        for src, dst, key in self.edges:  # edges are sorted by dst, so sources are ready
            inp = states[src]
            if inp is None:
                continue
            out = self.edge_ops[key](inp)
            states[dst] = out if states[dst] is None else states[dst] + out
        last = states[-1]
        return last if last is not None else torch.zeros_like(x)


def preprocess_inputs(c_pp: int, c_p: int, channels: int, reduction_prev: bool) -> tuple[nn.Module, nn.Module]:
    """DARTS cell input preprocessing: bring both inputs to ``channels`` and the same resolution."""
    pre0 = (create_op("factorized_reduce", c_pp, channels, 2) if reduction_prev
            else create_op("relu_conv_bn_1x1", c_pp, channels, 1))
    return pre0, create_op("relu_conv_bn_1x1", c_p, channels, 1)


class TwoInputCell(nn.Module):
    """DARTS cell: two preprocessed inputs, each intermediate node sums its chosen ops, output concat."""

    def __init__(self, cell: dict[str, Any], c_pp: int, c_p: int, channels: int,
                 reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.pre0, self.pre1 = preprocess_inputs(c_pp, c_p, channels, reduction_prev)
        self.nodes = cell["nodes"]
        self.edge_ops = nn.ModuleList()
        self.edges: list[tuple[int, int]] = []
        for src, dst, op, params in cell["edges"]:
            stride = 2 if reduction and src < 2 else 1
            self.edge_ops.append(create_op(op, channels, channels, stride, **params))
            self.edges.append((src, dst))
        self.out_channels = channels * self.nodes

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        """Concatenation of the intermediate nodes."""
        states: list[torch.Tensor | int] = [self.pre0(s0), self.pre1(s1)] + [0] * self.nodes
        for (src, dst), op in zip(self.edges, self.edge_ops):
            states[dst] = states[dst] + op(states[src])
        return torch.cat(states[2:], dim=1)  # type: ignore[arg-type]


class NB201Network(nn.Module):
    """NAS-Bench-201 skeleton: stem, 3 stages of N cells (C, 2C, 4C) with residual reductions.

    ``make_cell(channels)`` builds each cell (default: the frozen architecture's cell); the
    DARTS supernet passes its mixed cells here, so both share one skeleton.
    """

    def __init__(self, arch: dict[str, Any], num_classes: int, in_channels: int,
                 make_cell: Callable[[int], nn.Module] | None = None) -> None:
        super().__init__()
        s = arch["settings"]
        if make_cell is None:
            cell = next(iter(arch["cells"].values()))
            make_cell = lambda c: DenseCell(cell, c)  # noqa: E731
        c = s["C"]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        layers: list[nn.Module] = []
        for stage in range(3):
            if stage > 0:
                layers.append(create_op("resnet_basic", c, 2 * c, 2))
                c *= 2
            layers.extend(make_cell(c) for _ in range(s["N"]))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, num_classes)."""
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


class DartsNetwork(nn.Module):
    """DARTS skeleton: stem, ``layers`` cells with reductions at 1/3 and 2/3 of the depth.

    ``make_cell(kind, c_pp, c_p, channels, reduction, reduction_prev)`` builds each cell
    (kind ``"normal"`` or ``"reduce"``; the module must expose ``out_channels``).
    """

    def __init__(self, arch: dict[str, Any], num_classes: int, in_channels: int,
                 make_cell: Callable[..., nn.Module] | None = None) -> None:
        super().__init__()
        if make_cell is None:
            def make_cell(kind: str, *args: Any) -> nn.Module:
                return TwoInputCell(arch["cells"][kind], *args)
        s = arch["settings"]
        c = s["C"]
        c_stem = s["stem_multiplier"] * c
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_stem))
        c_pp, c_p = c_stem, c_stem
        reduction_prev = False
        self.cells = nn.ModuleList()
        layers = s["layers"]
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c *= 2
            cell = make_cell("reduce" if reduction else "normal", c_pp, c_p, c, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.out_channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, num_classes)."""
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(torch.flatten(self.pool(s1), 1))
