"""Perturbation-based selection (DARTS-PT): decide each edge by how much the supernet needs each op.

``DartsSearch`` calls these after the alpha search when ``DartsConfig.selection`` is
``perturbation``; see ``nasbench.strategies._darts.SELECTIONS`` for the method.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from nasbench.space import CellSpace
    from nasbench.supernet import CellSupernet

__all__ = ["Decision", "plan_decisions", "decide"]

#: One step of the selection: ("op", cell, edge index) or ("inputs", cell, node id).
Decision = tuple[str, str, int]
#: Supernet validation (accuracy, loss) under the current masks.
Evaluate = Callable[[], tuple[float, float]]


def plan_decisions(space: CellSpace, seed: int) -> list[Decision]:
    """Every edge of every cell kind in a seeded random order, then the inputs of each two-input node
    that has a choice (node ``j`` has inputs ``0..j-1``; one with ``in_degree`` of them keeps all).

    Edges are numbered as the supernet numbers them: ``(i, j)`` for each node ``j``, ``i < j``.
    """
    ops: list[Decision] = [("op", c.name, e) for c in space.cells for e in range(sum(c.node_ids()))]
    random.Random(seed).shuffle(ops)
    inputs: list[Decision] = [("inputs", c.name, j) for c in space.cells if c.inputs == 2
                              for j in c.node_ids() if j > c.in_degree]
    return ops + inputs


def _importance(score: tuple[float, float]) -> tuple[float, float]:
    """Sort key of (accuracy, loss) without a candidate: the higher the loss (then the lower the
    accuracy), the more the supernet needs it.

    DARTS-PT's code offers both criteria; the loss is used because it is continuous: on a few
    thousand validation images accuracy moves in whole images, and on the CIFAR-10 proxy the
    two most needed candidates were within 5 of 2,000 images in a quarter of the decisions.
    """
    return -score[1], score[0]


def decide(net: CellSupernet, decision: Decision, evaluate: Evaluate) -> tuple[str, dict[str, list[float]]]:
    """Make one decision on ``net`` (fixing it there); return the choice and each candidate's
    (accuracy, loss) without it. The choice is the candidate whose removal costs most (``_importance``).

    An op decision masks each candidate of the edge in turn; a ``zero`` candidate scores the
    unmasked supernet (removing it changes nothing), and two-input cells never keep the
    supernet's own ``none``. An inputs decision cuts each incoming edge in turn and keeps the
    node's ``in_degree`` most needed inputs.
    """
    kind, cell, index = decision
    names = net.op_names(cell)
    rows, cols = net.alphas[cell].shape
    spec = net.space.cell(cell)
    scores: dict[str, tuple[float, float]] = {}
    if kind == "op":
        zeros = {k for k, (_, op, _) in enumerate(net.candidates[cell]) if op == "zero"}
        allowed = [k for k, n in enumerate(names) if spec.inputs == 1 or n in spec.op_values]
        base = evaluate() if zeros & set(allowed) else None
        for k in allowed:
            if k in zeros:
                scores[names[k]] = base  # type: ignore[assignment]
                continue
            mask = torch.ones(rows, cols)
            mask[index, k] = 0.0
            with net.masked(cell, mask):
                scores[names[k]] = evaluate()
        best = min(allowed, key=lambda k: _importance(scores[names[k]]))
        net.fixed_ops[cell][index] = best
        choice = names[best]
    else:
        incoming = {i: e for e, (i, j) in enumerate(net.edges[cell]) if j == index}
        for i, e in incoming.items():
            mask = torch.ones(rows, cols)
            mask[e] = 0.0
            with net.masked(cell, mask):
                scores[str(i)] = evaluate()
        kept = sorted(sorted(incoming, key=lambda i: _importance(scores[str(i)]))[: spec.in_degree])
        net.fixed_inputs[cell][index] = tuple(kept)
        choice = "+".join(map(str, kept))
    return choice, {k: [round(v[0], 5), round(v[1], 5)] for k, v in scores.items()}
