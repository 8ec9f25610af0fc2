"""MobileNetV3 / Once-for-All macro space: per block kernel 3/5/7 and expansion 3/4/6,
per stage depth 2/3/4, and a width multiplier (Cai et al., 2020).

Widths, strides, activations and SE placement follow MobileNetV3-Large; the stem keeps
stride 1 because the built-in datasets are 32x32 or smaller (OFA-for-CIFAR style).
"""

from nasbench.space import Block, Choice, MacroSpace, Stage

KERNEL = Choice([3, 5, 7])
EXPANSION = Choice([3, 4, 6])
DEPTH = Choice([2, 3, 4])


def _stage(name, width, stride, act, se):
    block = Block("mbconv", kernel_size=KERNEL, expansion=EXPANSION, act=act, se=se)
    return Stage(name, block, width=width, depth=DEPTH, stride=stride)


SPACE = MacroSpace(
    "mobilenetv3",
    stem=Block("conv_3x3", act="hswish"),
    stem_width=16,
    stages=[
        Stage("first", Block("mbconv", kernel_size=3, expansion=1, act="relu"), width=16),
        _stage("s1", 24, 2, "relu", False),
        _stage("s2", 40, 2, "relu", True),
        _stage("s3", 80, 2, "hswish", False),
        _stage("s4", 112, 1, "hswish", True),
        _stage("s5", 160, 2, "hswish", True),
    ],
    head=Block("conv_1x1", act="hswish"),
    head_width=960,
    width_multiplier=Choice([0.75, 1.0, 1.25]),
    description="MobileNetV3/OFA: 5 stages, kernel 3/5/7, expansion 3/4/6, depth 2/3/4, width x0.75/1/1.25",
)
