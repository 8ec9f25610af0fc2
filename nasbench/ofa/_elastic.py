"""Elastic layers of the Once-for-All supernet: weights at their largest size, sliced per subnet.

Every layer stores its largest weights and, on each forward, uses

* the first ``in`` input channels (``in`` is read from the input tensor),
* the first ``out`` output channels (``active_out``),
* for depthwise convolutions, the active kernel: the centre of the larger kernel passed
  through a learned ``k²×k²`` transform per step (7 -> 5 -> 3, Cai et al., 2020),
* for BatchNorm, the first ``out`` statistics (updated in place through the slice).

Every slice is a leading block of a stored tensor (the first entries along each dimension).
The same slicing rules describe the tensors of stand-alone modules (``slices``: state-dict
name -> ``Slice``; ``copy_to`` copies them into a built module, ``OFASupernet.extract`` makes
the module around copies of them), so a subnet computes exactly what the supernet computes
with that subnet active.
"""

from __future__ import annotations

import copy
import functools
import operator
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nasbench.ops import ConvBNAct, make_activation, make_divisible
from nasbench.ops._checks import same_padding

__all__ = ["ElasticConvBNAct", "ElasticMBConv", "ElasticSqueezeExcite", "Slice", "batch_norm_slice", "copy_leading",
           "copy_slices", "leading", "leading_copier", "se_hidden", "tensor_source"]

#: A tensor of a stand-alone module as a slice of the supernet: a function returning the
#: supernet's current tensor (a parameter or buffer, or a computed depthwise kernel) and the
#: shape of its leading block. A description, valid for as long as the supernet trains.
Slice = tuple[Callable[[], torch.Tensor], tuple[int, ...]]


def batch_norm_slice(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm over the first ``x.shape[1]`` channels of ``bn`` (running stats updated in place)."""
    c = x.shape[1]
    use_batch = bn.training or bn.running_mean is None
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative average, as nn.BatchNorm2d (used to recalibrate)
            momentum = 1.0 / float(bn.num_batches_tracked)
    return F.batch_norm(x, None if bn.running_mean is None else bn.running_mean[:c],
                        None if bn.running_var is None else bn.running_var[:c],
                        bn.weight[:c], bn.bias[:c], use_batch, momentum, bn.eps)


def leading(src: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The leading block of ``src`` with ``shape`` (a view): the first entries along every dimension."""
    return src[tuple(slice(0, n) for n in shape)] if shape else src


def leading_copier(full: tuple[int, ...], shape: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function copying the leading block of ``shape`` out of a tensor of shape ``full``, contiguous.

    One ``narrow_copy`` where it applies (slices in the first two dimensions: every slice of
    the elastic layers), so no view is made first. ``narrow_copy`` is a plain ``memcpy`` on
    the calling thread: with other processes on the cores, a multi-threaded copy can wait
    milliseconds for its second thread.
    """
    full, shape = tuple(full), tuple(shape)
    if not shape:
        return operator.methodcaller("clone")
    if full[1:] == shape[1:]:  # also the whole tensor: narrow_copy copies on one thread, clone on all
        return operator.methodcaller("narrow_copy", 0, 0, shape[0])
    if full[2:] == shape[2:] and full[0] == shape[0]:
        return operator.methodcaller("narrow_copy", 1, 0, shape[1])
    if full[2:] == shape[2:]:
        return functools.partial(_narrow_copy_01, shape[0], shape[1])  # picklable, unlike a lambda
    return functools.partial(_clone_leading, shape)


def _narrow_copy_01(rows: int, cols: int, t: torch.Tensor) -> torch.Tensor:
    return t.narrow(0, 0, rows).narrow_copy(1, 0, cols)


def _clone_leading(shape: tuple[int, ...], t: torch.Tensor) -> torch.Tensor:
    return leading(t, shape).clone(memory_format=torch.contiguous_format)


def copy_leading(src: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A contiguous copy of ``leading(src, shape)`` in ``dtype`` on ``device``, outside autograd."""
    with torch.no_grad():
        if src.dtype != dtype or src.device != device:
            return leading(src, shape).to(device=device, dtype=dtype, memory_format=torch.contiguous_format,
                                          copy=True)
        return leading_copier(src.shape, shape)(src)


def copy_slices(dst: nn.Module, slices: dict[str, Slice]) -> None:
    """Copy ``slices`` (state-dict name -> ``Slice``) into ``dst``, which must have exactly those tensors and shapes."""
    state = {**dict(dst.named_parameters()), **dict(dst.named_buffers())}
    if state.keys() != slices.keys():
        raise ValueError(f"stand-alone {type(dst).__name__} has tensors {sorted(state)}, the elastic slice "
                         f"{sorted(slices)}")
    with torch.no_grad():
        for name, (source, shape) in slices.items():
            if state[name].shape != shape:
                raise ValueError(f"{name}: the stand-alone tensor is {tuple(state[name].shape)}, the elastic "
                                 f"slice {tuple(shape)}")
            state[name].copy_(leading(source(), shape))


def tensor_source(module: nn.Module, name: str) -> Callable[[], torch.Tensor]:
    """A function returning ``module``'s current parameter or buffer ``name`` (a replaced one too)."""
    table = module._parameters if name in module._parameters else module._buffers
    return functools.partial(table.__getitem__, name)  # what nn.Module.__getattr__ does, without its Python


def _bn_slices(bn: nn.BatchNorm2d, c: int, out: dict[str, Slice], prefix: str) -> None:
    """The first ``c`` channels of a BatchNorm's affine parameters and statistics, as a ``BatchNorm2d(c)`` names them."""
    for name in ("weight", "bias", "running_mean", "running_var"):
        out[prefix + name] = (tensor_source(bn, name), (c,))
    out[prefix + "num_batches_tracked"] = (tensor_source(bn, "num_batches_tracked"), ())


def se_hidden(mid: int) -> int:
    """Squeezed channels of the SE block on ``mid`` channels (the rule of the ``mbconv`` op)."""
    return make_divisible(mid // 4, 8)


class ElasticConvBNAct(nn.Module):
    """Conv (no bias, "same" padding) -> BN -> activation with elastic in/out channels.

    Args:
        max_in: Largest input channels.
        max_out: Largest output channels (ignored for depthwise: equals ``max_in``).
        kernel_size: Largest kernel size.
        stride: Conv stride.
        act: Activation module to copy (from the stand-alone op) or activation name.
        depthwise: Depthwise conv (groups = channels); only depthwise kernels are elastic.
        kernels: Kernel sizes the layer can take (depthwise only; default: just ``kernel_size``).
    """

    def __init__(self, max_in: int, max_out: int, kernel_size: int, stride: int = 1,
                 act: nn.Module | str = "relu", depthwise: bool = False, kernels: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.depthwise = depthwise
        out = max_in if depthwise else max_out
        self.conv = nn.Conv2d(max_in, out, kernel_size, stride, same_padding(kernel_size),
                              groups=max_in if depthwise else 1, bias=False)
        self.bn = nn.BatchNorm2d(out)
        self.act = copy.deepcopy(act) if isinstance(act, nn.Module) else make_activation(act)
        self.kernels = tuple(sorted(set(kernels) | {kernel_size}, reverse=True))
        # One learned transform per shrinking step, initialised to the identity (plain centre crop).
        self.transforms = nn.ParameterDict({
            f"{big}to{small}": nn.Parameter(torch.eye(small * small))
            for big, small in zip(self.kernels, self.kernels[1:])})
        self.active_out = out
        self.active_kernel = kernel_size
        # Smaller kernels for extraction (``slices``) with the inputs they were computed from.
        self._kernel_cache: dict[int, torch.Tensor] = {}
        self._kernel_stamp: tuple = ()

    @property
    def max_kernel(self) -> int:
        """The largest kernel size."""
        return self.kernels[0]

    def kernel_weight(self, kernel: int) -> torch.Tensor:
        """Depthwise weight at ``kernel``: centre crops of the full weight, each transformed."""
        w = self.conv.weight
        for big, small in zip(self.kernels, self.kernels[1:]):
            if big <= kernel:
                break
            start = (big - small) // 2
            centre = w[:, :, start:start + small, start:start + small]
            flat = F.linear(centre.reshape(-1, small * small), self.transforms[f"{big}to{small}"])
            w = flat.reshape(w.shape[0], w.shape[1], small, small)
        return w

    def kernel_for_copy(self, kernel: int) -> torch.Tensor:
        """``kernel_weight(kernel)`` without autograd, computed once per kernel while its inputs stay the same.

        A search extracts many subnets from one trained supernet: the transformed kernels are
        computed the first time and reused (the same tensors ``kernel_weight`` gives, bit for
        bit) until the conv weight or a transform is replaced or modified in place (autograd's
        version counter: optimizer steps, ``load_state_dict``, ``sort_channels``, ``.to``). A
        write through ``.data`` escapes that counter; call ``clear_kernel_cache`` after one.
        """
        if kernel >= self.max_kernel:
            return self.conv.weight.detach()
        inputs = (self.conv.weight, *self.transforms.values())
        stamp = tuple((t, t._version, t.data_ptr()) for t in inputs)
        if len(stamp) != len(self._kernel_stamp) or any(
                a is not b or v != u or p != q for (a, v, p), (b, u, q) in zip(stamp, self._kernel_stamp)):
            self._kernel_cache, self._kernel_stamp = {}, stamp
        w = self._kernel_cache.get(kernel)
        if w is None:
            with torch.no_grad():
                w = self._kernel_cache[kernel] = self.kernel_weight(kernel)
        return w

    def clear_kernel_cache(self) -> None:
        """Forget the kernels ``kernel_for_copy`` computed (after writing the weights through ``.data``)."""
        self._kernel_cache, self._kernel_stamp = {}, ()

    def weight_for(self, c_in: int, c_out: int, kernel: int | None = None) -> torch.Tensor:
        """The conv weight a layer with ``c_in`` inputs, ``c_out`` outputs and ``kernel`` uses."""
        if self.depthwise:
            return self.kernel_weight(kernel or self.max_kernel)[:c_in]
        return self.conv.weight[:c_out, :c_in]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Conv-BN-act on the active channels and kernel."""
        c_in = x.shape[1]
        c_out = c_in if self.depthwise else self.active_out
        kernel = self.active_kernel if self.depthwise else self.conv.kernel_size[0]
        w = self.weight_for(c_in, c_out, kernel)
        y = F.conv2d(x, w, None, self.conv.stride, same_padding(kernel), 1, c_in if self.depthwise else 1)
        return self.act(batch_norm_slice(self.bn, y))

    def slices(self, out: dict[str, Slice], prefix: str, c_in: int, c_out: int, kernel: int) -> None:
        """Put the tensors of a stand-alone ``ConvBNAct(c_in, c_out, kernel)`` into ``out`` (names after ``prefix``).

        Slices of the supernet's tensors; a depthwise kernel below the largest is computed
        (``kernel_for_copy``). ``c_out`` and ``kernel`` are ignored where not elastic.
        """
        if self.depthwise:
            c = c_in
            k = min(kernel, self.max_kernel)
            out[prefix + "conv.weight"] = (functools.partial(self.kernel_for_copy, k), (c_in, 1, k, k))
        else:
            c = c_out
            out[prefix + "conv.weight"] = (tensor_source(self.conv, "weight"), (c_out, c_in, *self.conv.kernel_size))
        _bn_slices(self.bn, c, out, prefix + "bn.")

    def copy_to(self, dst: ConvBNAct) -> None:
        """Copy the active slice into a stand-alone ``ConvBNAct`` of the same shape."""
        out: dict[str, Slice] = {}
        self.slices(out, "", dst.conv.in_channels, dst.conv.out_channels, dst.conv.kernel_size[0])
        copy_slices(dst, out)


class ElasticSqueezeExcite(nn.Module):
    """MobileNetV3 squeeze-excite (ReLU, hard sigmoid) on the first ``mid`` channels."""

    def __init__(self, max_mid: int) -> None:
        super().__init__()
        hidden = se_hidden(max_mid)
        self.reduce = nn.Conv2d(max_mid, hidden, 1)
        self.expand = nn.Conv2d(hidden, max_mid, 1)
        self.act = make_activation("relu")
        self.gate = make_activation("hsigmoid")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale ``x`` by its channel gate."""
        mid = x.shape[1]
        h = se_hidden(mid)
        s = F.adaptive_avg_pool2d(x, 1)
        s = self.act(F.conv2d(s, self.reduce.weight[:h, :mid], self.reduce.bias[:h]))
        return x * self.gate(F.conv2d(s, self.expand.weight[:mid, :h], self.expand.bias[:mid]))

    def slices(self, out: dict[str, Slice], prefix: str, mid: int) -> None:
        """Put the tensors of the stand-alone ``SqueezeExcite`` on ``mid`` channels into ``out`` (names after ``prefix``)."""
        h = se_hidden(mid)
        out[prefix + "reduce.weight"] = (tensor_source(self.reduce, "weight"), (h, mid, 1, 1))
        out[prefix + "reduce.bias"] = (tensor_source(self.reduce, "bias"), (h,))
        out[prefix + "expand.weight"] = (tensor_source(self.expand, "weight"), (mid, h, 1, 1))
        out[prefix + "expand.bias"] = (tensor_source(self.expand, "bias"), (mid,))

    def copy_to(self, dst: nn.Module) -> None:
        """Copy the active slice into a stand-alone ``SqueezeExcite``."""
        if dst.reduce.out_channels != se_hidden(dst.reduce.in_channels):
            raise ValueError("stand-alone SE block and elastic SE block disagree on the hidden width")
        out: dict[str, Slice] = {}
        self.slices(out, "", dst.reduce.in_channels)
        copy_slices(dst, out)

    @torch.no_grad()
    def sort_hidden(self) -> None:
        """Reorder the hidden units by importance (L1 norm of the expand conv's weights on each), largest first.

        The active hidden width follows ``mid`` (``se_hidden``) and is sliced by prefix, so the
        narrower blocks then keep the most important units (OFA's ``re_organize_middle_weights``);
        the reduce conv's outputs (and bias) and the expand conv's inputs move together, so the
        function of the full block is unchanged.
        """
        importance = self.expand.weight.abs().sum(dim=(0, 2, 3))
        order = torch.argsort(importance, descending=True)
        self.reduce.weight.copy_(self.reduce.weight[order])
        self.reduce.bias.copy_(self.reduce.bias[order])
        self.expand.weight.copy_(self.expand.weight[:, order])


class ElasticMBConv(nn.Module):
    """Inverted residual with elastic kernel, expansion and in/out channels.

    The expanded width of the active block is ``round(C_in * expansion)`` exactly as in the
    ``mbconv`` op, so the extracted block has the stand-alone shape.

    Args:
        max_in: Largest input channels.
        max_out: Largest output channels.
        stride: Depthwise stride.
        kernels: Kernel sizes (the largest is stored).
        expansions: Expansion ratios (``(1,)``: no expand conv; 1 cannot be mixed with others).
        se: Squeeze-excite on the expanded channels.
        act: Activation name.
    """

    def __init__(self, max_in: int, max_out: int, stride: int, kernels: tuple[int, ...],
                 expansions: tuple[float, ...], se: bool, act: str) -> None:
        super().__init__()
        self.expansions = tuple(sorted(expansions))
        self.has_expand = self.expansions != (1,)
        max_mid = max(1, round(max_in * max(self.expansions))) if self.has_expand else max_in
        self.expand = ElasticConvBNAct(max_in, max_mid, 1, act=act) if self.has_expand else None
        self.depthwise = ElasticConvBNAct(max_mid, max_mid, max(kernels), stride, act, depthwise=True,
                                          kernels=tuple(kernels))
        self.se = ElasticSqueezeExcite(max_mid) if se else None
        self.project = ElasticConvBNAct(max_mid, max_out, 1, act="none")
        self.stride = stride
        self.active_expansion = max(self.expansions)

    def set_active(self, kernel: int, expansion: float, c_out: int) -> None:
        """Make the block compute with ``kernel``, ``expansion`` and ``c_out`` output channels."""
        self.depthwise.active_kernel = kernel
        self.active_expansion = expansion
        self.project.active_out = c_out

    def mid_channels(self, c_in: int) -> int:
        """Expanded channels for ``c_in`` input channels at the active expansion."""
        return max(1, round(c_in * self.active_expansion)) if self.has_expand else c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The active block on ``x`` (its channel count is the active input width)."""
        out = x
        if self.expand is not None:
            self.expand.active_out = self.mid_channels(x.shape[1])
            out = self.expand(out)
        out = self.depthwise(out)
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        return out + x if self.stride == 1 and out.shape[1] == x.shape[1] else out

    def slices(self, out: dict[str, Slice], prefix: str, c_in: int, mid: int, kernel: int, c_out: int) -> None:
        """Put the tensors of a stand-alone ``MBConv`` into ``out`` (names after ``prefix``).

        The block has ``c_in`` inputs, ``mid`` expanded channels, a ``kernel`` depthwise
        kernel and ``c_out`` outputs (``mid_channels`` and ``set_active`` give the active ones).
        """
        if self.expand is not None:
            self.expand.slices(out, prefix + "expand.", c_in, mid, 1)
        elif mid != c_in:
            raise ValueError(f"an elastic block without expand conv cannot have {mid} channels from {c_in}")
        self.depthwise.slices(out, prefix + "depthwise.", mid, mid, kernel)
        if self.se is not None:
            self.se.slices(out, prefix + "se.", mid)
        self.project.slices(out, prefix + "project.", mid, c_out, 1)

    def copy_to(self, dst: nn.Module) -> None:
        """Copy the active slice into a stand-alone ``MBConv`` of the matching shape."""
        if (dst.expand is None) == self.has_expand or (dst.se is None) != (self.se is None):
            raise ValueError("stand-alone block and elastic block disagree on the expand conv or the SE block")
        mid = dst.depthwise.conv.in_channels
        c_in = dst.expand.conv.in_channels if dst.expand is not None else mid
        out: dict[str, Slice] = {}
        self.slices(out, "", c_in, mid, dst.depthwise.conv.kernel_size[0], dst.project.conv.out_channels)
        copy_slices(dst, out)

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Reorder expanded channels by importance (L1 norm of the projection weights), largest first.

        Slicing the first ``mid`` channels then keeps the most important ones (OFA's
        ``re_organize_middle_weights``); the squeeze-excite hidden units are then sorted the
        same way (``ElasticSqueezeExcite.sort_hidden``). The function of the full block is unchanged.
        """
        if self.expand is not None:
            self._sort_mid()
        if self.se is not None:
            self.se.sort_hidden()

    def _sort_mid(self) -> None:
        importance = self.project.conv.weight.abs().sum(dim=(0, 2, 3))
        order = torch.argsort(importance, descending=True)
        _permute_out(self.expand, order)
        _permute_out(self.depthwise, order)
        if self.se is not None:
            self.se.reduce.weight.copy_(self.se.reduce.weight[:, order])
            self.se.expand.weight.copy_(self.se.expand.weight[order])
            self.se.expand.bias.copy_(self.se.expand.bias[order])
        self.project.conv.weight.copy_(self.project.conv.weight[:, order])


def _permute_out(layer: ElasticConvBNAct, order: torch.Tensor) -> None:
    """Permute a layer's output channels (conv rows and BN parameters/statistics)."""
    layer.conv.weight.copy_(layer.conv.weight[order])
    bn = layer.bn
    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        t.copy_(t[order])
