"""Tests for the timed units of a network (``trace_units``) and the covering genomes of a space."""

from __future__ import annotations

import json
import random
import time
from collections import Counter

import pytest
from torch import nn

from nasbench._spaces import load_space
from nasbench.build import DenseCell
from nasbench.hardware import covering_genomes, trace_units
from nasbench.ops import op_spec
from nasbench.space import Block, Cell, CellSpace, Choice, MacroSpace, Stage

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = (3, 8, 8)


def op_unit(key: str) -> list:
    """``[name, C_in, C_out, stride, params, input shape]`` of an ``op:`` key."""
    assert key.startswith("op:")
    return json.loads(key[len("op:"):])


def unit_keys(space, genome, shape=SHAPE) -> set[str]:  # noqa: ANN001
    return {u.key for u in trace_units(space.build(genome, num_classes=10, input_shape=shape), shape)}


def inside_ops(model: nn.Module) -> set[int]:
    """ids of the modules strictly inside an op module."""
    out: set[int] = set()
    for m in model.modules():
        if getattr(m, "nasbench_op", None) is not None:
            out.update(id(sub) for sub in m.modules() if sub is not m)
    return out


# -- trace_units -------------------------------------------------------------------------------


def test_resnet_units_are_its_ops_then_pool_and_classifier() -> None:
    space = load_space("resnet")
    genome = space.genome({"stem.width": 16, "s1.width": 32, "s1.depth": 1, "s1.b0.op": "resnet_basic",
                           "s2.width": 64, "s2.depth": 1, "s2.b0.op": "resnet_bottleneck",
                           "s3.width": 128, "s3.depth": 1, "s3.b0.op": "resnet_basic"})
    shape = (1, 8, 8)
    model = space.build(genome, num_classes=10, input_shape=shape)
    units = trace_units(model, shape)

    def params(name: str, **given: object) -> dict:
        return {**op_spec(name).params, **given}

    expected_ops = [
        ["conv_3x3", 1, 16, 1, params("conv_3x3"), [1, 8, 8]],  # stem
        ["resnet_basic", 16, 32, 1, params("resnet_basic"), [16, 8, 8]],
        ["resnet_bottleneck", 32, 64, 2, params("resnet_bottleneck"), [32, 8, 8]],
        ["resnet_basic", 64, 128, 2, params("resnet_basic"), [64, 4, 4]],
    ]
    assert [op_unit(u.key) for u in units[:4]] == expected_ops
    for u, exp in zip(units[:4], expected_ops):
        assert u.module.nasbench_op[0] == exp[0]
        assert u.input_shape == tuple(exp[5])
    # After the ops: the global pool and the classifier (Identity head and dropout are not timed).
    rest = units[4:]
    assert [type(u.module) for u in rest] == [nn.AdaptiveAvgPool2d, nn.Linear]
    assert [u.input_shape for u in rest] == [(128, 2, 2), (128,)]
    assert all(u.key.startswith("module:") for u in rest)
    assert "in_features=128, out_features=10" in rest[1].key
    # Nothing inside an op is its own unit.
    assert not {id(u.module) for u in units} & inside_ops(model)


def test_trace_leaves_the_model_as_it_was() -> None:
    space = load_space("resnet")
    model = space.build(space.sample(3), num_classes=10, input_shape=(1, 8, 8))
    model.train()
    first = [u.key for u in trace_units(model, (1, 8, 8))]
    assert model.training
    assert all(not m._forward_pre_hooks for m in model.modules())
    assert [u.key for u in trace_units(model, (1, 8, 8))] == first  # same units again, no stale hooks


def test_unit_keys_depend_on_input_shape() -> None:
    space = load_space("resnet")
    g = space.sample(1)
    small = unit_keys(space, g, (1, 8, 8))
    big = unit_keys(space, g, (1, 16, 16))
    classifier = {k for k in small if k.startswith('module:["Linear"')}
    assert len(classifier) == 1 and classifier <= big  # after global pooling the shape is the same
    assert len(small) > 2 and small.isdisjoint(big - classifier)


def test_nb201_units_are_called_ops_and_skeleton_leaves() -> None:
    space = load_space("nb201")
    genome = space.genome({"cell.e0-1": "nor_conv_3x3", "cell.e0-2": "skip_connect", "cell.e1-2": "none",
                           "cell.e0-3": "avg_pool_3x3", "cell.e1-3": "nor_conv_1x1", "cell.e2-3": "nor_conv_3x3"})
    model = space.build(genome, num_classes=10, input_shape=SHAPE)
    cells = sum(isinstance(m, DenseCell) for m in model.modules())
    units = trace_units(model, SHAPE)
    ops = Counter(op_unit(u.key)[0] for u in units if u.key.startswith("op:"))
    assert ops == {"relu_conv_bn_3x3": 2 * cells, "skip": cells, "avg_pool_3x3": cells,
                   "relu_conv_bn_1x1": cells, "resnet_basic": 2}  # 'zero' edges are not built at all
    leaves = [type(u.module).__name__ for u in units if u.key.startswith("module:")]
    # stem conv + BN, final BN + ReLU, pool, classifier
    assert sorted(leaves) == sorted(["Conv2d", "BatchNorm2d", "BatchNorm2d", "ReLU", "AdaptiveAvgPool2d", "Linear"])
    assert not {id(u.module) for u in units} & inside_ops(model)


def test_nb201_dead_node_edges_are_not_units() -> None:
    """Node 1 gets only 'none', so edges 1->2 and 1->3 are built but never called: they cost nothing."""
    space = load_space("nb201")
    base = {"cell.e0-1": "none", "cell.e0-2": "nor_conv_3x3", "cell.e0-3": "skip_connect",
            "cell.e2-3": "nor_conv_3x3"}
    dead = space.genome({**base, "cell.e1-2": "avg_pool_3x3", "cell.e1-3": "nor_conv_1x1"})
    model = space.build(dead, num_classes=10, input_shape=SHAPE)
    built = Counter(m.nasbench_op[0] for m in model.modules() if getattr(m, "nasbench_op", None))
    assert built["relu_conv_bn_1x1"] > 0 and built["avg_pool_3x3"] > 0  # the dead edges' ops exist...
    units = trace_units(model, SHAPE)
    names = Counter(op_unit(u.key)[0] for u in units if u.key.startswith("op:"))
    assert "relu_conv_bn_1x1" not in names and "avg_pool_3x3" not in names  # ...but are never timed
    cells = sum(isinstance(m, DenseCell) for m in model.modules())
    assert names == {"relu_conv_bn_3x3": 2 * cells, "skip": cells, "resnet_basic": 2}
    # Same units (with multiplicity) as the genome whose dead edges are 'none' too.
    pruned = space.genome({**base, "cell.e1-2": "none", "cell.e1-3": "none"})
    pruned_units = trace_units(space.build(pruned, num_classes=10, input_shape=SHAPE), SHAPE)
    assert Counter(u.key for u in units) == Counter(u.key for u in pruned_units)
    # With node 1 alive, the 1x1 conv on edge 1->3 is timed once per cell.
    alive = space.genome({**base, "cell.e0-1": "skip_connect", "cell.e1-2": "none", "cell.e1-3": "nor_conv_1x1"})
    alive_names = Counter(op_unit(k)[0] for k in (u.key for u in trace_units(
        space.build(alive, num_classes=10, input_shape=SHAPE), SHAPE)) if k.startswith("op:"))
    assert alive_names["relu_conv_bn_1x1"] == cells


# -- covering_genomes --------------------------------------------------------------------------


def _tiny_user_space() -> MacroSpace:
    mb = {"kernel_size": Choice([3, 5]), "expansion": Choice([2, 3])}
    return MacroSpace("tiny_units", stem_width=Choice([4, 8]), stages=[
        Stage("a", Block.choice({"conv_3x3": {}, "mbconv": mb}), width=Choice([4, 8]), depth=Choice([1, 2]), stride=2),
        Stage("b", Block("dwsep_conv", kernel_size=Choice([3, 5])), width=Choice([8, 12]), depth=Choice([1, 3])),
    ], head_width=Choice([16, 24]), width_multiplier=Choice([0.5, 1.0]))


def assert_covers(space, n: int = 20, seed: int = 1) -> None:  # noqa: ANN001
    cover = covering_genomes(space)
    assert cover and len({g.hash for g in cover}) == len(cover)  # distinct genomes
    covered: set[str] = set()
    for g in cover:
        covered |= unit_keys(space, g)
    rng = random.Random(seed)
    for _ in range(n):
        g = space.sample(rng)
        missing = unit_keys(space, g) - covered
        assert not missing, f"{space.name} genome {g.values} has units no covering genome has: {sorted(missing)[:2]}"


@pytest.mark.parametrize("name", ["nb201", "darts", "resnet"])
def test_covering_genomes_of_builtin_spaces(name: str) -> None:
    assert_covers(load_space(name))


def test_covering_genomes_of_user_macro_space_with_multiplier_and_head() -> None:
    space = _tiny_user_space()
    assert_covers(space, n=30)


def test_covering_genomes_is_deterministic() -> None:
    space = _tiny_user_space()
    assert [g.hash for g in covering_genomes(space, seed=3)] == [g.hash for g in covering_genomes(space, seed=3)]


@pytest.mark.slow
def test_covering_genomes_of_mobilenetv3() -> None:
    """138 covering networks: skipped when tracing them takes over 20 s on this machine."""
    space = load_space("mobilenetv3")
    deadline = time.monotonic() + 20
    covered: set[str] = set()
    for g in covering_genomes(space):
        covered |= unit_keys(space, g)
        if time.monotonic() > deadline:
            pytest.skip("tracing mobilenetv3's covering genomes takes over 20 s here")
    rng = random.Random(1)
    for _ in range(10):
        g = space.sample(rng)
        assert unit_keys(space, g) <= covered, g.values


def test_covering_genomes_include_stem_and_head_decisions() -> None:
    space = MacroSpace("stem_head", stem=Block("conv_3x3", act=Choice(["relu", "hswish"])), stem_width=4,
                       stages=[Stage("a", Block("conv_3x3"), width=8, stride=2)],
                       head=Block("conv_1x1", act=Choice(["relu", "hswish"])), head_width=16)
    assert_covers(space, n=40)


def test_covering_genomes_of_cells_with_different_ops() -> None:
    space = CellSpace("two_op_sets", [Cell("normal", ["skip", "sep_conv_3x3"], nodes=2, inputs=2),
                                      Cell("reduce", ["max_pool_3x3", "avg_pool_3x3"], nodes=2, inputs=2)],
                      skeleton="darts", C=4, layers=3)
    assert_covers(space, n=40)
