"""Timed units of a network: the modules a latency lookup table is keyed by.

A unit is a module made by ``create_op`` (keyed by op name, channels, stride, params and
input shape) or a leaf module outside every op (a skeleton's stem conv, BN, classifier:
keyed by its class, its ``extra_repr`` and input shape). Units are found by running one
forward pass with hooks, so a unit that a network never calls (an op behind a dead cell
node) costs nothing, as it should.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasbench.space import CellSpace, Genome, MacroSpace, Space, iter_assignments

__all__ = ["Unit", "trace_units", "covering_genomes", "unit_key"]


@dataclass(frozen=True)
class Unit:
    """One timed module: its table ``key``, the module and its input shape (without batch)."""

    key: str
    module: nn.Module
    input_shape: tuple[int, ...]


def _op_key(call: tuple[Any, ...], shape: tuple[int, ...]) -> str:
    name, c_in, c_out, stride, params = call
    return "op:" + json.dumps([name, c_in, c_out, stride, dict(params), list(shape)], sort_keys=True)


def _leaf_key(module: nn.Module, shape: tuple[int, ...]) -> str:
    return "module:" + json.dumps([type(module).__name__, module.extra_repr(), list(shape)])


def _units_of(model: nn.Module) -> Iterator[nn.Module]:
    """Op modules and leaf modules outside ops, without descending into ops."""
    stack = [model]
    while stack:
        m = stack.pop()
        if getattr(m, "nasbench_op", None) is not None:
            yield m
            continue
        children = list(m.children())
        if not children and m is not model:
            if any(True for _ in m.parameters(recurse=False)) or not isinstance(m, (nn.Identity, nn.Dropout)):
                yield m
            continue
        stack.extend(reversed(children))


def unit_key(module: nn.Module, input_shape: tuple[int, ...]) -> str:
    """The lookup-table key of ``module`` called on one image of ``input_shape``."""
    call = getattr(module, "nasbench_op", None)
    return _op_key(call, input_shape) if call is not None else _leaf_key(module, input_shape)


@torch.inference_mode()
def trace_units(model: nn.Module, input_shape: tuple[int, int, int]) -> list[Unit]:
    """The units a forward pass of ``model`` on one ``input_shape`` image calls, in call order."""
    calls: list[tuple[nn.Module, tuple[int, ...]]] = []
    handles = []
    for m in _units_of(model):
        def hook(mod: nn.Module, args: tuple[Any, ...]) -> None:
            calls.append((mod, tuple(args[0].shape[1:])))
        handles.append(m.register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros((1, *input_shape)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [Unit(unit_key(m, shape), m, shape) for m, shape in calls]


def covering_genomes(space: Space, seed: int = 0) -> list[Genome]:
    """Genomes whose networks together contain every unit the space can produce.

    Macro spaces: for every stage, every (incoming width, own width, width multiplier,
    assignment of the block's decisions) at full depth (with every stem assignment for the
    first stage, every head width and head assignment for the last). Cell spaces: every op on every edge, with each connection decision at its first
    and its last value (so edges from the cell inputs and from inner nodes both appear).
    """
    if isinstance(space, MacroSpace):
        return list(_macro_cover(space, seed))
    if isinstance(space, CellSpace):
        return list(_cell_cover(space, seed))
    raise TypeError(f"no covering set for space kind {space.kind!r}")


def _values(choice_or_fixed: Any) -> list[Any]:
    return list(choice_or_fixed.values) if hasattr(choice_or_fixed, "values") and not isinstance(choice_or_fixed, (int, float)) else [None]


def _macro_cover(space: MacroSpace, seed: int) -> Iterator[Genome]:
    mults = _values(space.width_multiplier)
    heads = _values(space.head_width) if space.head_width is not None else [None]
    stems = list(iter_assignments(space.stem.decisions("stem", "stem")))
    head_blocks = list(iter_assignments(space.head.decisions("head", "head"))) if space.head_width is not None else [{}]
    seen: set[str] = set()
    for si, st in enumerate(space.stages):
        prev_label = "stem.width" if si == 0 else f"{space.stages[si - 1].name}.width"
        prev_widths = _values(space.stem_width if si == 0 else space.stages[si - 1].width)
        blocks = list(iter_assignments(st.block.decisions(f"{st.name}.b0", st.name)))
        last = si == len(space.stages) - 1
        for mult, wp, w, block, head, stem, head_block in itertools.product(
                mults, prev_widths, _values(st.width), blocks, heads if last else [None],
                stems if si == 0 else [{}], head_blocks if last else [{}]):
            values: dict[str, Any] = {**stem, **head_block}
            if mult is not None:
                values["width_mult"] = mult
            if wp is not None:
                values[prev_label] = wp
            if w is not None:
                values[f"{st.name}.width"] = w
            if not isinstance(st.depth, int):
                values[f"{st.name}.depth"] = st.max_depth
            for i in range(st.max_depth):
                for label, v in block.items():
                    values[f"{st.name}.b{i}." + label[len(f"{st.name}.b0."):]] = v
            if head is not None:
                values["head.width"] = head
            g = space.fill(values, seed)
            if g.hash not in seen:
                seen.add(g.hash)
                yield g


def _cell_cover(space: CellSpace, seed: int) -> Iterator[Genome]:
    seen: set[str] = set()
    conns = [d for d in space.decisions if d.kind == "connection"]
    ops = [d for d in space.decisions if d.kind == "op"]
    for op in dict.fromkeys(v for d in ops for v in d.values):
        for pick in (0, -1):
            values = {d.label: op for d in ops if op in d.values}
            values.update({d.label: d.values[pick] for d in conns})
            g = space.fill(values, seed)
            if g.hash not in seen:
                seen.add(g.hash)
                yield g
