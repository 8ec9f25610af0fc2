"""Cell spaces: a DAG of nodes with an op choice per edge, stacked into a fixed skeleton."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nasbench.errors import GenomeError, SpaceError
from nasbench.space._choice import Choice, Decision
from nasbench.space._genome import Genome
from nasbench.space._space import Space

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["Cell", "CellSpace", "SKELETONS"]

#: Skeletons the builder knows, with their default settings.
SKELETONS: dict[str, dict[str, Any]] = {
    # NAS-Bench-201: stem 3x3 conv (C), 3 stages of N cells (C, 2C, 4C) joined by residual
    # reduction blocks, BN-ReLU, global pool, linear. One single-input cell.
    "nb201": {"C": 16, "N": 5},
    # DARTS CNN: stem 3x3 conv (stem_multiplier*C), `layers` cells, reduction cells at 1/3 and
    # 2/3 of the depth doubling C; two-input cells named "normal" and "reduce".
    "darts": {"C": 16, "layers": 8, "stem_multiplier": 3},
}


@dataclass(frozen=True)
class Cell:
    """A cell: nodes joined by edges, each edge an op chosen from ``ops``.

    Args:
        name: Cell name (label prefix).
        ops: Genome values -> registry op name (or ``(name, params)``); a list of registry
            names maps each name to itself.
        nodes: ``inputs=1``: all nodes including the input node 0; every earlier node feeds
            every later one and the last node is the output (NAS-Bench-201 style).
            ``inputs=2``: intermediate nodes; nodes 0 and 1 are the two inputs, each
            intermediate node picks ``in_degree`` distinct predecessors and an op per chosen
            input, and the output concatenates the intermediate nodes (DARTS style).
        inputs: 1 or 2.
        in_degree: Inputs chosen per intermediate node (``inputs=2`` only; default 2).
    """

    name: str
    ops: tuple[tuple[str, str, tuple[tuple[str, Any], ...]], ...]
    nodes: int
    inputs: int
    in_degree: int

    def __init__(self, name: str, ops: Mapping[str, Any] | Sequence[str], nodes: int,
                 inputs: int = 1, in_degree: int | None = None) -> None:
        if not name or "." in name:
            raise SpaceError(f"cell name {name!r} must be non-empty without '.'")
        table = dict(ops) if isinstance(ops, Mapping) else {o: o for o in ops}
        if not table:
            raise SpaceError(f"cell {name!r} needs at least one op")
        entries = []
        for value, spec in table.items():
            op, params = (spec, {}) if isinstance(spec, str) else (spec[0], dict(spec[1]))
            entries.append((value, op, tuple(sorted(params.items()))))
        if inputs not in (1, 2):
            raise SpaceError(f"cell {name!r}: inputs must be 1 or 2, got {inputs}")
        degree = in_degree if in_degree is not None else (2 if inputs == 2 else 0)
        if inputs == 1 and (nodes < 2 or in_degree is not None):
            raise SpaceError(f"cell {name!r}: a single-input cell needs nodes >= 2 and no in_degree")
        if inputs == 2 and (nodes < 1 or not 1 <= degree <= 2):
            raise SpaceError(f"cell {name!r}: a two-input cell needs nodes >= 1 and in_degree 1 or 2")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "ops", tuple(entries))
        object.__setattr__(self, "nodes", int(nodes))
        object.__setattr__(self, "inputs", int(inputs))
        object.__setattr__(self, "in_degree", int(degree))

    @property
    def op_values(self) -> list[str]:
        """The genome values of the ops, in order."""
        return [v for v, _, _ in self.ops]

    def registry_op(self, value: str) -> tuple[str, dict[str, Any]]:
        """(registry op name, params) for a genome value."""
        for v, op, params in self.ops:
            if v == value:
                return op, dict(params)
        raise GenomeError(f"op {value!r} is not in cell {self.name!r}; choose one of {self.op_values}")

    def node_ids(self) -> list[int]:
        """Ids of the non-input nodes."""
        return list(range(1, self.nodes)) if self.inputs == 1 else list(range(2, self.nodes + 2))

    def decisions(self) -> list[Decision]:
        """Per edge op choices (dense cells) or per node input pairs and ops (two-input cells)."""
        ops = Choice(self.op_values, kind="op")
        out: list[Decision] = []
        for j in self.node_ids():
            if self.inputs == 1:
                out.extend(ops.labelled(f"{self.name}.e{i}-{j}", "op", self.name) for i in range(j))
            else:
                pairs = ["+".join(map(str, c)) for c in itertools.combinations(range(j), self.in_degree)]
                out.append(Choice(pairs, kind="connection").labelled(f"{self.name}.n{j}.inputs", "inputs", self.name))
                out.extend(ops.labelled(f"{self.name}.n{j}.op{m}", "op", self.name) for m in range(self.in_degree))
        return out

    def edges(self, values: Mapping[str, Any]) -> list[tuple[int, int, str]]:
        """(src, dst, op value) for every edge of the cell under ``values``."""
        out = []
        for j in self.node_ids():
            if self.inputs == 1:
                out.extend((i, j, str(values[f"{self.name}.e{i}-{j}"])) for i in range(j))
            else:
                srcs = [int(s) for s in str(values[f"{self.name}.n{j}.inputs"]).split("+")]
                out.extend((s, j, str(values[f"{self.name}.n{j}.op{m}"])) for m, s in enumerate(srcs))
        return out

    def to_json(self) -> dict[str, Any]:
        """Plain description for the space's structural hash."""
        return {"name": self.name, "ops": [[v, op, dict(p)] for v, op, p in self.ops],
                "nodes": self.nodes, "inputs": self.inputs, "in_degree": self.in_degree}


class CellSpace(Space):
    """Cells stacked into a fixed skeleton (``"nb201"`` or ``"darts"``, see ``SKELETONS``).

    Args:
        name: Space name.
        cells: The searched cells. ``nb201`` takes one single-input cell; ``darts`` takes two
            two-input cells named ``normal`` and ``reduce``.
        skeleton: Skeleton name.
        description: One line shown by ``nasbench spaces``.
        **settings: Skeleton settings overriding its defaults (e.g. ``C=8, N=1``).
    """

    kind = "cell"

    def __init__(self, name: str, cells: Sequence[Cell], skeleton: str, description: str = "",
                 **settings: Any) -> None:
        if skeleton not in SKELETONS:
            raise SpaceError(f"unknown skeleton {skeleton!r}; valid: {', '.join(SKELETONS)}")
        unknown = set(settings) - set(SKELETONS[skeleton])
        if unknown:
            raise SpaceError(f"skeleton {skeleton!r} has no setting {sorted(unknown)}; valid: {sorted(SKELETONS[skeleton])}")
        self.cells = tuple(cells)
        self.skeleton = skeleton
        self.settings = {**SKELETONS[skeleton], **settings}
        names = [c.name for c in self.cells]
        if skeleton == "nb201" and (len(self.cells) != 1 or self.cells[0].inputs != 1):
            raise SpaceError(f"space {name!r}: the nb201 skeleton takes exactly one single-input cell")
        if skeleton == "darts" and (sorted(names) != ["normal", "reduce"] or any(c.inputs != 2 for c in self.cells)):
            raise SpaceError(f"space {name!r}: the darts skeleton takes two-input cells named 'normal' and 'reduce'")
        roots = [d for c in self.cells for d in c.decisions()]
        super().__init__(name, roots, description)

    def cell(self, name: str | None = None) -> Cell:
        """The cell called ``name`` (the first cell when None)."""
        if name is None:
            return self.cells[0]
        for c in self.cells:
            if c.name == name:
                return c
        raise SpaceError(f"space {self.name!r} has no cell {name!r}; cells: {[c.name for c in self.cells]}")

    def structure(self) -> dict[str, Any]:
        """Everything that shapes the networks (covered by ``hash``)."""
        return {**super().structure(), "skeleton": self.skeleton, "settings": self.settings,
                "cells": [c.to_json() for c in self.cells]}

    def freeze(self, genome: Genome) -> dict[str, Any]:
        """Skeleton settings and, per cell, its edges as (src, dst, registry op, params)."""
        v = self.validate(genome).values
        cells = {}
        for c in self.cells:
            edges = [[s, d, *c.registry_op(op)] for s, d, op in c.edges(v)]
            cells[c.name] = {"inputs": c.inputs, "nodes": c.nodes, "edges": edges}
        return {"kind": "cell", "skeleton": self.skeleton, "settings": dict(self.settings), "cells": cells}

    def to_graph(self, genome: Genome, cell: str | None = None) -> nx.DiGraph:
        """One cell as a DiGraph: nodes with a ``role``; edges carry ``op`` (zero-op edges left out)."""
        import networkx as nx

        c = self.cell(cell)
        v = self.validate(genome).values
        g = nx.DiGraph(space=self.name, cell=c.name)
        n_in = 1 if c.inputs == 1 else 2
        for i in range(n_in):
            g.add_node(i, role="input")
        for j in c.node_ids():
            g.add_node(j, role="intermediate")
        if c.inputs == 1:
            g.nodes[c.nodes - 1]["role"] = "output"
        for s, d, op in c.edges(v):
            if c.registry_op(op)[0] != "zero":
                g.add_edge(s, d, op=op)
        if c.inputs == 2:
            out = c.nodes + 2
            g.add_node(out, role="output")
            for j in c.node_ids():
                g.add_edge(j, out, op="concat")
        return g

    # -- NAS-Bench-201 strings --------------------------------------------------------------
    def to_arch_str(self, genome: Genome) -> str:
        """The standard NAS-Bench-201 string ``|op~0|+|op~0|op~1|+|...|`` of a single-cell space."""
        c = self._single_input_cell()
        v = self.validate(genome).values
        return "+".join("|" + "|".join(f"{v[f'{c.name}.e{i}-{j}']}~{i}" for i in range(j)) + "|"
                        for j in c.node_ids())

    def from_arch_str(self, text: str) -> Genome:
        """Parse a NAS-Bench-201 string into a genome of this space."""
        c = self._single_input_cell()
        nodes = text.strip().split("+")
        if len(nodes) != c.nodes - 1:
            raise GenomeError(f"arch string {text!r} has {len(nodes)} nodes; expected {c.nodes - 1} "
                              "like '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|'")
        values = {}
        for j, node in enumerate(nodes, start=1):
            parts = node.strip("|").split("|") if node.strip("|") else []
            if not (node.startswith("|") and node.endswith("|")) or len(parts) != j:
                raise GenomeError(f"node {j} of arch string {text!r} must list {j} edges as |op~src|")
            for part in parts:
                op, _, src = part.partition("~")
                if not (src.isascii() and src.isdecimal()) or int(src) >= j:
                    raise GenomeError(f"bad edge {part!r} in arch string; expected op~src with src < {j}")
                values[f"{c.name}.e{int(src)}-{j}"] = op
        return self.genome(values)

    def _single_input_cell(self) -> Cell:
        if len(self.cells) != 1 or self.cells[0].inputs != 1:
            raise SpaceError(f"space {self.name!r} is not a single-cell space; arch strings need one like nb201")
        return self.cells[0]
