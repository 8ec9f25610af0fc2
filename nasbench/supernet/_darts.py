"""The DARTS supernet of a cell space: the space's own skeleton with mixed cells, alpha per cell."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nasbench.build import DartsNetwork, NB201Network
from nasbench.errors import ConfigError
from nasbench.supernet._cells import MixedDenseCell, MixedOp, MixedTwoInputCell

if TYPE_CHECKING:
    from nasbench.hardware import LatencyProfile
    from nasbench.space import CellSpace, Genome

__all__ = ["CellSupernet"]


def _to_channels_last(_module: nn.Module, _inputs: Any, out: torch.Tensor) -> torch.Tensor:
    return out.contiguous(memory_format=torch.channels_last)


class CellSupernet(nn.Module):
    """Every candidate op on every edge of every cell, mixed by softmax(alpha).

    Works for any ``CellSpace`` (nb201 or darts skeleton, a user's cells included); the
    skeleton and the ops come from the same code and registry as stand-alone networks.
    Cells of one kind share one alpha (``alphas[cell_name]``: edges x candidate ops). Two-input
    (DARTS) cells also get a ``none`` candidate, as in the paper; it is never derived.

    The auxiliary skip weight ``aux_skip`` (DARTS-) is set between steps with
    ``set_aux_skip``; ``forward`` never changes configuration.
    """

    def __init__(self, space: CellSpace, num_classes: int, input_shape: tuple[int, int, int]) -> None:
        super().__init__()
        if space.kind != "cell":
            raise ConfigError(f"DARTS needs a cell space (nb201, darts or your own CellSpace); {space.name!r} is {space.kind}")
        self.space = space
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.candidates: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
        for cell in space.cells:
            cands = [(v, op, dict(p)) for v, op, p in cell.ops]
            if cell.inputs == 2 and not any(op == "zero" or v == "none" for v, op, _ in cands):
                cands.append(("none", "zero", {}))
            self.candidates[cell.name] = cands
        self.edges = {c.name: ([(i, j) for j in range(1, c.nodes) for i in range(j)] if c.inputs == 1 else
                               [(i, j) for j in range(2, c.nodes + 2) for i in range(j)]) for c in space.cells}
        self.alphas = nn.ParameterDict({
            c.name: nn.Parameter(1e-3 * torch.randn(len(self.edges[c.name]), len(self.candidates[c.name])))
            for c in space.cells})
        self.aux_skip = 0.0
        self.channels_last = False
        self._stem_hook: Any = None
        #: Perturbation-based selection (``DartsSearch``, DARTS-PT) discretizes the supernet step by step:
        #: ``fixed_ops[cell][edge]`` is the op index an edge keeps (weight 1, the others 0), and
        #: ``fixed_inputs[cell][node]`` the inputs a two-input node keeps (its other edges are cut).
        self.fixed_ops: dict[str, dict[int, int]] = {c.name: {} for c in space.cells}
        self.fixed_inputs: dict[str, dict[int, tuple[int, ...]]] = {c.name: {} for c in space.cells}
        #: Temporary multiplicative masks of the mixing weights (``masked``), for scoring a perturbation,
        #: and the edges each one removes whole.
        self._masks: dict[str, torch.Tensor] = {}
        self._masked_edges: dict[str, set[int]] = {}
        #: Cell kinds placed at a reduction (stride-2 edges); the others are normal cells.
        self.reduction_cells: set[str] = set()
        arch = {"settings": dict(space.settings), "cells": {}}
        if space.skeleton == "nb201":
            cell = space.cells[0]
            self.net: nn.Module = NB201Network(
                arch, num_classes, input_shape[0],
                make_cell=lambda c: MixedDenseCell(cell.nodes, c, self.candidates[cell.name], self._weights_fn(cell.name),
                                              cell.name))
        else:
            def make(kind: str, c_pp: int, c_p: int, c: int, red: bool, red_prev: bool) -> nn.Module:
                if red:
                    self.reduction_cells.add(kind)
                return MixedTwoInputCell(space.cell(kind).nodes, c_pp, c_p, c, red, red_prev, self.candidates[kind],
                                         self._weights_fn(kind), kind)
            self.net = DartsNetwork(arch, num_classes, input_shape[0], make_cell=make)

    def _weights_fn(self, name: str):  # noqa: ANN202
        return lambda: (self.mixing_weights(name), self.edge_aux_skip(name))

    def edge_aux_skip(self, name: str) -> float | list[float]:
        """DARTS-'s auxiliary skip weight for cell ``name``: one number, or one per edge when edges
        are cut (by ``fixed_inputs`` or a ``masked`` row of zeros), which lose it too."""
        cut = self._masked_edges.get(name, set()) | self.cut_edges(name)
        if not self.aux_skip or not cut:
            return self.aux_skip
        return [0.0 if e in cut else self.aux_skip for e in range(len(self.edges[name]))]

    def cut_edges(self, name: str) -> set[int]:
        """Edges of cell ``name`` that ``fixed_inputs`` cut: into a decided node, from an input it did not keep."""
        inputs = self.fixed_inputs[name]
        return {e for e, (i, j) in enumerate(self.edges[name]) if j in inputs and i not in inputs[j]} if inputs else set()

    def mixing_weights(self, name: str) -> torch.Tensor:
        """The weights the mixed edges of cell ``name`` use: softmax(alpha), with discretized edges
        one-hot, cut edges zero, and a ``masked`` perturbation applied (edges x candidates)."""
        w = torch.softmax(self.alphas[name], dim=-1)
        fixed, inputs = self.fixed_ops[name], self.fixed_inputs[name]
        if fixed or inputs:
            keep = torch.ones(w.shape[0], 1, device=w.device, dtype=w.dtype)
            onehot = torch.zeros_like(w)
            for e, k in fixed.items():
                keep[e] = 0.0
                onehot[e, k] = 1.0
            for e in self.cut_edges(name):
                keep[e] = 0.0
                onehot[e] = 0.0
            w = w * keep + onehot
        mask = self._masks.get(name)
        return w if mask is None else w * mask

    @contextmanager
    def masked(self, name: str, mask: torch.Tensor) -> Iterator[None]:
        """Within the block, multiply cell ``name``'s mixing weights by ``mask`` (edges x candidates)."""
        self._masks[name] = mask.to(self.alphas[name].device)
        self._masked_edges[name] = {int(e) for e in torch.nonzero((mask == 0).all(dim=1)).flatten()}
        try:
            yield
        finally:
            del self._masks[name], self._masked_edges[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the mixed network."""
        return self.net(x)

    def set_channels_last(self, enabled: bool) -> None:
        """Run everything after the stem channels-last (NHWC); ~1.4x faster DARTS steps on CPU at C=16.

        The stem (image channels in) stays NCHW, weights and input, and its output is made
        channels-last: a 1- or 3-channel conv gains nothing from NHWC, and oneDNN pads its channel
        block (see ``nasbench.train.channels_last_ok``, which decides where this is safe).
        """
        self.channels_last = bool(enabled)
        self.net.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
        self.net.stem.to(memory_format=torch.contiguous_format)
        if self._stem_hook is not None:
            self._stem_hook.remove()
            self._stem_hook = None
        if enabled:
            self._stem_hook = self.net.stem.register_forward_hook(_to_channels_last)

    def set_aux_skip(self, beta: float) -> None:
        """Weight of the auxiliary skip connection on stride-1 edges (0 disables it)."""
        self.aux_skip = float(beta)

    def arch_parameters(self) -> list[nn.Parameter]:
        """The alphas."""
        return list(self.alphas.values())

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the alphas."""
        ids = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]

    def probabilities(self) -> dict[str, torch.Tensor]:
        """softmax(alpha) per cell, detached (edges x candidates)."""
        return {k: torch.softmax(a.detach(), dim=-1).cpu() for k, a in self.alphas.items()}

    def edge_labels(self, cell: str) -> list[str]:
        """One readable label per alpha row, e.g. ``cell.e0-1`` or ``normal.e1-3``."""
        return [f"{cell}.e{i}-{j}" for i, j in self.edges[cell]]

    def op_names(self, cell: str) -> list[str]:
        """Candidate op values, one per alpha column."""
        return [v for v, _, _ in self.candidates[cell]]

    def parameter_free_ops(self, cell: str) -> list[str]:
        """Candidate values of ``cell`` whose op has no parameters (``none``, skip, pooling).

        Judged on a stride-1 edge when the cell has one (at stride 2, skip becomes a conv).
        """
        edges = [m for c in self.modules() if isinstance(c, (MixedDenseCell, MixedTwoInputCell)) and c.kind == cell
                 for m in c.mixed]
        if not edges:
            raise ConfigError(f"this supernet has no cell {cell!r}; cells: {', '.join(self.alphas)}")
        mixed = min(edges, key=lambda m: m.stride)
        return [v for (v, _, _), op in zip(self.candidates[cell], mixed.ops) if next(op.parameters(), None) is None]

    def parameter_free_edges(self, genome: Genome) -> dict[str, int]:
        """Per cell, how many of the genome's derived edges carry a parameter-free op."""
        values = self.space.validate(genome).values
        out = {}
        for cell in self.space.cells:
            free = set(self.parameter_free_ops(cell.name))
            out[cell.name] = sum(1 for k, v in values.items()
                                 if k.startswith(f"{cell.name}.") and not k.endswith(".inputs") and v in free)
        return out

    def derive(self) -> Genome:
        """The discrete genome: argmax op per edge (single-input cells); for two-input cells the
        ``in_degree`` incoming edges with the strongest non-``none`` op, each with that op.
        Discretized edges and nodes (``fixed_ops``, ``fixed_inputs``) keep what was fixed."""
        values: dict[str, Any] = {}
        for cell in self.space.cells:
            probs = self.probabilities()[cell.name]
            names = self.op_names(cell.name)
            genome_ops = set(cell.op_values)
            fixed, inputs = self.fixed_ops[cell.name], self.fixed_inputs[cell.name]
            if cell.inputs == 1:
                for e, (i, j) in enumerate(self.edges[cell.name]):
                    values[f"{cell.name}.e{i}-{j}"] = names[fixed[e] if e in fixed else int(torch.argmax(probs[e]))]
                continue
            usable = [k for k, n in enumerate(names) if n in genome_ops]
            for j in cell.node_ids():
                incoming = [(e, i) for e, (i, jj) in enumerate(self.edges[cell.name]) if jj == j]
                best = {i: fixed[e] if e in fixed else max(usable, key=lambda k, e=e: float(probs[e, k]))
                        for e, i in incoming}
                strength = {i: float(probs[e, best[i]]) for e, i in incoming}
                chosen = list(inputs[j]) if j in inputs else \
                    sorted(sorted(strength, key=lambda i: -strength[i])[: cell.in_degree])
                values[f"{cell.name}.n{j}.inputs"] = "+".join(map(str, chosen))
                for m, i in enumerate(chosen):
                    values[f"{cell.name}.n{j}.op{m}"] = names[best[i]]
        return self.space.genome(values)

    def latency_matrices(self, profile: LatencyProfile) -> dict[str, torch.Tensor]:
        """Per cell, (edges x candidates) table latency in ms summed over every cell of that kind.

        ``Σ softmax(alpha) * matrix`` is the differentiable expected latency of the mixed
        edges (the skeleton's fixed cost is left out: it does not depend on alpha).
        """
        from nasbench.hardware import unit_key

        if tuple(profile.input_shape) != self.input_shape or profile.num_classes != self.num_classes:
            raise ConfigError("latency profile was made for another input shape or class count; re-profile the space "
                              f"with --input-shape {','.join(map(str, self.input_shape))} --num-classes {self.num_classes}")
        shapes: dict[int, tuple[int, ...]] = {}
        hooks = [m.register_forward_pre_hook(lambda mod, a: shapes.__setitem__(id(mod), tuple(a[0].shape[1:])))
                 for m in self.modules() if isinstance(m, MixedOp)]
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                self(torch.zeros((1, *self.input_shape), device=next(self.parameters()).device))
        finally:
            for h in hooks:
                h.remove()
            self.train(was)
        out = {name: torch.zeros_like(a, device="cpu") for name, a in self.alphas.items()}
        for cell_module in self.modules():
            if not isinstance(cell_module, (MixedDenseCell, MixedTwoInputCell)):
                continue
            name = cell_module.kind
            for e, mixed in enumerate(cell_module.mixed):
                for k, op in enumerate(mixed.ops):
                    if k not in mixed.live:
                        continue
                    key = unit_key(op, shapes[id(mixed)])
                    if key not in profile.table:
                        raise ConfigError(f"latency profile lacks {key}; profile the space it was made for")
                    out[name][e, k] += profile.table[key]
        return out

