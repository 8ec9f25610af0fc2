"""Rich tables of trials."""

from __future__ import annotations

from collections.abc import Sequence

from optuna.trial import FrozenTrial
from rich.table import Table

from nasbench.objectives import OBJECTIVES

__all__ = ["trials_table"]


def trials_table(trials: Sequence[FrozenTrial], objectives: Sequence[str], title: str) -> Table:
    """One row per trial: objectives, size, cost and genome hash."""
    table = Table(title=title)
    table.add_column("trial", justify="right")
    for name in objectives:
        table.add_column(OBJECTIVES[name][0], justify="right")
    with_test = any(t.user_attrs.get("test_accuracy") is not None for t in trials)
    if with_test:
        table.add_column("test_accuracy", justify="right")
    for col in ("params", "MACs", "train s", "genome"):
        table.add_column(col, justify="right" if col != "genome" else "left")
    for t in trials:
        u = t.user_attrs
        row = [str(t.number)] + [_num(v) for v in t.values]
        if with_test:
            row.append(_num(u.get("test_accuracy")))
        row += [_num(u.get("params")), _num(u.get("flops")), _num(u.get("train_seconds")), str(u.get("genome_hash", ""))]
        table.add_row(*row)
    return table


def _num(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)
