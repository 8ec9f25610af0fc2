"""Macro spaces: stem, stages of repeated blocks (width, depth, stride), head."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nasbench.errors import SpaceError
from nasbench.space._choice import Choice, Decision, Value
from nasbench.space._genome import Genome
from nasbench.space._space import Space

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["Block", "Stage", "MacroSpace", "round_channels"]

Params = Mapping[str, Any]


def round_channels(channels: float, divisor: int = 8) -> int:
    """MobileNet rounding: nearest multiple of ``divisor``, never below 90% of the request."""
    out = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * channels else out


def _param_decisions(params: Params, prefix: str, group: str) -> list[Decision]:
    return [v.labelled(f"{prefix}.{k}", k, group) for k, v in params.items() if isinstance(v, Choice)]


def _resolve(params: Params, prefix: str, values: Mapping[str, Value]) -> dict[str, Any]:
    return {k: values[f"{prefix}.{k}"] if isinstance(v, Choice) else v for k, v in params.items()}


@dataclass(frozen=True)
class Block:
    """A block template: one op of the registry (or a choice of ops) with fixed or chosen params.

    ``Block("mbconv", kernel_size=Choice([3, 5, 7]), expansion=Choice([3, 4, 6]))`` is one op;
    ``Block.choice({"resnet_basic": {}, "resnet_bottleneck": {"expansion": Choice([2, 4])}})``
    chooses the op, and each op's own params are active only when that op is chosen.
    """

    ops: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
    shared: tuple[tuple[str, Any], ...]

    def __init__(self, op: str, **params: Any) -> None:
        _check_name(op)
        object.__setattr__(self, "ops", ((op, ()),))
        object.__setattr__(self, "shared", tuple(params.items()))

    @classmethod
    def choice(cls, ops: Mapping[str, Params] | Sequence[str], **shared: Any) -> Block:
        """A block whose op is chosen among ``ops`` (names, or name -> op-specific params)."""
        table = {name: {} for name in ops} if not isinstance(ops, Mapping) else dict(ops)
        if not table:
            raise SpaceError("Block.choice needs at least one op")
        block = cls.__new__(cls)
        for name in table:
            _check_name(name)
        object.__setattr__(block, "ops", tuple((n, tuple(dict(p).items())) for n, p in table.items()))
        object.__setattr__(block, "shared", tuple(shared.items()))
        return block

    @property
    def is_choice(self) -> bool:
        """Whether the op itself is a decision."""
        return len(self.ops) > 1

    def decisions(self, prefix: str, group: str) -> list[Decision]:
        """The decisions of one instance of this block, labelled under ``prefix``."""
        out = _param_decisions(dict(self.shared), prefix, group)
        if self.is_choice:
            children = {name: tuple(_param_decisions(dict(p), f"{prefix}.{name}", group))
                        for name, p in self.ops}
            out.insert(0, Choice([n for n, _ in self.ops]).labelled(f"{prefix}.op", "op", group, children))
        else:
            out.extend(_param_decisions(dict(self.ops[0][1]), prefix, group))
        return out

    def freeze(self, prefix: str, values: Mapping[str, Value]) -> tuple[str, dict[str, Any]]:
        """(op name, params) of one instance of this block under ``values``."""
        params = _resolve(dict(self.shared), prefix, values)
        if self.is_choice:
            op = str(values[f"{prefix}.op"])
            own = dict(dict(self.ops)[op])
            params.update(_resolve(own, f"{prefix}.{op}", values))
        else:
            op = self.ops[0][0]
            params.update(_resolve(dict(self.ops[0][1]), prefix, values))
        return op, params

    def to_json(self) -> dict[str, Any]:
        """Plain description for the space's structural hash."""
        def enc(p: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
            return {k: (list(v.values) if isinstance(v, Choice) else v) for k, v in p}
        return {"ops": {n: enc(p) for n, p in self.ops}, "shared": enc(self.shared)}


@dataclass(frozen=True)
class Stage:
    """``depth`` repeats of ``block`` with ``width`` output channels; the first block has ``stride``.

    Blocks beyond the chosen depth are inactive: their decisions vanish from the genome.
    """

    name: str
    block: Block
    width: int | Choice
    depth: int | Choice = 1
    stride: int = 1

    def __post_init__(self) -> None:
        _check_name(self.name)
        depths = self.depth.values if isinstance(self.depth, Choice) else (self.depth,)
        widths = self.width.values if isinstance(self.width, Choice) else (self.width,)
        if not all(isinstance(d, int) and d >= 1 for d in depths):
            raise SpaceError(f"stage {self.name!r}: depth values must be integers >= 1, got {list(depths)}")
        if not all(isinstance(w, int) and w >= 1 for w in widths):
            raise SpaceError(f"stage {self.name!r}: widths must be integers >= 1, got {list(widths)}")
        if self.stride not in (1, 2):
            raise SpaceError(f"stage {self.name!r}: stride must be 1 or 2, got {self.stride}")

    @property
    def max_depth(self) -> int:
        """Largest depth the stage can take."""
        return max(self.depth.values) if isinstance(self.depth, Choice) else self.depth

    def decisions(self) -> list[Decision]:
        """Width, depth and per-block decisions; block i is active only when depth > i."""
        g = self.name
        out: list[Decision] = []
        if isinstance(self.width, Choice):
            out.append(self.width.labelled(f"{g}.width", "width", g))
        blocks = [self.block.decisions(f"{g}.b{i}", g) for i in range(self.max_depth)]
        if isinstance(self.depth, Choice):
            low = min(self.depth.values)
            for i in range(low):
                out.extend(blocks[i])
            children = {d: tuple(x for i in range(low, d) for x in blocks[i]) for d in self.depth.values}
            out.append(self.depth.labelled(f"{g}.depth", "depth", g, children))
        else:
            for b in blocks:
                out.extend(b)
        return out

    def to_json(self) -> dict[str, Any]:
        """Plain description for the space's structural hash."""
        def enc(v: Any) -> Any:
            return list(v.values) if isinstance(v, Choice) else v
        return {"name": self.name, "block": self.block.to_json(), "width": enc(self.width),
                "depth": enc(self.depth), "stride": self.stride}


class MacroSpace(Space):
    """A chain network: stem -> stages -> optional 1x1 head conv -> global pool -> classifier.

    Args:
        name: Space name.
        stages: The stages, in order; stage names must be unique.
        stem: Block of the stem (default a 3x3 Conv-BN-ReLU).
        stem_width: Stem output channels (int or Choice).
        stem_stride: Stride of the stem.
        head: Block of the head conv before pooling, used when ``head_width`` is set.
        head_width: Channels of the head conv (None: no head conv).
        width_multiplier: Scales stem and stage widths (rounded to multiples of 8 when != 1).
        dropout: Dropout before the classifier.
        description: One line shown by ``nasbench spaces``.
    """

    kind = "macro"

    def __init__(self, name: str, stages: Sequence[Stage], *, stem: Block | None = None,
                 stem_width: int | Choice = 16, stem_stride: int = 1, head: Block | None = None,
                 head_width: int | Choice | None = None, width_multiplier: float | Choice = 1.0,
                 dropout: float = 0.0, description: str = "") -> None:
        if not stages:
            raise SpaceError(f"space {name!r} needs at least one stage")
        names = [s.name for s in stages]
        reserved = {"stem", "head", "global"} & set(names)
        if len(set(names)) != len(names) or reserved:
            raise SpaceError(f"space {name!r}: stage names must be unique and not stem/head/global, got {names}")
        self.stages = tuple(stages)
        self.stem = stem or Block("conv_3x3")
        self.stem_width = stem_width
        self.stem_stride = stem_stride
        self.head = head or Block("conv_1x1")
        self.head_width = head_width
        self.width_multiplier = width_multiplier
        self.dropout = float(dropout)
        roots: list[Decision] = []
        if isinstance(width_multiplier, Choice):
            roots.append(width_multiplier.labelled("width_mult", "width_mult", "global"))
        if isinstance(stem_width, Choice):
            roots.append(stem_width.labelled("stem.width", "width", "stem"))
        roots.extend(self.stem.decisions("stem", "stem"))
        for s in self.stages:
            roots.extend(s.decisions())
        if head_width is not None:
            if isinstance(head_width, Choice):
                roots.append(head_width.labelled("head.width", "width", "head"))
            roots.extend(self.head.decisions("head", "head"))
        super().__init__(name, roots, description)

    def structure(self) -> dict[str, Any]:
        """Everything that shapes the networks (covered by ``hash``)."""
        def enc(v: Any) -> Any:
            return list(v.values) if isinstance(v, Choice) else v
        return {**super().structure(), "stem": self.stem.to_json(), "stem_width": enc(self.stem_width),
                "stem_stride": self.stem_stride, "stages": [s.to_json() for s in self.stages],
                "head": self.head.to_json(), "head_width": enc(self.head_width),
                "width_multiplier": enc(self.width_multiplier), "dropout": self.dropout}

    def freeze(self, genome: Genome) -> dict[str, Any]:
        """Stem, the list of active blocks (op, channels, stride, params) and the head."""
        v = self.validate(genome).values
        mult = float(v["width_mult"]) if isinstance(self.width_multiplier, Choice) else float(self.width_multiplier)

        def scaled(label: str, fixed: int | Choice) -> int:
            width = int(v[label]) if isinstance(fixed, Choice) else int(fixed)
            return width if mult == 1.0 else round_channels(width * mult)

        op, params = self.stem.freeze("stem", v)
        stem = {"op": op, "C_out": scaled("stem.width", self.stem_width), "stride": self.stem_stride,
                "params": params}
        blocks = []
        for s in self.stages:
            depth = int(v[f"{s.name}.depth"]) if isinstance(s.depth, Choice) else s.depth
            width = scaled(f"{s.name}.width", s.width)
            for i in range(depth):
                op, params = s.block.freeze(f"{s.name}.b{i}", v)
                blocks.append({"stage": s.name, "op": op, "C_out": width,
                               "stride": s.stride if i == 0 else 1, "params": params})
        head = None
        if self.head_width is not None:
            op, params = self.head.freeze("head", v)
            width = int(v["head.width"]) if isinstance(self.head_width, Choice) else int(self.head_width)
            head = {"op": op, "C_out": width, "stride": 1, "params": params}
        return {"kind": "macro", "stem": stem, "blocks": blocks, "head": head, "dropout": self.dropout}

    def to_graph(self, genome: Genome, cell: str | None = None) -> nx.DiGraph:
        """A chain graph: input -> stem -> blocks -> head -> output, ops as node attributes."""
        import networkx as nx

        arch = self.freeze(genome)
        g = nx.DiGraph(space=self.name)
        layers = [("stem", arch["stem"])] + [(f"{b['stage']}.{i}", b) for i, b in enumerate(arch["blocks"])]
        if arch["head"]:
            layers.append(("head", arch["head"]))
        prev = "input"
        g.add_node(prev, role="input")
        for name, layer in layers:
            g.add_node(name, role="layer", op=layer["op"], channels=layer["C_out"], stride=layer["stride"],
                       **{f"param_{k}": p for k, p in layer["params"].items()})
            g.add_edge(prev, name)
            prev = name
        g.add_node("output", role="output")
        g.add_edge(prev, "output")
        return g


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or "." in name:
        raise SpaceError(f"name {name!r} must be a non-empty string without '.'")
