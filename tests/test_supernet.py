"""Tests for the DARTS cell supernet: mixed ops and cells, alphas, derivation, latency matrices.

Spaces are tiny user cell spaces (C=4, one cell per stage or three DARTS layers) on 1x8x8
inputs, so every supernet here builds and runs in milliseconds on one thread.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasbench._spaces import load_space
from nasbench.errors import ConfigError
from nasbench.hardware import LatencyPredictor, profile_space, torch_threads
from nasbench.ops import list_ops
from nasbench.space import Cell, CellSpace
from nasbench.supernet import CellSupernet, MixedDenseCell, MixedOp, MixedTwoInputCell

INPUT = (1, 8, 8)
#: A user's NAS-Bench-201-style space: one 3-node cell (3 edges x 3 ops), 3 stages of 1 cell.
T201 = CellSpace("t201", [Cell("cell", {"none": "zero", "skip_connect": "skip", "nor_conv_3x3": "relu_conv_bn_3x3"},
                               nodes=3)], skeleton="nb201", C=4, N=1)
#: A user's DARTS-style space: 2 intermediate nodes (5 candidate edges), an op with params,
#: 3 layers = normal, reduce, reduce.
DARTS_OPS = {"skip": "skip", "max_pool_3x3": "max_pool_3x3", "conv_5x5": ("relu_conv_bn", {"kernel_size": 5})}
TDARTS = CellSpace("tdarts", [Cell("normal", DARTS_OPS, nodes=2, inputs=2), Cell("reduce", DARTS_OPS, nodes=2, inputs=2)],
                   skeleton="darts", C=4, layers=3)
#: Table cost (ms) per registry op name; every other unit costs 0.5 ms.
COST = {"skip": 1.0, "relu_conv_bn_3x3": 10.0, "max_pool_3x3": 2.0, "relu_conv_bn": 7.0}


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def supernet(space: CellSpace, seed: int = 0) -> CellSupernet:
    """The supernet of ``space`` for 10 classes on 1x8x8 images, seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CellSupernet(space, 10, INPUT)


def mixed_cells(net: CellSupernet) -> list[MixedDenseCell | MixedTwoInputCell]:
    """The mixed cells of a supernet in network order."""
    return [m for m in net.modules() if isinstance(m, (MixedDenseCell, MixedTwoInputCell))]


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    """Seeded normal noise."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- shapes and alphas ------------------------------------------------------------------------


@pytest.mark.parametrize("space", [T201, TDARTS, load_space("nb201"), load_space("darts")],
                         ids=["user-nb201-style", "user-darts-style", "builtin-nb201", "builtin-darts"])
def test_supernet_gives_logits_and_gradients_reach_every_alpha(space: CellSpace) -> None:
    net = supernet(space)
    x, y = randn(2, *INPUT), torch.tensor([3, 7])
    logits = net(x)
    assert logits.shape == (2, 10)
    F.cross_entropy(logits, y).backward()
    for name, alpha in net.alphas.items():
        assert alpha.grad is not None and torch.isfinite(alpha.grad).all(), name
        assert alpha.grad.abs().sum() > 0, name


def test_nb201_style_space_has_one_alpha_shared_by_every_cell() -> None:
    net = supernet(T201)
    assert list(net.alphas) == ["cell"]
    assert net.alphas["cell"].shape == (3, 3)  # edges 0-1, 0-2, 1-2 x the space's own 3 ops
    assert net.op_names("cell") == ["none", "skip_connect", "nor_conv_3x3"]  # no extra 'none'
    assert net.edge_labels("cell") == ["cell.e0-1", "cell.e0-2", "cell.e1-2"]
    cells = mixed_cells(net)
    assert [c.kind for c in cells] == ["cell"] * 3  # 3 stages x N=1
    with torch.no_grad():
        net.alphas["cell"].copy_(randn(3, 3, seed=1))
    for c in cells:
        w, beta = c._weights()
        torch.testing.assert_close(w, torch.softmax(net.alphas["cell"], -1))


def test_darts_style_space_has_separate_normal_and_reduce_alphas_with_an_extra_none() -> None:
    net = supernet(TDARTS)
    assert sorted(net.alphas) == ["normal", "reduce"]
    for kind in ("normal", "reduce"):
        # node 2 <- 0, 1; node 3 <- 0, 1, 2: 5 edges; 3 ops + the supernet-only 'none'
        assert net.alphas[kind].shape == (5, 4)
        assert net.op_names(kind) == ["skip", "max_pool_3x3", "conv_5x5", "none"]
        assert net.candidates[kind][-1] == ("none", "zero", {})
        assert net.edge_labels(kind) == [f"{kind}.e0-2", f"{kind}.e1-2", f"{kind}.e0-3", f"{kind}.e1-3", f"{kind}.e2-3"]
    cells = mixed_cells(net)
    assert [c.kind for c in cells] == ["normal", "reduce", "reduce"]  # layers 3: reductions at 1 and 2
    with torch.no_grad():
        net.alphas["normal"].copy_(randn(5, 4, seed=1))
        net.alphas["reduce"].copy_(randn(5, 4, seed=2))
    for c in cells:
        torch.testing.assert_close(c._weights()[0], torch.softmax(net.alphas[c.kind], -1))


def test_builtin_darts_space_alphas_have_the_paper_shape() -> None:
    net = supernet(load_space("darts"))
    assert {k: tuple(a.shape) for k, a in net.alphas.items()} == {"normal": (14, 8), "reduce": (14, 8)}
    assert net.op_names("normal")[-1] == "none" and "none" not in load_space("darts").cell("normal").op_values


def test_a_darts_cell_that_already_has_a_zero_op_gets_no_second_none() -> None:
    ops = {"nothing": "zero", "skip": "skip"}
    space = CellSpace("z", [Cell("normal", ops, nodes=1, inputs=2), Cell("reduce", ops, nodes=1, inputs=2)],
                      skeleton="darts", C=4, layers=3)
    net = supernet(space)
    assert net.op_names("normal") == ["nothing", "skip"]
    assert net.alphas["normal"].shape == (2, 2)


def test_every_candidate_op_is_built_by_the_op_registry() -> None:
    registered = set(list_ops())
    for space in (T201, TDARTS):
        net = supernet(space)
        for cell in mixed_cells(net):
            cands = net.candidates[cell.kind]
            c = cell.mixed[0].ops[0].nasbench_op[1]
            for (i, _), mixed in zip(cell.edges, cell.mixed):
                assert len(mixed.ops) == len(cands)
                for (_, op, params), module in zip(cands, mixed.ops):
                    name, c_in, c_out, stride, built_params = module.nasbench_op
                    assert name == op and name in registered
                    assert dict(built_params).items() >= params.items()
                    assert c_in == c_out == c
                    assert stride == mixed.stride
                reduction = isinstance(cell, MixedTwoInputCell) and cell.kind == "reduce"
                assert mixed.stride == (2 if reduction and i < 2 else 1)
                assert mixed.live == [k for k, (_, op, _) in enumerate(cands) if op != "zero"]


# -- mixed ops and cells ----------------------------------------------------------------------

CANDIDATES = [("none", "zero", {}), ("skip", "skip", {}), ("conv", "relu_conv_bn_3x3", {}), ("pool", "avg_pool_3x3", {})]


@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_is_the_weighted_sum_of_its_live_ops(stride: int) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        op = MixedOp(4, stride, CANDIDATES).eval()
    x = randn(2, 4, 8, 8)
    w = torch.softmax(randn(4, seed=1), -1)
    calls = []
    op.ops[0].register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        expected = sum(w[k] * op.ops[k](x) for k in (1, 2, 3))
        got = op(x, w)
        # The zero candidate is never run: even a NaN weight on it leaves the sum finite.
        nan_w = w.clone()
        nan_w[0] = float("nan")
        got_nan = op(x, nan_w)
    assert got.shape == (2, 4, 8 // stride, 8 // stride)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_nan, expected)
    assert calls == []


#: Every kind of fused plan and the generic fallback: NB201's ops plus DARTS's (stride 2 turns
#: skip into FactorizedReduce, a plain module).
FUSED_CANDIDATES = [("none", "zero", {}), ("skip", "skip", {}), ("c1", "relu_conv_bn_1x1", {}),
                    ("c3", "relu_conv_bn_3x3", {}), ("avg", "avg_pool_3x3", {}), ("max", "max_pool_3x3", {}),
                    ("sep", "sep_conv_3x3", {}), ("dil", "dil_conv_3x3", {}), ("c5", "relu_conv_bn", {"kernel_size": 5})]


def test_fast_paths_apply_to_the_nb201_and_darts_ops() -> None:
    op = MixedOp(4, 1, FUSED_CANDIDATES)
    plans = [(p.kind, p.relu_head, p.bn is not None) for p in op.plans]
    assert plans == [("zero", False, False), ("identity", False, False), ("sequence", True, True),
                     ("sequence", True, True), ("avg_pool", False, False), ("module", False, False),
                     ("module", False, False), ("sequence", True, True), ("sequence", True, True)]
    assert MixedOp(4, 2, FUSED_CANDIDATES).plans[1].kind == "module"  # FactorizedReduce


@pytest.mark.parametrize(("stride", "channels_last", "training"),
                         [(1, False, True), (2, False, True), (1, True, True), (2, True, True), (1, False, False)],
                         ids=["s1", "s2", "s1-nhwc", "s2-nhwc", "s1-eval"])
def test_fused_mixed_op_equals_the_naive_weighted_sum(stride: int, channels_last: bool, training: bool) -> None:
    """Outputs, gradients (input, weights, every parameter) and BN statistics match ``Σ w_i · op_i(x)``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        fused = MixedOp(4, stride, FUSED_CANDIDATES).double().train(training)
    naive = copy.deepcopy(fused)
    naive.fused = False
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    fused.to(memory_format=fmt)
    outs, grads = [], []
    for op in (fused, naive):
        x = randn(3, 4, 9, 9, seed=2).double().contiguous(memory_format=fmt).requires_grad_()  # odd size: borders
        w = torch.softmax(randn(len(FUSED_CANDIDATES), seed=1).double(), -1).requires_grad_()
        out = op(x, w, 0.3)
        (out * randn(*out.shape, seed=3).double()).sum().backward()
        outs.append(out)
        grads.append([x.grad, w.grad] + [p.grad for p in op.parameters()])
    assert outs[0].shape == (3, 4, 5 if stride == 2 else 9, 5 if stride == 2 else 9)
    torch.testing.assert_close(outs[0], outs[1])
    assert float(grads[1][1][0]) == 0.0  # 'none' gets no gradient either way
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)
    for (name, a), b in zip(fused.state_dict().items(), naive.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)  # running means/variances and batch counters


def test_channels_last_supernet_gives_the_same_logits_and_state() -> None:
    nets = [supernet(space) for space in (T201, T201)]
    nets[1].set_channels_last(True)
    x = randn(4, *INPUT)
    assert nets[1](x).is_contiguous(memory_format=torch.contiguous_format)  # logits are 2-D either way
    torch.testing.assert_close(nets[0](x), nets[1](x), rtol=1e-5, atol=1e-5)
    assert list(nets[0].state_dict()) == list(nets[1].state_dict())


def test_aux_skip_adds_beta_x_on_stride_one_only() -> None:
    w = torch.softmax(randn(4, seed=1), -1)
    x = randn(2, 4, 8, 8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        one, two = MixedOp(4, 1, CANDIDATES).eval(), MixedOp(4, 2, CANDIDATES).eval()
    with torch.no_grad():
        torch.testing.assert_close(one(x, w, 0.3) - one(x, w, 0.0), 0.3 * x)
        torch.testing.assert_close(two(x, w, 0.3), two(x, w, 0.0))


def test_aux_skip_reaches_only_the_stride_one_edges_of_a_reduction_cell() -> None:
    beta = {"value": 0.0}
    w = torch.softmax(randn(5, 4, seed=1), -1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cell = MixedTwoInputCell(2, 8, 8, 4, True, False, CANDIDATES, lambda: (w, beta["value"]), "reduce").eval()
    seen = []
    for m in cell.mixed:
        m.register_forward_hook(lambda mod, args, out: seen.append((mod, args[0], out)))
    beta["value"] = 0.7
    with torch.no_grad():
        out = cell(randn(2, 8, 8, 8, seed=2), randn(2, 8, 8, 8, seed=3))
        assert out.shape == (2, 8, 4, 4)  # 2 nodes x 4 channels, halved
        assert [m.stride for m, _, _ in seen] == [2, 2, 2, 2, 1]
        for k, (m, x, y) in enumerate(seen):
            plain = m.forward(x, w[k], 0.0)
            torch.testing.assert_close(y - plain, 0.7 * x if m.stride == 1 else torch.zeros_like(y))


def test_supernet_aux_skip_is_set_between_steps_and_changes_the_output() -> None:
    net = supernet(T201).eval()
    x = randn(2, *INPUT)
    with torch.no_grad():
        plain = net(x)
        net.set_aux_skip(0.5)
        skipped = net(x)
    assert net.aux_skip == 0.5  # forward never changes it
    assert not torch.allclose(plain, skipped)
    net.set_aux_skip(0.0)
    with torch.no_grad():
        torch.testing.assert_close(net(x), plain)


def test_mixed_dense_cell_follows_its_dag() -> None:
    w = torch.softmax(randn(3, 4, seed=1), -1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cell = MixedDenseCell(3, 4, CANDIDATES, lambda: (w, 0.0)).eval()
    x = randn(2, 4, 8, 8)
    m01, m02, m12 = cell.mixed
    with torch.no_grad():
        n1 = m01(x, w[0])
        torch.testing.assert_close(cell(x), m02(x, w[1]) + m12(n1, w[2]))


def test_mixed_two_input_cell_concatenates_its_nodes() -> None:
    w = torch.softmax(randn(5, 4, seed=1), -1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cell = MixedTwoInputCell(2, 6, 8, 4, False, False, CANDIDATES, lambda: (w, 0.0), "normal").eval()
    s0, s1 = randn(2, 6, 8, 8, seed=2), randn(2, 8, 8, 8, seed=3)
    m02, m12, m03, m13, m23 = cell.mixed
    with torch.no_grad():
        p0, p1 = cell.pre0(s0), cell.pre1(s1)
        n2 = m02(p0, w[0]) + m12(p1, w[1])
        n3 = m03(p0, w[2]) + m13(p1, w[3]) + m23(n2, w[4])
        torch.testing.assert_close(cell(s0, s1), torch.cat([n2, n3], dim=1))
    assert cell.out_channels == 8


# -- derivation -------------------------------------------------------------------------------


def set_alphas(net: CellSupernet, kind: str, rows: dict[str, dict[str, float]]) -> None:
    """Alphas of ``kind``: 0 everywhere except ``rows[edge label][op value]``."""
    labels, names = net.edge_labels(kind), net.op_names(kind)
    with torch.no_grad():
        a = net.alphas[kind]
        a.zero_()
        for label, ops in rows.items():
            for op, value in ops.items():
                a[labels.index(label), names.index(op)] = value


def check_builds(space: CellSpace, genome) -> None:  # noqa: ANN001
    """The genome validates in its space and builds a working network."""
    assert space.validate(genome) == genome
    model = space.build(genome, num_classes=10, input_shape=INPUT).eval()
    with torch.no_grad():
        assert model(randn(2, *INPUT)).shape == (2, 10)


def test_nb201_style_derive_takes_the_argmax_op_of_every_edge() -> None:
    net = supernet(T201)
    set_alphas(net, "cell", {"cell.e0-1": {"nor_conv_3x3": 2.0, "skip_connect": 1.0},
                             "cell.e0-2": {"none": 0.5},
                             "cell.e1-2": {"skip_connect": 3.0, "none": 2.9}})
    genome = net.derive()
    assert genome.values == {"cell.e0-1": "nor_conv_3x3", "cell.e0-2": "none", "cell.e1-2": "skip_connect"}
    check_builds(T201, genome)


def test_darts_style_derive_keeps_the_top2_edges_by_strongest_non_none_op() -> None:
    net = supernet(TDARTS)
    set_alphas(net, "normal", {
        # node 2 has exactly two candidates; 'none' wins e0-2 but is never derived: skip is taken
        "normal.e0-2": {"none": 5.0, "skip": 1.0},
        "normal.e1-2": {"conv_5x5": 1.0},
        # node 3: e0-3 is dominated by 'none' (weak), e1-3 and e2-3 are kept with their best op
        "normal.e0-3": {"none": 6.0, "max_pool_3x3": 2.0},
        "normal.e1-3": {"max_pool_3x3": 2.0},
        "normal.e2-3": {"conv_5x5": 3.0, "skip": 2.5},
    })
    set_alphas(net, "reduce", {
        "reduce.e0-2": {"max_pool_3x3": 1.0}, "reduce.e1-2": {"max_pool_3x3": 1.0},
        "reduce.e0-3": {"skip": 4.0}, "reduce.e1-3": {"conv_5x5": 1.0, "none": 9.0}, "reduce.e2-3": {"conv_5x5": 3.0},
    })
    genome = net.derive()
    assert genome.values == {
        "normal.n2.inputs": "0+1", "normal.n2.op0": "skip", "normal.n2.op1": "conv_5x5",
        "normal.n3.inputs": "1+2", "normal.n3.op0": "max_pool_3x3", "normal.n3.op1": "conv_5x5",
        "reduce.n2.inputs": "0+1", "reduce.n2.op0": "max_pool_3x3", "reduce.n2.op1": "max_pool_3x3",
        "reduce.n3.inputs": "0+2", "reduce.n3.op0": "skip", "reduce.n3.op1": "conv_5x5",
    }
    check_builds(TDARTS, genome)


@pytest.mark.parametrize("seed", range(4))
def test_derive_from_random_alphas_gives_valid_genomes_without_none(seed: int) -> None:
    net = supernet(TDARTS, seed)
    with torch.no_grad():
        for a in net.alphas.values():
            a.copy_(randn(*a.shape, seed=seed))
            a[:, -1] += 3.0  # 'none' strongest everywhere, as in a collapsed supernet
    genome = net.derive()
    assert "none" not in genome.values.values()
    check_builds(TDARTS, genome)


def test_parameter_free_ops_are_those_without_parameters_on_a_stride_one_edge() -> None:
    assert supernet(T201).parameter_free_ops("cell") == ["none", "skip_connect"]
    net = supernet(TDARTS)
    assert net.reduction_cells == {"reduce"}
    # skip is FactorizedReduce (a conv) on the reduce cell's stride-2 edges, parameter-free on its stride-1 edge
    assert net.parameter_free_ops("reduce") == net.parameter_free_ops("normal") == ["skip", "max_pool_3x3", "none"]
    nb201 = CellSupernet(load_space("nb201"), 10, INPUT)
    assert nb201.parameter_free_ops("cell") == ["none", "skip_connect", "avg_pool_3x3"] and not nb201.reduction_cells
    with pytest.raises(ConfigError, match="no cell 'bogus'"):
        net.parameter_free_ops("bogus")


def test_parameter_free_edges_counts_derived_edges_per_cell() -> None:
    net = supernet(T201)
    genome = T201.genome({"cell.e0-1": "none", "cell.e0-2": "nor_conv_3x3", "cell.e1-2": "skip_connect"})
    assert net.parameter_free_edges(genome) == {"cell": 2}
    net = supernet(TDARTS)
    values = {"normal.n2.inputs": "0+1", "normal.n2.op0": "skip", "normal.n2.op1": "conv_5x5",
              "normal.n3.inputs": "1+2", "normal.n3.op0": "max_pool_3x3", "normal.n3.op1": "skip",
              "reduce.n2.inputs": "0+1", "reduce.n2.op0": "conv_5x5", "reduce.n2.op1": "conv_5x5",
              "reduce.n3.inputs": "0+2", "reduce.n3.op0": "max_pool_3x3", "reduce.n3.op1": "conv_5x5"}
    assert net.parameter_free_edges(TDARTS.genome(values)) == {"normal": 3, "reduce": 1}


def test_supernet_refuses_a_macro_space(tiny_space) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="cell space"):
        CellSupernet(tiny_space, 10, INPUT)


# -- latency matrices -------------------------------------------------------------------------


def hand_profile(space: CellSpace):  # noqa: ANN201
    """A profile of ``space`` on 1x8x8 (no networks), its op units overwritten with ``COST``."""
    profile = profile_space(space, input_shape=INPUT, num_classes=10, networks=0, warmup=0, repeats=1)
    for key in profile.table:
        name = json.loads(key[3:])[0] if key.startswith("op:") else None
        profile.table[key] = COST.get(name, 0.5)
    return profile


@pytest.fixture(scope="module")
def profiles() -> dict[str, object]:
    return {s.name: hand_profile(s) for s in (T201, TDARTS)}


def test_profile_without_networks_predicts_the_table_sum(profiles) -> None:  # noqa: ANN001
    profile = profiles["t201"]
    assert profile.networks == [] and profile.table
    predictor = LatencyPredictor(profile, T201)
    genome = T201.genome({"cell.e0-1": "nor_conv_3x3", "cell.e0-2": "skip_connect", "cell.e1-2": "none"})
    assert predictor.predict(genome) == pytest.approx(predictor.table_sum(genome))
    # one conv and one skip per cell, 3 cells, on top of the fixed skeleton
    base = T201.genome({"cell.e0-1": "none", "cell.e0-2": "none", "cell.e1-2": "none"})
    assert predictor.predict(genome) - predictor.predict(base) == pytest.approx(3 * (10.0 + 1.0))


@pytest.mark.parametrize(("space", "cells"), [(T201, {"cell": 3}), (TDARTS, {"normal": 1, "reduce": 2})],
                         ids=["nb201-style", "darts-style"])
def test_latency_matrix_is_the_table_cost_times_the_cells_sharing_the_alpha(space, cells, profiles) -> None:  # noqa: ANN001
    net = supernet(space)
    matrices = net.latency_matrices(profiles[space.name])
    assert sorted(matrices) == sorted(cells)
    for kind, count in cells.items():
        want = torch.tensor([[0.0 if op == "zero" else COST[op] * count for _, op, _ in net.candidates[kind]]]
                            * len(net.edges[kind]))
        torch.testing.assert_close(matrices[kind], want)


def test_latency_matrix_refuses_an_incomplete_or_foreign_profile(profiles) -> None:  # noqa: ANN001
    net = supernet(T201)
    profile = profiles["t201"]
    conv_key = next(k for k in profile.table if '"relu_conv_bn_3x3"' in k)
    partial = type(profile)(**{**vars(profile), "table": {k: v for k, v in profile.table.items() if k != conv_key}})
    with pytest.raises(ConfigError, match="lacks"):
        net.latency_matrices(partial)
    with pytest.raises(ConfigError, match="input shape"):
        CellSupernet(T201, 10, (1, 16, 16)).latency_matrices(profile)


def test_latency_matrix_leaves_the_supernet_as_it_was(profiles) -> None:  # noqa: ANN001
    net = supernet(T201).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.latency_matrices(profiles["t201"])
    assert net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not any(m._forward_pre_hooks for m in net.modules() if isinstance(m, nn.Module))
