"""Mixed ops and mixed cells: every candidate op on every edge, weighted by softmax(alpha)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from nasbench.build import preprocess_inputs
from nasbench.ops import create_op
from nasbench.supernet._fused import plan_candidate, weighted_sum

__all__ = ["MixedOp", "MixedDenseCell", "MixedTwoInputCell"]

#: (genome value, registry op, params) of each candidate op.
Candidates = Sequence[tuple[str, str, dict[str, Any]]]
#: Returns the weights of a cell's edges: (n_edges, n_ops), and the auxiliary-skip weight (one, or one per edge).
WeightsFn = Callable[[], tuple[torch.Tensor, "float | list[float]"]]


def _edge(beta: float | list[float], e: int) -> float:
    return beta[e] if isinstance(beta, list) else beta


class MixedOp(nn.Module):
    """Σ_i w_i · op_i(x) over the candidate ops of one edge (plus β·x, DARTS-, when stride 1).

    ``zero`` candidates are not run (they contribute 0 whatever their weight). The sum is
    fused where the op allows (``nasbench.supernet._fused``): shared ``relu(x)``, the weight
    folded into a trailing BatchNorm, average pooling as a box-sum conv; ``fused=False`` runs
    the plain ``Σ w_i · op_i(x)``. Both give the same values up to float rounding.
    """

    def __init__(self, channels: int, stride: int, candidates: Candidates, *, fused: bool = True) -> None:
        super().__init__()
        self.ops = nn.ModuleList()
        self.live: list[int] = []
        for i, (_, op, params) in enumerate(candidates):
            module = create_op(op, channels, channels, stride, **params)
            self.ops.append(module)
            if op != "zero":
                self.live.append(i)
        self.stride = stride
        self.fused = fused
        self.plans = [plan_candidate(m) for m in self.ops]

    def forward(self, x: torch.Tensor, weights: torch.Tensor, aux_skip: float = 0.0) -> torch.Tensor:
        """Weighted sum of the live candidates' outputs (``weights``: one per candidate)."""
        if self.fused:
            out = weighted_sum(self.ops, self.plans, self.live, x, weights)
        elif not self.live:  # every candidate is a zero op
            out = self.ops[0](x)
        else:
            out = sum(weights[i] * self.ops[i](x) for i in self.live)
        if aux_skip and self.stride == 1:
            out = out + aux_skip * x
        return out


class MixedDenseCell(nn.Module):
    """Single-input cell with a mixed op on every edge (NAS-Bench-201 style); ``kind`` names its alpha."""

    def __init__(self, nodes: int, channels: int, candidates: Candidates, weights: WeightsFn, kind: str = "cell") -> None:
        super().__init__()
        self.kind = kind
        self.nodes = nodes
        self.edges = [(i, j) for j in range(1, nodes) for i in range(j)]
        self.mixed = nn.ModuleList(MixedOp(channels, 1, candidates) for _ in self.edges)
        self._weights = weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the last node."""
        w, beta = self._weights()
        states = [x] + [0] * (self.nodes - 1)
        for e, ((i, j), op) in enumerate(zip(self.edges, self.mixed)):
            states[j] = states[j] + op(states[i], w[e], _edge(beta, e))
        return states[-1]  # type: ignore[return-value]


class MixedTwoInputCell(nn.Module):
    """DARTS cell with a mixed op on every candidate edge i -> j (i < j), output = concat of nodes.

    ``kind`` (``normal`` or ``reduce``) names the alpha it uses.
    """

    def __init__(self, nodes: int, c_pp: int, c_p: int, channels: int, reduction: bool, reduction_prev: bool,
                 candidates: Candidates, weights: WeightsFn, kind: str = "normal") -> None:
        super().__init__()
        self.kind = kind
        self.pre0, self.pre1 = preprocess_inputs(c_pp, c_p, channels, reduction_prev)
        self.nodes = nodes
        self.edges = [(i, j) for j in range(2, nodes + 2) for i in range(j)]
        self.mixed = nn.ModuleList(MixedOp(channels, 2 if reduction and i < 2 else 1, candidates)
                                   for i, _ in self.edges)
        self.out_channels = channels * nodes
        self._weights = weights

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        """Concatenation of the intermediate nodes."""
        w, beta = self._weights()
        states: list[Any] = [self.pre0(s0), self.pre1(s1)] + [0] * self.nodes
        for e, ((i, j), op) in enumerate(zip(self.edges, self.mixed)):
            states[j] = states[j] + op(states[i], w[e], _edge(beta, e))
        return torch.cat(states[2:], dim=1)
