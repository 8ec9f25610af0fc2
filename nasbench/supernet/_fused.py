"""Fast paths for the weighted sum of a mixed edge, each equal (to float rounding) to ``w * op(x)``.

A candidate op gets one of these plans when its module allows, else the generic ``w * op(x)``:

- ``zero``: not run at all (it adds nothing);
- ``identity``: ``w * x`` fused into the running sum (``addcmul``);
- ``avg_pool``: a 3x3 average pool without padding in the count, as a fixed depthwise box-sum
  conv times a per-pixel ``1 / count`` map (PyTorch's CPU ``avg_pool2d`` is ~10x slower);
- ``relu_head``: a ``Sequential`` starting with a (not in-place) ReLU shares one ``relu(x)``
  with every such candidate of the edge;
- ``bn_tail``: a ``Sequential`` ending with an affine BatchNorm gets ``w`` folded into the BN's
  scale and shift (``w·BN(y) = BN(y; w·γ, w·β)``), so no separate multiply.

Parameters, buffers and ``state_dict`` are the op's own; only the arithmetic is fused.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasbench.ops import Pool, Zero

__all__ = ["EdgePlan", "plan_candidate"]


class EdgePlan:
    """How one candidate of a mixed edge is computed: ``kind`` and, for sequences, ``body`` modules."""

    __slots__ = ("kind", "relu_head", "body", "bn", "stride")

    def __init__(self, kind: str, *, relu_head: bool = False, body: list[nn.Module] | None = None,
                 bn: nn.BatchNorm2d | None = None, stride: int = 1) -> None:
        self.kind = kind
        self.relu_head = relu_head
        self.body = body or []
        self.bn = bn
        self.stride = stride


def plan_candidate(op: nn.Module) -> EdgePlan:
    """The fastest exact plan for ``op`` (see the module docstring)."""
    if isinstance(op, Zero):
        return EdgePlan("zero")
    if isinstance(op, nn.Identity):
        return EdgePlan("identity")
    if (isinstance(op, Pool) and op.preprocess is None and isinstance(op.pool, nn.AvgPool2d)
            and _pool_args(op.pool) is not None):
        return EdgePlan("avg_pool", stride=_pool_args(op.pool))  # type: ignore[arg-type]
    if isinstance(op, nn.Sequential) and type(op).forward is nn.Sequential.forward and len(op) >= 2:
        children = list(op)
        relu_head = type(children[0]) is nn.ReLU and not children[0].inplace
        last = children[-1]
        foldable = type(last) is nn.BatchNorm2d and last.affine
        if relu_head or foldable:
            body = children[int(relu_head): len(children) - int(foldable)]
            return EdgePlan("sequence", relu_head=relu_head, body=body, bn=last if foldable else None)
    return EdgePlan("module")


def _pool_args(pool: nn.AvgPool2d) -> int | None:
    """The stride of a 3x3, padding-1, count-excluding-pad, floor-mode average pool; else None."""
    def one(v: Any) -> Any:
        return v if isinstance(v, int) else (v[0] if len(set(v)) == 1 else None)

    k, s, p = one(pool.kernel_size), one(pool.stride), one(pool.padding)
    if k != 3 or p != 1 or pool.count_include_pad or pool.ceil_mode or pool.divisor_override is not None:
        return None
    return s if s in (1, 2) else None


class BoxPool:
    """3x3 average pool (padding 1, pad excluded from the count) as a depthwise conv; caches kernels and maps."""

    def __init__(self) -> None:
        self._kernels: dict[tuple[Any, ...], torch.Tensor] = {}
        self._inverse: dict[tuple[Any, ...], torch.Tensor] = {}

    def sum_and_inverse_count(self, x: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(3x3 box sums of ``x`` at ``stride``, ``1 / valid pixels`` per output pixel)."""
        c, h, w = x.shape[1:]
        key = (c, x.device, x.dtype)
        kernel = self._kernels.get(key)
        if kernel is None:
            kernel = self._kernels[key] = torch.ones(c, 1, 3, 3, device=x.device, dtype=x.dtype)
        mkey = (h, w, stride, x.device, x.dtype)
        inv = self._inverse.get(mkey)
        if inv is None:
            ones = torch.ones(1, 1, h, w, device=x.device, dtype=x.dtype)
            count = F.conv2d(ones, torch.ones(1, 1, 3, 3, device=x.device, dtype=x.dtype), stride=stride, padding=1)
            inv = self._inverse[mkey] = count.reciprocal()
        return F.conv2d(x, kernel, stride=stride, padding=1, groups=c), inv


BOX_POOL = BoxPool()


def batch_norm_scaled(bn: nn.BatchNorm2d, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``scale * bn(x)`` as one BN call with scaled affine parameters (same running-statistics update)."""
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    training = bn.training or (bn.running_mean is None and bn.running_var is None)
    keep = not bn.training or bn.track_running_stats
    return F.batch_norm(x, bn.running_mean if keep else None, bn.running_var if keep else None,
                        bn.weight * scale, bn.bias * scale, training, factor, bn.eps)


def weighted_sum(ops: nn.ModuleList, plans: list[EdgePlan], live: list[int], x: torch.Tensor,
                 weights: torch.Tensor) -> torch.Tensor:
    """Σ_{i in live} weights[i] · ops[i](x), computed with the plans; always a fresh tensor."""
    out: torch.Tensor | None = None
    relu_x: torch.Tensor | None = None
    for i in live:
        plan, w = plans[i], weights[i]
        if plan.kind == "identity":
            if out is None:
                out = x * w
            else:
                out.addcmul_(x, w)
            continue
        if plan.kind == "avg_pool":
            box, inv = BOX_POOL.sum_and_inverse_count(x, plan.stride)
            if out is None:
                out = box * (inv * w)
            else:
                out.addcmul_(box, inv * w)
            continue
        if plan.kind == "sequence":
            y = x
            if plan.relu_head:
                if relu_x is None:
                    relu_x = torch.relu(x)
                y = relu_x
            for m in plan.body:
                y = m(y)
            term = batch_norm_scaled(plan.bn, y, w) if plan.bn is not None else y * w
        else:
            term = ops[i](x) * w
        if out is None:
            out = term
        else:
            out.add_(term)
    if out is None:  # no live candidate: a zero op gives the output shape
        return ops[0](x)
    return out
