"""The operation library: one registry of named PyTorch ops built from ``(C_in, C_out, stride, **params)``.

Every op keeps "same" padding, so its output is ``(N, C_out, ceil(H / stride), ceil(W / stride))``
for stride 1 or 2. Build one with :func:`create_op`; list them with :func:`list_ops`.

Example:
    >>> from nasbench.ops import create_op
    >>> op = create_op("mbconv", 16, 24, stride=2, kernel_size=5, se=True)
"""

from __future__ import annotations

# Importing the op modules registers their ops.
from nasbench.ops import _attention, _blocks, _cell_ops, _conv  # noqa: F401
from nasbench.ops._activations import ACTIVATIONS, make_activation, make_divisible
from nasbench.ops._attention import CBAM, ECA, SqueezeExcite, eca_kernel_size
from nasbench.ops._blocks import MBConv, ResNetBasic, ResNetBottleneck
from nasbench.ops._cell_ops import DilConv, FactorizedReduce, Pool, ReLUConvBN, SepConv, Zero
from nasbench.ops._conv import ConvBNAct, DepthwiseSeparableConv
from nasbench.ops._registry import OPS, OpSpec, create_op, list_ops, op_spec, register_op

__all__ = [
    "ACTIVATIONS",
    "CBAM",
    "ECA",
    "OPS",
    "ConvBNAct",
    "DepthwiseSeparableConv",
    "DilConv",
    "FactorizedReduce",
    "MBConv",
    "OpSpec",
    "Pool",
    "ReLUConvBN",
    "ResNetBasic",
    "ResNetBottleneck",
    "SepConv",
    "SqueezeExcite",
    "Zero",
    "create_op",
    "eca_kernel_size",
    "list_ops",
    "make_activation",
    "make_divisible",
    "op_spec",
    "register_op",
]
