"""The Once-for-All supernet of a macro space: every genome is a subnet sharing one set of weights."""

from __future__ import annotations

import copy
import random
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasbench.errors import SpaceError
from nasbench.ofa._elastic import (
    ElasticConvBNAct,
    ElasticMBConv,
    Slice,
    copy_leading,
    leading,
    leading_copier,
    tensor_source,
)
from nasbench.ops import ConvBNAct, create_op
from nasbench.space import Choice, Genome, MacroSpace
from nasbench.space._macro import round_channels

__all__ = ["ELASTIC_KINDS", "PHASES", "OFASupernet", "phase_kinds", "sample_subnet", "largest_subnet",
           "smallest_subnet"]

#: Progressive shrinking: each phase makes one more dimension elastic (Cai et al., 2020),
#: plus the width multiplier last.
PHASES = ("full", "kernel", "depth", "expansion", "width")
#: Decision kinds an OFA supernet can vary, in the order the phases make them elastic.
ELASTIC_KINDS = ("kernel", "depth", "expansion", "width")


def phase_kinds(phase: str) -> frozenset[str]:
    """Decision kinds that are elastic during ``phase`` (cumulative)."""
    if phase not in PHASES:
        raise SpaceError(f"unknown OFA phase {phase!r}; valid: {', '.join(PHASES)}")
    return frozenset(ELASTIC_KINDS[: PHASES.index(phase)])


def largest_subnet(space: MacroSpace) -> Genome:
    """Every elastic dimension at its maximum."""
    return space.pick(lambda d: max(d.values))


def smallest_subnet(space: MacroSpace, kinds: frozenset[str] = frozenset(ELASTIC_KINDS)) -> Genome:
    """The minimum of every decision whose kind is in ``kinds``, the maximum of the others."""
    return space.pick(lambda d: min(d.values) if d.kind in kinds else max(d.values))


def sample_subnet(space: MacroSpace, rng: random.Random,
                  kinds: frozenset[str] = frozenset(ELASTIC_KINDS)) -> Genome:
    """A uniform choice for decisions of ``kinds``; the others at their maximum."""
    return space.pick(lambda d: rng.choice(d.values) if d.kind in kinds else max(d.values))


def _values(v: Any) -> tuple:
    return tuple(v.values) if isinstance(v, Choice) else (v,)


def _scaled(width: int, mult: float) -> int:
    return width if mult == 1.0 else round_channels(width * mult)


def _conv_layer(op: str, params: dict, c_in: int, c_out: int, stride: int, what: str) -> ElasticConvBNAct:
    """An elastic twin of a plain conv op (stem or head), with the op's own activation."""
    ref = create_op(op, c_in, c_out, stride, **params)
    if not isinstance(ref, ConvBNAct) or ref.conv.groups != 1 or ref.conv.dilation != (1, 1):
        raise SpaceError(f"OFA supernet: the {what} op {op!r} is not a plain conv-BN-act; use conv_1x1/conv_3x3/conv")
    return ElasticConvBNAct(c_in, c_out, ref.conv.kernel_size[0], stride, act=ref.act)


class OFASupernet(nn.Module):
    """Elastic network over a macro space whose stages repeat ``mbconv`` blocks.

    Elastic dimensions: kernel size (depthwise, centre crop + learned transform), expansion
    (first channels after importance sorting), depth (the first ``d`` blocks of a stage) and
    width (stage widths and the width multiplier: the first channels). ``set_active`` picks a
    subnet; ``extract`` returns it as a stand-alone ``nn.Module`` with copied weights.

    Args:
        space: A ``MacroSpace`` whose decisions are all elastic kinds and whose stage blocks
            are ``mbconv`` (stem and head plain convs). A one-value ``Choice`` is a constant,
            allowed anywhere.
        num_classes: Classifier outputs.
        input_shape: (C, H, W) of the images.

    Raises:
        SpaceError: the space has a decision or op the supernet cannot make elastic.
    """

    def __init__(self, space: MacroSpace, num_classes: int = 10,
                 input_shape: tuple[int, int, int] = (3, 32, 32)) -> None:
        super().__init__()
        if not isinstance(space, MacroSpace):
            raise SpaceError(f"Once-for-All needs a macro space (stages of mbconv blocks); {space.name!r} is "
                             f"a {type(space).__name__}: use e.g. --space mobilenetv3")
        varying = [d for d in space.decisions if len(d.values) > 1]  # a one-value choice is a constant
        for d in varying:
            if d.kind not in ELASTIC_KINDS:
                raise SpaceError(f"Once-for-All cannot make decision {d.label!r} ({d.kind}) elastic; OFA spaces "
                                 f"vary only {', '.join(ELASTIC_KINDS)}")
        for d in varying:
            if d.group in ("stem", "head", "global") and d.label not in ("width_mult", "head.width"):
                raise SpaceError(f"Once-for-All cannot make {d.label!r} elastic (stem and head choices other than "
                                 "the head width are not supported); fix it in the space")
        self.space, self.num_classes, self.input_shape = space, int(num_classes), tuple(input_shape)
        mults = _values(space.width_multiplier)
        top = space.freeze(largest_subnet(space))

        def max_width(w: Any) -> int:
            return max(_scaled(int(x), float(m)) for x in _values(w) for m in mults)

        stem = top["stem"]
        c = max_width(space.stem_width)
        self.stem = _conv_layer(stem["op"], stem["params"], input_shape[0], c, stem["stride"], "stem")
        self.stages = nn.ModuleList()
        self._stage_names = []
        for s in space.stages:
            block = s.block
            if block.is_choice or block.ops[0][0] != "mbconv":
                raise SpaceError(f"OFA supernet: stage {s.name!r} must repeat one 'mbconv' block, "
                                 f"got {[n for n, _ in block.ops]}")
            params = {**dict(block.shared), **dict(block.ops[0][1])}
            kernels = tuple(int(k) for k in _values(params.get("kernel_size", 3)))
            expansions = tuple(float(e) for e in _values(params.get("expansion", 6)))
            if 1 in expansions and len(expansions) > 1:
                raise SpaceError(f"OFA supernet: stage {s.name!r} mixes expansion 1 (no expand conv) with "
                                 f"{[e for e in expansions if e != 1]}; drop 1 from the choice")
            for name in ("se", "act"):
                if name in params and len(_values(params[name])) > 1:
                    raise SpaceError(f"OFA supernet: stage {s.name!r} chooses {name!r}, which is not elastic")
                if name in params:
                    params[name] = _values(params[name])[0]  # a one-value choice is its value
            out = max_width(s.width)
            blocks = nn.ModuleList()
            for i in range(s.max_depth):
                blocks.append(ElasticMBConv(c if i == 0 else out, out, s.stride if i == 0 else 1, kernels,
                                            expansions, bool(params.get("se", False)), str(params.get("act", "relu"))))
            self.stages.append(blocks)
            self._stage_names.append(s.name)
            c = out
        head = top["head"]
        if head is not None:
            width = max(int(w) for w in _values(space.head_width))  # the head is not width-multiplied
            self.head = _conv_layer(head["op"], head["params"], c, width, 1, "head")
            c = self.head.conv.out_channels
        else:
            self.head = None
        self.dropout = float(top["dropout"])
        self.classifier = nn.Linear(c, self.num_classes)
        self.active: Genome | None = None
        #: ``extract``'s blueprints of op shapes and tensor lists of block positions (not state).
        self._cache: OrderedDict[tuple, Any] = OrderedDict()
        self._depths = [len(b) for b in self.stages]
        self.set_active(largest_subnet(space))

    def set_active(self, genome: Genome) -> dict[str, Any]:
        """Make the subnet of ``genome`` the one ``forward`` computes; returns its frozen architecture."""
        arch = self.space.freeze(genome)
        self.stem.active_out = arch["stem"]["C_out"]
        counts = dict.fromkeys(self._stage_names, 0)
        for b in arch["blocks"]:
            si = self._stage_names.index(b["stage"])
            p = b["params"]
            self.stages[si][counts[b["stage"]]].set_active(int(p.get("kernel_size", 3)),
                                                           float(p.get("expansion", 6)), b["C_out"])
            counts[b["stage"]] += 1
        self._depths = [counts[n] for n in self._stage_names]
        if self.head is not None:
            self.head.active_out = arch["head"]["C_out"]
        self.active = genome
        return arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the active subnet."""
        x = self.stem(x)
        for blocks, depth in zip(self.stages, self._depths):
            for block in blocks[:depth]:
                x = block(x)
        if self.head is not None:
            x = self.head(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        x = F.dropout(x, self.dropout, self.training)
        return F.linear(x, self.classifier.weight[:, : x.shape[1]], self.classifier.bias)

    def sort_channels(self) -> None:
        """Sort every block's expanded channels and SE hidden units by importance (before elastic expansion)."""
        for blocks in self.stages:
            for block in blocks:
                block.sort_channels()

    def extract(self, genome: Genome) -> nn.Module:
        """The stand-alone network of ``genome`` (as ``space.build``) holding copies of the shared weights.

        The module is the one ``space.build(genome, num_classes, input_shape)`` makes (same
        classes, attributes and state-dict keys; parameters and buffers contiguous, in the
        default dtype), in the supernet's train/eval mode and on its device. It is not built
        by running the ops' constructors, whose random initialization the copy would
        overwrite: each op is made from a blueprint of its structure around copies of the
        supernet's slices. The blueprint of an op shape (from a build on the meta device) and
        the slices of a block position are recorded the first time they are met, which costs
        about one build of the op; a search meets the same ones again and again.

        The copy keeps the supernet's BatchNorm statistics; recalibrate them for the subnet
        with ``recalibrate_bn`` before measuring accuracy.
        """
        arch = self.set_active(genome)
        parts = self._parts(genome, arch)
        device, training = self.classifier.weight.device, self.training
        with torch.no_grad():
            made = [blueprint.make(device, training, takes) for blueprint, takes in parts]
        model, blocks = made[0], nn.Sequential(*made[1:])
        blocks.training = training
        model.blocks = blocks
        return model

    def _parts(self, genome: Genome, arch: dict[str, Any]) -> list[tuple[_Blueprint, list[_Take]]]:
        """Blueprint and tensors of the network without its blocks, then of each block (after ``set_active``)."""
        cache, dtype = self._cache, torch.get_default_dtype()
        keys, inputs, c = [], [], arch["stem"]["C_out"]
        for b in arch["blocks"]:
            keys.append((b["op"], c, b["C_out"], b["stride"], _key(b["params"]), dtype))
            inputs.append(c)
            c = b["C_out"]
        head = arch["head"]
        keys.insert(0, ("network", _key(arch["stem"]), _key(head), c, arch["dropout"], self.num_classes,
                        self.input_shape, dtype))
        missing = [i for i, k in enumerate(keys) if k not in cache]
        if missing:
            # Prototypes on the meta device: no storage, no initialization, no random numbers drawn.
            with torch.random.fork_rng(devices=[]), torch.device("meta"):
                if missing[0] == 0:  # the network without its blocks; its blocks serve too
                    proto = self.space.build(genome, self.num_classes, self.input_shape)
                    cache[keys[0]] = _Blueprint(proto, skip=("blocks",))
                    for k, block in zip(keys[1:], proto.blocks):
                        cache.setdefault(k, _Blueprint(block))
                for i in missing:
                    if keys[i] not in cache:
                        b = arch["blocks"][i - 1]
                        cache[keys[i]] = _Blueprint(create_op(b["op"], inputs[i - 1], b["C_out"], b["stride"],
                                                              **b["params"]))
        # Which supernet tensors a block copies depends on its position too.
        counts = dict.fromkeys(self._stage_names, 0)
        take_keys = [("takes", keys[0])]
        for b, k in zip(arch["blocks"], keys[1:]):
            take_keys.append(("takes", self._stage_names.index(b["stage"]), counts[b["stage"]], k))
            counts[b["stage"]] += 1
        for i, tk in enumerate(take_keys):
            if tk in cache:
                continue
            slices: dict[str, Slice] = {}
            if i == 0:
                self.stem.slices(slices, "stem.", self.input_shape[0], arch["stem"]["C_out"], self.stem.max_kernel)
                if self.head is not None:
                    self.head.slices(slices, "head.", c, head["C_out"], self.head.max_kernel)
                    c = head["C_out"]
                slices["classifier.weight"] = (tensor_source(self.classifier, "weight"), (self.num_classes, c))
                slices["classifier.bias"] = (tensor_source(self.classifier, "bias"), (self.num_classes,))
            else:
                block, c_in = self.stages[tk[1]][tk[2]], inputs[i - 1]
                block.slices(slices, "", c_in, block.mid_channels(c_in), block.depthwise.active_kernel,
                             arch["blocks"][i - 1]["C_out"])
            cache[tk] = cache[keys[i]].takes(slices)
        for k in (*keys, *take_keys):
            cache.move_to_end(k)
        parts = [(cache[k], cache[tk]) for k, tk in zip(keys, take_keys)]
        while len(cache) > _MAX_CACHED:
            cache.popitem(last=False)
        return parts


#: Blueprints and slice lists a supernet keeps (least recently used dropped first); the full
#: ``mobilenetv3`` space has a few hundred op shapes, each at one to four block positions.
_MAX_CACHED = 8192
#: Attribute values a made module may share with its blueprint's prototype.
_IMMUTABLE = (bool, int, float, complex, str, bytes, type(None), tuple, frozenset, torch.dtype, torch.device,
              torch.Size)


def _key(v: Any) -> Any:
    """A hashable form of a frozen-architecture value (dicts, lists and scalars, types kept apart)."""
    if isinstance(v, dict):
        return tuple(sorted((k, _key(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_key(x) for x in v)
    return (type(v).__name__, v)


#: One tensor of a made module: the slice's source, the function copying the slice out of it,
#: the slice's shape and the tensor's dtype.
_Take = tuple[Callable[[], torch.Tensor], Callable[[torch.Tensor], torch.Tensor], torch.Size, torch.dtype]


class _Blueprint:
    """How to make a module like a (meta-device) prototype without running its ``__init__``.

    ``make`` returns an instance of the prototype's class with its plain attributes (in the
    same order), fresh hook tables, parameters and buffers that are contiguous copies of
    slices of the supernet, and children made the same way: the module the constructor
    makes, minus the initialization and the Python cost of constructing it.

    Args:
        proto: The module to copy the structure of (any device; meta costs nothing).
        prefix: The state-dict prefix of ``proto`` inside the blueprint's root.
        skip: Children left out (the caller sets them).
    """

    __slots__ = ("cls", "template", "empty", "filled", "deep", "params", "buffers", "children", "tensors")

    def __init__(self, proto: nn.Module, prefix: str = "", skip: tuple[str, ...] = ()) -> None:
        self.cls = type(proto)
        self.template = dict(proto.__dict__)  # key order and the shared immutable values
        self.empty: list[tuple[str, type]] = []  # empty containers (hook tables): a new one per module
        self.filled: list[tuple[str, Any]] = []  # other containers: a shallow copy per module
        self.deep: list[tuple[str, Any]] = []  # anything else mutable: a deep copy per module
        for k, v in proto.__dict__.items():
            if k in ("_parameters", "_buffers", "_modules", "training") or isinstance(v, _IMMUTABLE):
                continue
            if isinstance(v, torch.Tensor):
                raise TypeError(f"{self.cls.__name__}.{k} is a tensor that is neither a parameter nor a buffer")
            if isinstance(v, (dict, list, set)):
                (self.filled.append((k, v)) if v else self.empty.append((k, type(v))))
            else:
                self.deep.append((k, v))
        self.params = [(n, None if p is None else p.requires_grad) for n, p in proto._parameters.items()]
        self.buffers = [(n, b is not None) for n, b in proto._buffers.items()]
        self.children = [(n, None if m is None or n in skip else _Blueprint(m, f"{prefix}{n}."))
                         for n, m in proto._modules.items()]
        #: (state-dict name, shape, dtype) of every tensor, in the order ``make`` takes them.
        self.tensors = [(prefix + n, p.shape, p.dtype) for n, p in proto._parameters.items() if p is not None]
        self.tensors += [(prefix + n, b.shape, b.dtype) for n, b in proto._buffers.items() if b is not None]
        for _, child in self.children:
            if child is not None:
                self.tensors += child.tensors

    def takes(self, slices: dict[str, Slice]) -> list[_Take]:
        """Match ``slices`` (state-dict name -> ``Slice``) to the tensors, in ``make``'s order.

        Raises:
            ValueError: a tensor has no slice, a slice no tensor, or a slice another shape.
        """
        names = [n for n, _, _ in self.tensors]
        if sorted(names) != sorted(slices):
            raise ValueError(f"stand-alone {self.cls.__name__} has tensors {sorted(names)}, the elastic slices "
                             f"{sorted(slices)}")
        out = []
        for name, shape, dtype in self.tensors:
            source, want = slices[name]
            src = source()
            got = tuple(leading(src, want).shape)
            if tuple(want) != tuple(shape) or got != tuple(shape):
                raise ValueError(f"{name}: the stand-alone tensor is {tuple(shape)}, the elastic slice {got}")
            out.append((source, leading_copier(src.shape, shape), shape, dtype))  # supernet shapes stay
        return out

    def make(self, device: torch.device, training: bool, takes: list[_Take]) -> nn.Module:
        """A new module on ``device`` in ``training`` mode holding copies of the slices (call without autograd)."""
        tensors = []
        for source, copier, shape, dtype in takes:
            src = source()
            same = src.dtype is dtype and src.device == device
            tensors.append(copier(src) if same else copy_leading(src, shape, dtype, device))
        return self._make(training, iter(tensors))

    def _make(self, training: bool, tensors: Iterator[torch.Tensor]) -> nn.Module:
        d = dict(self.template)
        for k, t in self.empty:
            d[k] = t()
        for k, v in self.filled:
            d[k] = copy.copy(v)
        for k, v in self.deep:
            d[k] = copy.deepcopy(v)
        d["training"] = training
        d["_parameters"] = {n: None if rg is None else nn.Parameter(next(tensors), rg) for n, rg in self.params}
        d["_buffers"] = {n: next(tensors) if present else None for n, present in self.buffers}
        d["_modules"] = {n: None if b is None else b._make(training, tensors) for n, b in self.children}
        module = self.cls.__new__(self.cls)
        module.__dict__.update(d)
        return module
