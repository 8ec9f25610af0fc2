"""Tests for DARTS search: bilevel steps, second order, collapse guard, latency loss, resume,
study recording, the alpha heatmap and ``nasbench search --strategy darts``.

Supernets are tiny user cell spaces on 1x8x8 digits (64 images per split, 2 steps per epoch),
torch on one thread, so one epoch takes a fraction of a second.
"""

from __future__ import annotations

import json
import logging
import types
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import nasbench.strategies._darts as darts_module
from nasbench.cli import main
from nasbench.data import DatasetSplits, load_dataset
from nasbench.errors import ConfigError, NasbenchError, StorageError
from nasbench.hardware import LatencyPredictor, profile_space, torch_threads
from nasbench.objectives import Objectives
from nasbench.runner import StudyRecorder
from nasbench.runner._darts_run import plot_alphas, run_darts
from nasbench.space import Cell, CellSpace
from nasbench.strategies._darts import DartsConfig, DartsSearch
from nasbench.train import TrainConfig

T201_OPS = {"none": "zero", "skip_connect": "skip", "nor_conv_3x3": "relu_conv_bn_3x3"}
T201 = CellSpace("t201", [Cell("cell", T201_OPS, nodes=3)], skeleton="nb201", C=4, N=1)
DARTS_OPS = ["skip", "max_pool_3x3", "sep_conv_3x3"]
TDARTS = CellSpace("tdarts", [Cell("normal", DARTS_OPS, nodes=2, inputs=2), Cell("reduce", DARTS_OPS, nodes=2, inputs=2)],
                   skeleton="darts", C=4, layers=3)
#: Registry op -> table cost (ms): the 3x3 conv is by far the most expensive op.
COST = {"skip": 1.0, "relu_conv_bn_3x3": 20.0}


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def data() -> DatasetSplits:
    return load_dataset("digits", limit=64)


def config(**changes) -> DartsConfig:  # noqa: ANN003
    """A 2-epoch config with batch 32 (2 steps per epoch on 64 images), alpha selection (the search alone;
    perturbation selection is tested in test_darts_selection)."""
    return DartsConfig(**{"epochs": 2, "batch_size": 32, "selection": "alpha", **changes})


def params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("changes", [
    {"collapse_guard": "bogus"}, {"epochs": 0}, {"batch_size": 0}, {"w_lr": -0.1}, {"alpha_lr": 0.0},
    {"latency_weight": -1.0}, {"max_latency_ms": 0.0},
], ids=lambda c: next(iter(c)))
def test_config_refuses_bad_values(changes: dict) -> None:
    with pytest.raises(ConfigError):
        DartsConfig(**changes)


def test_unknown_guard_is_refused_with_one_line_listing_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        DartsConfig(collapse_guard="pc-darts")
    message = str(info.value)
    assert "\n" not in message and "'pc-darts'" in message
    assert message.endswith("valid: darts-minus, early-stop, darts-minus+early-stop, none")


@pytest.mark.parametrize("edges", [0, -1, 1.5, True])
def test_early_stop_edges_must_be_a_whole_number_of_at_least_one(edges) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="early-stop edges"):
        DartsConfig(early_stop_edges=edges)


def test_latency_terms_need_a_predictor(data: DatasetSplits) -> None:
    for changes in ({"latency_weight": 0.1}, {"max_latency_ms": 5.0}):
        with pytest.raises(ConfigError, match="latency-profile"):
            DartsSearch(T201, data, config(**changes))


def test_search_needs_a_cell_space(data: DatasetSplits, tiny_space) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="cell space"):
        DartsSearch(tiny_space, data, config())


def test_search_stops_after_its_epochs(data: DatasetSplits) -> None:
    search = DartsSearch(T201, data, config(epochs=1))
    assert len(search.run()) == 1 and search.run() == []
    with pytest.raises(NasbenchError, match="already ran"):
        search.train_epoch()


# -- bilevel optimization ---------------------------------------------------------------------


def test_alpha_step_changes_alphas_only(data: DatasetSplits) -> None:
    search = DartsSearch(T201, data, config(alpha_lr=0.01))
    weights, alphas = params(search.net.net), [a.detach().clone() for a in search.net.arch_parameters()]
    search.net.train()
    search._first_order_alpha_step(data.val_x[:32], data.val_y[:32])
    assert same(params(search.net.net), weights)
    assert not same([a.detach() for a in search.net.arch_parameters()], alphas)


@pytest.mark.filterwarnings("ignore:Seems like `optimizer.step\\(\\)` has been overridden")
def test_each_step_of_an_epoch_moves_only_its_own_parameters(data: DatasetSplits, monkeypatch) -> None:  # noqa: ANN001
    search = DartsSearch(T201, data, config())
    net, log = search.net, []
    alpha_step, weight_step = search._first_order_alpha_step, search.w_opt.step

    def watched(step, kind):  # noqa: ANN001, ANN202
        def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            w0, a0 = params(net.net), params(net.alphas)
            out = step(*args, **kwargs)
            log.append((kind, same(params(net.net), w0), same(params(net.alphas), a0)))
            return out
        return run

    monkeypatch.setattr(search, "_first_order_alpha_step", watched(alpha_step, "alpha"))
    monkeypatch.setattr(search.w_opt, "step", watched(weight_step, "weight"))
    search.train_epoch()
    # 2 steps: alpha then weight; weights untouched by alpha steps and alphas by weight steps
    assert log == [("alpha", True, False), ("weight", False, True)] * 2


@pytest.mark.parametrize("unrolled", [False, True], ids=["first-order", "second-order"])
def test_alphas_learn_on_val_and_weights_on_train(unrolled: bool, monkeypatch) -> None:  # noqa: ANN001
    """Splits marked by pixel range and labels: train images in [0, .4) labelled 0-4, val in [.6, 1) labelled 5-9."""
    g = torch.Generator().manual_seed(0)
    marked = DatasetSplits(
        "marked", 0.4 * torch.rand(64, 1, 8, 8, generator=g), torch.randint(0, 5, (64,), generator=g),
        0.6 + 0.4 * torch.rand(64, 1, 8, 8, generator=g), torch.randint(5, 10, (64,), generator=g),
        torch.rand(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g), 10, (0.0,), (1.0,))
    search = DartsSearch(T201, marked, config(unrolled=unrolled))
    phase, seen = {"now": "weight"}, []
    step_name = "_second_order_alpha_step" if unrolled else "_first_order_alpha_step"
    alpha_loss = search._alpha_loss

    def in_phase(name: str, method):  # noqa: ANN001, ANN202
        def run(*args):  # noqa: ANN002, ANN202
            phase["now"] = name
            try:
                return method(*args)
            finally:
                phase["now"] = "weight"
        return run

    def split(x: torch.Tensor) -> str:
        return "train" if x.max() < 0.4 else "val" if x.min() >= 0.6 else "mixed"

    def recording_alpha_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(("alpha loss", "val" if y.min() >= 5 else "train" if y.max() < 5 else "mixed"))
        return alpha_loss(logits, y)

    def recording_ce(logits: torch.Tensor, y: torch.Tensor, *a, **k) -> torch.Tensor:  # noqa: ANN002, ANN003
        if phase["now"] == "weight":
            seen.append(("weight loss", "val" if y.min() >= 5 else "train" if y.max() < 5 else "mixed"))
        return F.cross_entropy(logits, y, *a, **k)

    monkeypatch.setattr(search, step_name, in_phase("alpha", getattr(search, step_name)))
    monkeypatch.setattr(search, "_evaluate_supernet", in_phase("eval", search._evaluate_supernet))
    monkeypatch.setattr(search, "_alpha_loss", recording_alpha_loss)
    monkeypatch.setattr(darts_module, "F", types.SimpleNamespace(cross_entropy=recording_ce))
    inputs = []
    search.net.register_forward_pre_hook(lambda m, a: inputs.append((phase["now"], split(a[0]))))
    search.train_epoch()
    assert seen == [("alpha loss", "val"), ("weight loss", "train")] * 2
    alpha_inputs = [s for p, s in inputs if p == "alpha"]
    assert [s for p, s in inputs if p == "weight"] == ["train", "train"]
    assert {s for p, s in inputs if p == "eval"} == {"val"}  # the supernet's accuracy is measured on val
    if unrolled:  # virtual step and Hessian-vector product on train, the unrolled loss on val
        assert alpha_inputs == ["train", "val", "train", "train"] * 2
    else:
        assert alpha_inputs == ["val", "val"]


# -- second order -----------------------------------------------------------------------------


class SmoothNet(nn.Module):
    """A twice-differentiable two-path 'supernet' (no ReLU kinks), so that DARTS's finite
    difference Hessian-vector product converges to the exact second-order gradient."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.alphas = nn.ParameterDict({"cell": nn.Parameter(0.5 * torch.randn(3))})
            self.a, self.b, self.c = nn.Linear(64, 10), nn.Linear(64, 12), nn.Linear(12, 10)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        w = torch.softmax(self.alphas["cell"], -1)
        return w[0] * self.a(x) + w[1] * self.c(torch.tanh(self.b(x))) + w[2] * torch.tanh(self.a(x))

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas.values())

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("alphas")]


def unrolled_gradient(net: nn.Module, eta: float, wd: float, batches, virtual_fixed: bool) -> torch.Tensor:  # noqa: ANN001
    """d/dalpha L_val(w - eta (dL_train/dw + wd w), alpha), by double backprop (or with w' held fixed)."""
    (xb, yb), (xv, yv) = batches
    weights = net.weight_parameters()
    names = {id(p): n for n, p in net.named_parameters()}
    grads = torch.autograd.grad(F.cross_entropy(net(xb), yb), weights, create_graph=not virtual_fixed)
    virtual = {names[id(p)]: p - eta * (g + wd * p) for p, g in zip(weights, grads)}
    if virtual_fixed:
        virtual = {k: v.detach() for k, v in virtual.items()}
    loss = F.cross_entropy(functional_call(net, {**dict(net.named_parameters()), **virtual}, (xv,)), yv)
    return torch.autograd.grad(loss, net.arch_parameters())[0]


def test_second_order_step_follows_the_unrolled_gradient(data: DatasetSplits) -> None:
    search = DartsSearch(T201, data, config(unrolled=True, w_lr=0.5, w_weight_decay=0.01))
    net = SmoothNet()
    search.net = net
    search.a_opt = torch.optim.Adam(net.arch_parameters(), lr=1e-3)
    batches = ((data.train_x[:32].double(), data.train_y[:32]), (data.val_x[:32].double(), data.val_y[:32]))
    exact = unrolled_gradient(net, 0.5, 0.01, batches, virtual_fixed=False)
    first_order_part = unrolled_gradient(net, 0.5, 0.01, batches, virtual_fixed=True)
    weights = [p.detach().clone() for p in net.weight_parameters()]
    search._second_order_alpha_step(*batches[0], *batches[1])
    got = net.alphas["cell"].grad
    # the second-order term matters here, and the step gets it (up to finite-difference error)
    assert (exact - first_order_part).norm() > 0.1 * exact.norm()
    assert (got - exact).norm() < 1e-3 * exact.norm()
    for p, q in zip(net.weight_parameters(), weights):
        torch.testing.assert_close(p, q)  # w restored after the +/- r perturbations


def test_second_order_step_changes_alphas_and_leaves_weights(data: DatasetSplits) -> None:
    search = DartsSearch(TDARTS, data, config(unrolled=True, alpha_lr=0.01))
    weights, alphas = params(search.net.net), params(search.net.alphas)
    search.net.train()
    search._second_order_alpha_step(data.train_x[:32], data.train_y[:32], data.val_x[:32], data.val_y[:32])
    for p, q in zip(params(search.net.net), weights):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    assert not same(params(search.net.alphas), alphas)


def test_unrolled_epoch_gives_finite_alphas_unlike_first_order(data: DatasetSplits) -> None:
    first = DartsSearch(T201, data, config(alpha_lr=0.01), seed=3)
    second = DartsSearch(T201, data, config(alpha_lr=0.01, unrolled=True), seed=3)
    assert same(params(first.net), params(second.net))  # same seed, same start
    first.train_epoch()
    report = second.train_epoch()
    a1, a2 = first.net.alphas["cell"].detach(), second.net.alphas["cell"].detach()
    assert torch.isfinite(a2).all() and torch.isfinite(torch.tensor(report.val_loss))
    assert not torch.allclose(a1, a2)
    second.space.validate(report.genome)


# -- collapse guard ---------------------------------------------------------------------------


def test_darts_minus_aux_skip_decays_linearly_to_zero(data: DatasetSplits) -> None:
    search = DartsSearch(T201, data, config(epochs=3, aux_skip=0.9))
    used = [r.aux_skip for r in search.run()]
    assert used == pytest.approx([0.9, 0.6, 0.3])  # 0.9 * (1 - epoch / epochs): 0 at the end
    assert search._aux_skip(3) == 0.0


def test_without_guard_there_is_no_aux_skip(data: DatasetSplits) -> None:
    search = DartsSearch(T201, data, config(collapse_guard="none", aux_skip=0.9))
    assert [r.aux_skip for r in search.run()] == [0.0, 0.0]
    assert search.net.aux_skip == 0.0


def test_aux_skip_reaches_the_mixed_ops_during_training(data: DatasetSplits) -> None:
    search = DartsSearch(T201, data, config(aux_skip=0.7))
    betas = set()
    for cell in search.net.net.cells:
        if hasattr(cell, "mixed"):
            for m in cell.mixed:
                m.register_forward_pre_hook(lambda mod, args: betas.add(args[2]))
    search.train_epoch()
    assert betas == {0.7}


# -- early stop (DARTS+): parameter-free ops dominating the derived cell -----------------------

#: Argmax op per T201 edge (e0-1, e0-2, e1-2) for each epoch; none and skip_connect are parameter-free.
CONV, SKIP, NONE = "nor_conv_3x3", "skip_connect", "none"
SCRIPT = [
    (SKIP, NONE, SKIP),  # epoch 0: dominated (3 >= 2) before any clean cell: not yet collapse
    (CONV, CONV, SKIP),  # epoch 1: 1 parameter-free edge: the guard arms
    (CONV, CONV, CONV),  # epoch 2: 0
    (SKIP, CONV, NONE),  # epoch 3: 2 >= 2: collapse, stop; the answer is epoch 2's cell
    (CONV, CONV, CONV),  # never reached with the guard
]


def hand_alphas(search: DartsSearch, ops: tuple[str, str, str]) -> None:
    """Alphas of T201 with ``ops`` the clear argmax of each edge (alpha_lr ~0 keeps them there)."""
    names = search.net.op_names("cell")
    with torch.no_grad():
        a = search.net.alphas["cell"]
        a.zero_()
        for e, op in enumerate(ops):
            a[e, names.index(op)] = 3.0


def scripted_run(search: DartsSearch, script=SCRIPT, checkpoint=None) -> list:  # noqa: ANN001
    """``search.run`` with the alphas of ``script[epoch]`` set before each epoch."""
    hand_alphas(search, script[search.epoch])
    return search.run(lambda r: hand_alphas(search, script[min(r.epoch + 1, len(script) - 1)]), checkpoint)


def guarded(guard: str = "early-stop", **changes) -> DartsConfig:  # noqa: ANN003
    return config(**{"epochs": len(SCRIPT), "collapse_guard": guard, "alpha_lr": 1e-12, "early_stop_edges": 2,
                     **changes})


@pytest.mark.parametrize("guard", ["early-stop", "darts-minus+early-stop"])
def test_early_stop_triggers_on_domination_and_returns_the_pre_domination_genome(guard, data, caplog) -> None:  # noqa: ANN001
    caplog.set_level(logging.WARNING, logger="nasbench.strategies._darts")
    search = DartsSearch(T201, data, guarded(guard))
    reports = scripted_run(search)
    assert [tuple(r.genome.values[k] for k in ("cell.e0-1", "cell.e0-2", "cell.e1-2")) for r in reports] == SCRIPT[:4]
    assert [r.parameter_free_edges for r in reports] == [{"cell": 3}, {"cell": 1}, {"cell": 0}, {"cell": 2}]
    assert [r.dominated for r in reports] == [True, False, False, True]
    assert search.stopped_at == 3 and search.finished and search.epoch == 4 < search.config.epochs
    assert search.result is search.history[2] and search.result.genome.values["cell.e0-1"] == CONV
    assert "early stop at epoch 3" in caplog.text and "result: epoch 2" in caplog.text
    assert (reports[0].aux_skip > 0) == (guard == "darts-minus+early-stop")
    assert search.run() == []
    with pytest.raises(NasbenchError, match="stopped early at epoch 3.*epoch 2's genome"):
        search.train_epoch()


def test_without_the_early_stop_guard_the_search_runs_every_epoch(data: DatasetSplits) -> None:
    search = DartsSearch(T201, data, guarded("darts-minus"))
    reports = scripted_run(search)
    assert len(reports) == len(SCRIPT) and search.stopped_at is None
    assert [r.dominated for r in reports] == [True, False, False, True, False]  # still reported
    assert search.result is search.history[-1]


def test_a_cell_dominated_from_the_first_epoch_never_arms_the_stop(data: DatasetSplits, caplog) -> None:  # noqa: ANN001
    caplog.set_level(logging.WARNING, logger="nasbench.strategies._darts")
    script = [(SKIP, NONE, CONV), (SKIP, SKIP, SKIP), (NONE, CONV, SKIP)]
    search = DartsSearch(T201, data, guarded(epochs=3))
    assert len(scripted_run(search, script)) == 3 and search.stopped_at is None
    assert search.result is search.history[-1]
    assert "never armed" in caplog.text


@pytest.mark.parametrize(("warmup", "stopped", "answer"), [(0.0, 1, 0), (0.25, 3, 2)])
def test_the_early_stop_ignores_its_warm_up_epochs(warmup, stopped, answer, data) -> None:  # noqa: ANN001
    # epoch 0 clean, 1 dominated, 2 clean, 3 dominated; 8 epochs x 0.25 = a 2-epoch warm-up
    script = [(CONV, CONV, SKIP), (SKIP, NONE, SKIP), (CONV, CONV, CONV), (SKIP, CONV, NONE)] + [(CONV,) * 3] * 4
    search = DartsSearch(T201, data, guarded(epochs=8, early_stop_warmup=warmup))
    scripted_run(search, script)
    assert search.warmup_epochs == int(8 * warmup)
    assert search.stopped_at == stopped and search.result.epoch == answer


@pytest.mark.parametrize("warmup", [-0.1, 1.0, 2])
def test_early_stop_warmup_must_be_a_share_below_one(warmup) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="warm-up is a share"):
        DartsConfig(early_stop_warmup=warmup)


def test_resuming_a_stopped_search_does_not_train_further(data: DatasetSplits, tmp_path: Path) -> None:
    ck = tmp_path / "darts.pt"
    first = DartsSearch(T201, data, guarded())
    scripted_run(first, checkpoint=ck)
    again = DartsSearch(T201, data, guarded())
    assert again.load(ck)
    assert again.stopped_at == 3 and again.epoch == 4 and again.finished
    assert again.result.epoch == 2 and again.result.genome == first.result.genome
    before = params(again.net)
    assert again.run(checkpoint=ck) == []
    assert same(params(again.net), before)
    with pytest.raises(NasbenchError, match="stopped early"):
        again.train_epoch()
    assert [h.dominated for h in again.history] == [True, False, False, True]


def test_a_checkpoint_from_before_the_early_stop_settings_still_loads(data: DatasetSplits) -> None:
    old = DartsSearch(T201, data, config())
    old.train_epoch()
    state = old.state_dict()
    del state["stopped_at"], state["config"]["early_stop_edges"]
    for h in state["history"]:
        del h["parameter_free_edges"], h["dominated"]
    new = DartsSearch(T201, data, config())
    new.load_state_dict(state)
    assert new.epoch == 1 and new.stopped_at is None and not new.finished
    with pytest.raises(ConfigError, match="other hyperparameters"):  # a non-default value is not assumed
        DartsSearch(T201, data, config(early_stop_edges=5)).load_state_dict(state)
    del state["config"]["early_stop_warmup"]  # older still: it ran without a warm-up, and resumes so
    with pytest.raises(ConfigError, match="other hyperparameters"):
        DartsSearch(T201, data, config()).load_state_dict(state)
    DartsSearch(T201, data, config(early_stop_warmup=0.0)).load_state_dict(state)


def test_early_stop_watches_normal_cells_only(data: DatasetSplits) -> None:
    """TDARTS: skip and max_pool are parameter-free; 4 derived edges per cell, limit 3."""
    def dominated(normal: str, reduce: str) -> tuple[bool, dict[str, int]]:
        search = DartsSearch(TDARTS, data, config(epochs=1, alpha_lr=1e-12, collapse_guard="early-stop"))
        with torch.no_grad():
            for kind, op in (("normal", normal), ("reduce", reduce)):
                a = search.net.alphas[kind]
                a.zero_()
                a[:, search.net.op_names(kind).index(op)] = 3.0
        r = search.train_epoch()
        return r.dominated, r.parameter_free_edges

    assert dominated("sep_conv_3x3", "max_pool_3x3") == (False, {"normal": 0, "reduce": 4})
    assert dominated("skip", "sep_conv_3x3") == (True, {"normal": 4, "reduce": 0})


# -- latency-aware loss -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictor() -> LatencyPredictor:
    """Predictor of T201 from a profile made with networks=0 whose op costs are set by hand."""
    profile = profile_space(T201, input_shape=(1, 8, 8), num_classes=10, networks=0, warmup=0, repeats=1)
    assert profile.networks == []
    for key in profile.table:
        name = json.loads(key[3:])[0] if key.startswith("op:") else None
        profile.table[key] = COST.get(name, 0.5)
    return LatencyPredictor(profile, T201)


def test_expected_latency_is_the_probability_weighted_table_and_differentiable(data, predictor) -> None:  # noqa: ANN001
    search = DartsSearch(T201, data, config(), predictor=predictor)
    probs = torch.softmax(search.net.alphas["cell"].detach(), -1)
    cost = torch.tensor([0.0, COST["skip"], COST["relu_conv_bn_3x3"]]) * 3  # 3 cells share the alpha
    expected = search.expected_latency()
    assert float(expected.detach()) == pytest.approx(float((probs * cost).sum()), rel=1e-5)
    expected.backward()
    grad = search.net.alphas["cell"].grad
    # more conv means more latency; more 'none' less
    assert (grad[:, 2] > 0).all() and (grad[:, 0] < 0).all()


def test_latency_weight_drives_the_derived_genome_to_cheaper_ops(data, predictor) -> None:  # noqa: ANN001
    reports = {lw: DartsSearch(T201, data, config(epochs=1, alpha_lr=0.05, latency_weight=lw), seed=0,
                               predictor=predictor).train_epoch() for lw in (0.0, 1.0)}
    free, costly = reports[0.0], reports[1.0]
    assert "nor_conv_3x3" not in costly.genome.values.values()
    assert predictor.predict(costly.genome) < predictor.predict(free.genome)
    assert costly.expected_latency_ms < free.expected_latency_ms
    assert costly.predicted_latency_ms == pytest.approx(predictor.predict(costly.genome))


def test_max_latency_doubles_lambda_over_target_and_halves_it_well_under(data, predictor) -> None:  # noqa: ANN001
    over = DartsSearch(T201, data, config(max_latency_ms=1e-3), predictor=predictor)  # nothing is that fast
    assert over.latency_weight == 1e-3  # the start when only a target is given
    over.run()
    assert [r.latency_weight for r in over.history] == [1e-3, 2e-3] and over.latency_weight == 4e-3
    under = DartsSearch(T201, data, config(epochs=1, max_latency_ms=1e6, latency_weight=0.5), predictor=predictor)
    under.run()
    assert under.latency_weight == 0.25
    near = DartsSearch(T201, data, config(max_latency_ms=10.0, latency_weight=0.5), predictor=predictor)
    near._adapt_latency_weight(9.5)  # within 10% under the target: unchanged
    assert near.latency_weight == 0.5


# -- checkpoints ------------------------------------------------------------------------------


def test_resume_continues_exactly_where_the_checkpoint_left(data: DatasetSplits, tmp_path: Path) -> None:
    path = tmp_path / "ck" / "darts.pt"
    a = DartsSearch(TDARTS, data, config())
    a.train_epoch()
    a.save(path)
    saved = {k: v.clone() for k, v in a.net.state_dict().items()}
    b = DartsSearch(TDARTS, data, config())
    assert b.load(path) and b.epoch == 1
    for k, v in b.net.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert [h.genome for h in b.history] == [h.genome for h in a.history]
    assert b.history[0].probabilities == a.history[0].probabilities
    assert b.sched.last_epoch == 1 and b.w_opt.param_groups[0]["lr"] == a.w_opt.param_groups[0]["lr"]
    a.train_epoch()  # the uninterrupted run
    assert len(b.run()) == 1 and b.epoch == 2
    for (k, v), w in zip(b.net.state_dict().items(), a.net.state_dict().values()):
        torch.testing.assert_close(v, w, msg=k)
    assert b.history[1].genome == a.history[1].genome


def test_load_without_a_checkpoint_starts_fresh(data: DatasetSplits, tmp_path: Path) -> None:
    search = DartsSearch(T201, data, config())
    assert search.load(tmp_path / "missing.pt") is False and search.epoch == 0


@pytest.mark.parametrize(("space", "changes"), [(T201, {"alpha_lr": 1e-3}), (T201, {"epochs": 3}),
                                                 (CellSpace("t201", [Cell("cell", T201_OPS, nodes=3)],
                                                            skeleton="nb201", C=8, N=1), {})],
                         ids=["alpha-lr", "epochs", "space"])
def test_checkpoint_of_another_config_or_space_is_refused(space, changes, data, tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "darts.pt"
    DartsSearch(T201, data, config()).save(path)
    with pytest.raises(ConfigError, match="another space" if not changes else "other hyperparameters"):
        DartsSearch(space, data, config(**changes)).load(path)


def test_corrupt_checkpoint_is_refused(data: DatasetSplits, tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    DartsSearch(T201, data, config()).save(good)
    for name, content in (("garbage.pt", b"not a checkpoint"), ("truncated.pt", good.read_bytes()[:200])):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ConfigError, match="cannot read DARTS checkpoint"):
            DartsSearch(T201, data, config()).load(tmp_path / name)
    torch.save({"something": "else"}, tmp_path / "foreign.pt")
    with pytest.raises(ConfigError):
        DartsSearch(T201, data, config()).load(tmp_path / "foreign.pt")


# -- study recording and the alpha heatmap ----------------------------------------------------


def recorder(tmp_path: Path) -> StudyRecorder:
    return StudyRecorder(f"sqlite:///{tmp_path / 'study.db'}", "darts", T201, Objectives.parse("accuracy"),
                         {"strategy": "darts"})


def darts_trials(rec: StudyRecorder, strategy: str = "darts") -> list[optuna.trial.FrozenTrial]:
    return [t for t in rec.study.get_trials() if t.user_attrs.get("strategy") == strategy]


def test_run_darts_records_every_epoch_then_the_retrained_winner(data: DatasetSplits, tmp_path: Path) -> None:
    rec, ck = recorder(tmp_path), tmp_path / "darts.pt"
    search = DartsSearch(T201, data, config())
    outcome = run_darts(search, rec, Objectives.parse("accuracy"), checkpoint=ck,
                        retrain=TrainConfig(epochs=1, batch_size=32), device="cpu")
    trials = darts_trials(rec)
    assert [t.user_attrs["epoch"] for t in trials] == [0, 1]
    for t, report in zip(trials, search.history):
        assert t.values == [pytest.approx(report.val_accuracy)]
        assert t.user_attrs["genome_hash"] == report.genome.hash
        alpha = t.user_attrs["alpha"]
        assert sorted(alpha) == ["cell.e0-1", "cell.e0-2", "cell.e1-2"]
        for label, row in zip(search.net.edge_labels("cell"), report.probabilities["cell"]):
            assert alpha[label] == dict(zip(["none", "skip_connect", "nor_conv_3x3"], row))
            assert sum(alpha[label].values()) == pytest.approx(1.0, abs=1e-4)
    (retrained,) = darts_trials(rec, "darts-retrain")
    assert retrained.user_attrs["genome_hash"] == outcome.genome.hash == search.history[-1].genome.hash
    assert 0.0 <= retrained.user_attrs["test_accuracy"] <= 1.0
    assert outcome.metrics["test_accuracy"] == retrained.user_attrs["test_accuracy"]
    assert outcome.metrics["supernet_val_accuracy"] == search.history[-1].val_accuracy
    assert sorted(outcome.trials) == sorted(t.number for t in rec.study.get_trials())

    again = run_darts(DartsSearch(T201, data, config()), rec, Objectives.parse("accuracy"), checkpoint=ck,
                      retrain=TrainConfig(epochs=1, batch_size=32), device="cpu")
    assert again.resumed_epoch == 2 and again.trials == []
    assert len(rec.study.get_trials()) == 3
    assert again.metrics["test_accuracy"] == outcome.metrics["test_accuracy"]

    png = plot_alphas(search, tmp_path / "alphas.png")
    assert png.is_file() and png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_epoch_checkpointed_but_not_recorded_is_recorded_on_resume(data, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    rec, ck = recorder(tmp_path), tmp_path / "darts.pt"
    record = rec.record
    calls = []

    def flaky(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 2:  # the database is unreachable (or the driver dies) while recording epoch 1
            raise StorageError("database is locked")
        return record(*args, **kwargs)

    monkeypatch.setattr(rec, "record", flaky)
    with pytest.raises(StorageError):
        run_darts(DartsSearch(T201, data, config()), rec, Objectives.parse("accuracy"), checkpoint=ck)
    run_darts(DartsSearch(T201, data, config()), rec, Objectives.parse("accuracy"), checkpoint=ck)
    assert sorted(t.user_attrs["epoch"] for t in darts_trials(rec)) == [0, 1]


def test_plot_alphas_draws_one_panel_per_cell_kind(data: DatasetSplits, tmp_path: Path) -> None:
    import matplotlib.image

    search = DartsSearch(TDARTS, data, config())
    search.run()
    png = plot_alphas(search, tmp_path / "tdarts.png")
    image = matplotlib.image.imread(png)
    assert image.shape[1] > image.shape[0] > 100  # two side-by-side panels


# -- command line -----------------------------------------------------------------------------

SPACE_SOURCE = """
from nasbench.space import Cell, CellSpace

SPACE = CellSpace("tcli", [Cell("cell", {"none": "zero", "skip_connect": "skip", "nor_conv_3x3": "relu_conv_bn_3x3"},
                                 nodes=3)], skeleton="nb201", C=4, N=1)
"""
QUICK = ["--dataset", "digits", "--limit", "120", "--epochs", "2", "--retrain-epochs", "1", "--batch-size", "32",
         "--selection", "alpha"]


def cli(args: list[str], capsys) -> tuple[int, str]:  # noqa: ANN001
    """``nasbench ARGS`` in-process: (exit code, stderr)."""
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    return code, capsys.readouterr().err


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.py").write_text(SPACE_SOURCE)
    return tmp_path


def test_cli_darts_search_end_to_end_then_resume(workdir: Path, capsys, caplog) -> None:  # noqa: ANN001
    caplog.set_level(logging.INFO, logger="nasbench.strategies._darts")
    args = ["--quiet", "search", "--strategy", "darts", "--space", "space.py", *QUICK]
    code, err = cli(args, capsys)
    assert code == 0, err
    assert (workdir / "best_alphas.png").stat().st_size > 0
    best = json.loads((workdir / "best.json").read_text())
    study = optuna.load_study(study_name="tcli-digits-darts", storage=f"sqlite:///{workdir / 'nasbench.db'}")
    strategies = [t.user_attrs["strategy"] for t in study.trials]
    assert strategies == ["darts", "darts", "darts-retrain"]
    # the retrained genome is the search's answer: the last epoch, or the last before an early stop
    stopped = torch.load(workdir / ".nasbench" / "tcli-digits-darts.darts.pt", weights_only=True)["stopped_at"]
    answer = 1 if stopped is None else stopped - 1
    assert study.trials[-1].user_attrs["genome_hash"] == study.trials[answer].user_attrs["genome_hash"]
    assert study.trials[-1].user_attrs["genome_hash"] in json.dumps(best)
    assert (workdir / ".nasbench" / "tcli-digits-darts.darts.pt").is_file()

    caplog.clear()
    code, err = cli(args, capsys)  # the same command again: resumes from the checkpoint
    assert code == 0, err
    assert "resumed DARTS" in caplog.text and "DARTS epoch" not in caplog.text
    assert len(study.trials) == 3


@pytest.mark.parametrize("extra", [
    ["--space", "resnet"],
    ["--space", "space.py", "--collapse-guard", "bogus"],
    ["--space", "space.py", "--objective", "accuracy,latency"],
    ["--space", "space.py", "--benchmark", "nb201:missing.pth"],
], ids=["macro-space", "bad-guard", "latency-without-profile", "benchmark"])
def test_cli_darts_refuses_bad_requests_with_exit_2(extra: list[str], workdir: Path, capsys) -> None:  # noqa: ANN001
    code, err = cli(["--quiet", "search", "--strategy", "darts", *extra, *QUICK], capsys)
    assert code == 2
    assert "error:" in err and "Traceback" not in err
    assert not (workdir / "nasbench.db").exists()  # refused before any study is made


def test_cli_darts_corrupt_checkpoint_is_refused_before_the_study(workdir: Path, capsys) -> None:  # noqa: ANN001
    (workdir / "bad.pt").write_bytes(b"not a checkpoint")
    code, err = cli(["--quiet", "search", "--strategy", "darts", "--space", "space.py", "--checkpoint", "bad.pt",
                     *QUICK], capsys)
    assert code == 2 and "cannot read DARTS checkpoint" in err and len(err.strip().splitlines()) == 1, err
    assert not (workdir / "nasbench.db").exists()  # no study was made
