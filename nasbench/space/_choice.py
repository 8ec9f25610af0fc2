"""Decisions: the named choices a space is made of."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from nasbench.errors import SpaceError

__all__ = ["Choice", "Decision", "Value", "KINDS"]

Value = Union[str, int, float, bool]  # noqa: UP007 - runtime alias, py3.10

#: Kinds of decision; mutation can be restricted to some of them.
KINDS = ("op", "width", "depth", "kernel", "expansion", "connection", "choice")

_KIND_BY_FIELD = {
    "op": "op",
    "width": "width",
    "channels": "width",
    "width_mult": "width",
    "depth": "depth",
    "kernel_size": "kernel",
    "expansion": "expansion",
    "inputs": "connection",
}


@dataclass(frozen=True)
class Choice:
    """An unlabelled choice among plain values; the space gives it its label from where it stands.

    Args:
        values: The candidate values (str, int, float or bool), at least one, no duplicates.
        kind: One of ``KINDS``; inferred from the field name when omitted.
        ordered: Whether neighbouring values are "close" (mutation then steps to a neighbour);
            default: True when every value is a number.
    """

    values: tuple[Value, ...]
    kind: str | None = None
    ordered: bool | None = None

    def __init__(self, values: Sequence[Value], *, kind: str | None = None,
                 ordered: bool | None = None) -> None:
        vals = tuple(values)
        if not vals:
            raise SpaceError("Choice needs at least one value")
        for v in vals:
            if not isinstance(v, (str, int, float, bool)):
                raise SpaceError(f"Choice values must be str, int, float or bool, got {v!r}")
            if isinstance(v, float) and not math.isfinite(v):
                raise SpaceError(f"Choice values must be finite, got {v!r}")
        if len({(_category(v), v) for v in vals}) != len(vals):
            raise SpaceError(f"Choice values must be distinct, got {list(vals)}")
        if kind is not None and kind not in KINDS:
            raise SpaceError(f"unknown decision kind {kind!r}; valid: {', '.join(KINDS)}")
        object.__setattr__(self, "values", vals)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "ordered", ordered)

    def labelled(self, label: str, field_name: str, group: str,
                 children: dict[Value, tuple[Decision, ...]] | None = None) -> Decision:
        """Turn this choice into a ``Decision`` called ``label``."""
        kind = self.kind or _KIND_BY_FIELD.get(field_name, "choice")
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values)
        ordered = numeric if self.ordered is None else self.ordered
        kids = tuple((v, tuple(children.get(v, ()))) for v in self.values) if children else ()
        return Decision(label, self.values, kind, ordered, group, kids)


def as_choice(value: Any) -> Choice | None:
    """``value`` if it is a Choice, else None (a fixed value)."""
    return value if isinstance(value, Choice) else None


@dataclass(frozen=True)
class Decision:
    """A labelled decision of a space.

    ``children`` maps some values to the decisions that become active when this decision
    takes that value (for example, a stage depth of 3 activates the third block's decisions).
    """

    label: str
    values: tuple[Value, ...]
    kind: str
    ordered: bool
    group: str
    children: tuple[tuple[Value, tuple[Decision, ...]], ...] = field(default=())

    def children_for(self, value: Value) -> tuple[Decision, ...]:
        """Decisions activated when this decision takes ``value``."""
        i = self.index(value)
        return self.children[i][1] if self.children and i >= 0 else ()

    def index(self, value: Value) -> int:
        """Position of ``value`` among ``values``; -1 if absent (type-strict, so True != 1)."""
        for i, v in enumerate(self.values):
            if v == value and _same_type(v, value):
                return i
        return -1

    def to_json(self) -> dict[str, Any]:
        """Plain description used for the space's structural hash."""
        out: dict[str, Any] = {"label": self.label, "values": list(self.values), "kind": self.kind}
        if self.children:
            out["children"] = [[v, [c.label for c in kids]] for v, kids in self.children if kids]
        return out


def _category(v: Value) -> str:
    """bool, number or str: values of one category compare by value (1 == 1.0)."""
    return "bool" if isinstance(v, bool) else "str" if isinstance(v, str) else "number"


def _same_type(a: Value, b: Value) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return True
    return type(a) is type(b)
