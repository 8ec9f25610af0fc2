"""ResNet-style macro space: basic or bottleneck blocks, stage widths and depths."""

from nasbench.space import Block, Choice, MacroSpace, Stage

BLOCK = Block.choice(["resnet_basic", "resnet_bottleneck"])

SPACE = MacroSpace(
    "resnet",
    stem_width=Choice([16, 32]),
    stages=[
        Stage("s1", BLOCK, width=Choice([32, 48, 64]), depth=Choice([1, 2, 3]), stride=1),
        Stage("s2", BLOCK, width=Choice([64, 96, 128]), depth=Choice([1, 2, 3]), stride=2),
        Stage("s3", BLOCK, width=Choice([128, 192, 256]), depth=Choice([1, 2, 3]), stride=2),
    ],
    description="ResNet-style: 3 stages, basic or bottleneck blocks, widths x3, depths 1-3",
)
