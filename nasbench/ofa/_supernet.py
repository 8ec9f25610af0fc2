"""The Once-for-All supernet of a macro space: every genome is a subnet sharing one set of weights."""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasbench.errors import SpaceError
from nasbench.ofa._elastic import ElasticConvBNAct, ElasticMBConv
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

        The copy keeps the supernet's BatchNorm statistics; recalibrate them for the subnet
        with ``recalibrate_bn`` before measuring accuracy.
        """
        with torch.random.fork_rng(devices=[]):
            model = self.space.build(genome, self.num_classes, self.input_shape)
        arch = self.set_active(genome)
        self.stem.copy_to(model.stem)
        counts = dict.fromkeys(self._stage_names, 0)
        for dst, b in zip(model.blocks, arch["blocks"]):
            si = self._stage_names.index(b["stage"])
            self.stages[si][counts[b["stage"]]].copy_to(dst)
            counts[b["stage"]] += 1
        if self.head is not None:
            self.head.copy_to(model.head)
        with torch.no_grad():
            w = model.classifier.weight
            w.copy_(self.classifier.weight[:, : w.shape[1]])
            model.classifier.bias.copy_(self.classifier.bias)
        device = self.classifier.weight.device
        return model.to(device).train(self.training)
