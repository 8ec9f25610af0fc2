"""NAS-Bench-201 cell space: 4 nodes, 6 edges, 5 ops per edge -> 15,625 cells (Dong & Yang, 2020)."""

from nasbench.space import Cell, CellSpace

# Genome values are the benchmark's own op names, so genomes convert to and from its strings.
OPS = {
    "none": "zero",
    "skip_connect": "skip",
    "nor_conv_1x1": "relu_conv_bn_1x1",
    "nor_conv_3x3": "relu_conv_bn_3x3",
    "avg_pool_3x3": "avg_pool_3x3",
}

SPACE = CellSpace(
    "nb201",
    [Cell("cell", OPS, nodes=4)],
    skeleton="nb201",
    description="NAS-Bench-201 cell: 4 nodes, 6 edges x 5 ops, stacked 3x5 with residual reductions",
)
