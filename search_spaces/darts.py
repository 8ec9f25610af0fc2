"""DARTS CNN space (Liu et al., 2019): normal and reduction cells, 4 nodes with 2 inputs each."""

from nasbench.space import Cell, CellSpace

# The 7 candidate ops of a derived DARTS cell ("none" exists only inside the supernet).
OPS = ["max_pool_3x3", "avg_pool_3x3", "skip", "sep_conv_3x3", "sep_conv_5x5",
       "dil_conv_3x3", "dil_conv_5x5"]

SPACE = CellSpace(
    "darts",
    [Cell("normal", OPS, nodes=4, inputs=2), Cell("reduce", OPS, nodes=4, inputs=2)],
    skeleton="darts",
    C=16,
    layers=8,
    description="DARTS CNN: normal + reduction cells, 4 nodes picking 2 inputs and 7 ops, 8 layers",
)
