"""Tests for DARTS's perturbation-based selection (DARTS-PT, ``--selection perturbation``):
the supernet's discretization, each decision's rule, the phase after the search, resume,
and the CLI.

Supernets are the tiny cell spaces of ``test_darts`` on 1x8x8 digits, torch on one thread.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from test_darts import T201, TDARTS  # the tiny cell spaces

from nasbench.cli import main
from nasbench.data import DatasetSplits, load_dataset
from nasbench.errors import ConfigError, NasbenchError
from nasbench.strategies._darts import DartsConfig, DartsSearch
from nasbench.strategies._projection import decide, plan_decisions
from nasbench.supernet import CellSupernet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data() -> DatasetSplits:
    return load_dataset("digits", limit=64)


def pt_config(**changes) -> DartsConfig:  # noqa: ANN003
    return DartsConfig(**{"epochs": 2, "batch_size": 32, "selection": "perturbation", **changes})


def by_weight_of(net: CellSupernet, cell: str, worth: dict[tuple[int, int], float]):  # noqa: ANN201
    """A fake validation: accuracy = Σ worth[(edge, op)] · mixing weight, so removing (edge, op) costs
    exactly its share; the loss is 1 - accuracy."""
    def evaluate() -> tuple[float, float]:
        w = net.mixing_weights(cell).detach()
        acc = sum(v * float(w[e, k]) for (e, k), v in worth.items())
        return acc, 1.0 - acc
    return evaluate


# -- configuration ----------------------------------------------------------------------------


def test_perturbation_selection_is_the_default_except_with_a_latency_loss() -> None:
    assert DartsConfig().selection == "perturbation" and DartsConfig().projection_tune_epochs == 1
    assert DartsConfig(latency_weight=0.1).selection == "alpha"
    assert DartsConfig(max_latency_ms=5.0).selection == "alpha"


@pytest.mark.parametrize(("changes", "match"), [
    ({"selection": "magnitude"}, "unknown selection 'magnitude'; valid: alpha, perturbation"),
    ({"projection_tune_epochs": -1}, "whole number >= 0"),
    ({"projection_tune_epochs": 0.5}, "whole number >= 0"),
    ({"latency_weight": 0.1}, "needs --selection alpha"),
    ({"max_latency_ms": 3.0}, "needs --selection alpha"),
])
def test_config_refuses_bad_selection_settings(changes: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        pt_config(**changes)


# -- the supernet's discretization ------------------------------------------------------------


def test_fixed_edges_are_one_hot_cut_edges_zero_and_alpha_gets_no_gradient_through_them() -> None:
    net = CellSupernet(TDARTS, 10, (1, 8, 8))
    free = net.mixing_weights("normal").detach().clone()
    net.fixed_ops["normal"][0] = 2
    net.fixed_inputs["normal"][3] = (0, 2)  # node 3 keeps inputs 0 and 2: edge 1 -> 3 is cut
    w = net.mixing_weights("normal")
    cut = net.edges["normal"].index((1, 3))
    assert w[0].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert w[cut].tolist() == [0.0] * 4
    torch.testing.assert_close(w[1], free[1])  # an undecided edge keeps softmax(alpha)
    w.sum().backward()
    grad = net.alphas["normal"].grad
    assert torch.all(grad[0] == 0) and torch.all(grad[cut] == 0)


def test_a_mask_applies_only_inside_its_block() -> None:
    net = CellSupernet(T201, 10, (1, 8, 8))
    before = net.mixing_weights("cell").detach().clone()
    mask = torch.ones_like(before)
    mask[1, 2] = 0.0
    with net.masked("cell", mask):
        inside = net.mixing_weights("cell").detach()
        x = torch.randn(2, 1, 8, 8)
        net.eval()
        masked_out = net(x)
    assert inside[1, 2] == 0.0 and torch.equal(inside[0], before[0])
    assert torch.equal(net.mixing_weights("cell").detach(), before)
    assert not torch.allclose(net(x), masked_out)  # the forward pass used the mask


def test_derive_keeps_what_was_fixed_over_alpha() -> None:
    net = CellSupernet(TDARTS, 10, (1, 8, 8))
    names = net.op_names("normal")
    with torch.no_grad():
        net.alphas["normal"].zero_()
        net.alphas["normal"][:, names.index("skip")] = 5.0  # alpha says skip everywhere, inputs 0 + 1 (tie order)
    e03 = net.edges["normal"].index((0, 3))
    net.fixed_ops["normal"][e03] = names.index("sep_conv_3x3")
    net.fixed_inputs["normal"][3] = (0, 2)
    values = net.derive().values
    assert values["normal.n3.inputs"] == "0+2"
    assert values["normal.n3.op0"] == "sep_conv_3x3" and values["normal.n3.op1"] == "skip"
    assert values["normal.n2.op0"] == "skip"  # undecided: alpha's choice


# -- one decision -----------------------------------------------------------------------------


def test_an_op_decision_keeps_the_op_whose_removal_costs_most() -> None:
    net = CellSupernet(T201, 10, (1, 8, 8))
    names = net.op_names("cell")
    conv, skip = names.index("nor_conv_3x3"), names.index("skip_connect")
    with torch.no_grad():  # alpha favours skip on edge 1, but the conv carries the accuracy
        net.alphas["cell"][1, skip] = 1.0  # weights: skip 0.58, conv 0.21; shares 0.58 vs 5 x 0.21
    evaluate = by_weight_of(net, "cell", {(1, conv): 5.0, (1, skip): 1.0})
    choice, scores = decide(net, ("op", "cell", 1), evaluate)
    assert choice == "nor_conv_3x3" and net.fixed_ops["cell"] == {1: conv}
    assert scores["nor_conv_3x3"][0] < scores["skip_connect"][0] < scores["none"][0]
    assert net.derive().values["cell.e0-2"] == "nor_conv_3x3"  # edge 1 of a 3-node cell is 0 -> 2


def test_an_op_decision_keeps_none_when_every_other_op_hurts() -> None:
    net = CellSupernet(T201, 10, (1, 8, 8))
    names = net.op_names("cell")
    evaluate = by_weight_of(net, "cell", {(0, names.index("skip_connect")): -1.0,
                                           (0, names.index("nor_conv_3x3")): -2.0, (2, 0): 1.0})
    choice, scores = decide(net, ("op", "cell", 0), evaluate)
    assert choice == "none"  # removing any live op raises accuracy; removing none changes nothing
    assert scores["none"][0] < min(scores["skip_connect"][0], scores["nor_conv_3x3"][0])


def test_the_loss_decides_and_the_accuracy_only_breaks_ties() -> None:
    net = CellSupernet(T201, 10, (1, 8, 8))
    names = net.op_names("cell")
    skip, conv = names.index("skip_connect"), names.index("nor_conv_3x3")
    without = {skip: (0.40, 1.2), conv: (0.50, 1.5), None: (0.60, 1.0)}  # conv: higher loss, skip: lower accuracy

    def evaluate() -> tuple[float, float]:
        w = net.mixing_weights("cell").detach()
        gone = next((k for k in (skip, conv) if w[0, k] == 0), None)
        return without[gone]

    assert decide(net, ("op", "cell", 0), evaluate)[0] == "nor_conv_3x3"
    net.fixed_ops["cell"].clear()
    without[conv] = (0.50, 1.2)  # a tie in loss: the lower accuracy decides
    assert decide(net, ("op", "cell", 0), evaluate)[0] == "skip_connect"


def test_two_input_cells_never_keep_the_supernets_none_and_pick_inputs_by_cutting_edges() -> None:
    net = CellSupernet(TDARTS, 10, (1, 8, 8))
    names = net.op_names("normal")
    assert "none" in names  # added by the supernet, not a genome op
    e13, e03, e23 = (net.edges["normal"].index(p) for p in ((1, 3), (0, 3), (2, 3)))
    worth = {(e, k): 1.0 for e in range(len(net.edges["normal"])) for k in range(len(names)) if names[k] != "none"}
    worth.update({(e, names.index("none")): 100.0 for e in range(len(net.edges["normal"]))})
    worth.update({(e13, k): 10.0 for k in range(len(names))})
    worth.update({(e23, k): 5.0 for k in range(len(names))})
    evaluate = by_weight_of(net, "normal", worth)
    choice, _ = decide(net, ("op", "normal", e03), evaluate)
    assert choice != "none"
    choice, scores = decide(net, ("inputs", "normal", 3), evaluate)
    assert choice == "1+2" and net.fixed_inputs["normal"][3] == (1, 2)
    assert set(scores) == {"0", "1", "2"} and scores["1"][0] < scores["2"][0] < scores["0"][0]


def test_the_plan_covers_every_edge_once_in_a_seeded_order_then_the_inputs() -> None:
    net = CellSupernet(TDARTS, 10, (1, 8, 8))
    plan = plan_decisions(TDARTS, seed=3)
    ops = [d for d in plan if d[0] == "op"]
    assert sorted(ops) == sorted(("op", c, e) for c in ("normal", "reduce") for e in range(len(net.edges[c])))
    assert plan[len(ops):] == [("inputs", "normal", 3), ("inputs", "reduce", 3)]  # node 2 has only inputs 0, 1
    assert plan == plan_decisions(TDARTS, seed=3) and plan != plan_decisions(TDARTS, seed=4)


# -- the phase after the search ---------------------------------------------------------------


def test_perturbation_selection_decides_every_edge_after_the_search(data: DatasetSplits) -> None:
    search = DartsSearch(T201, data, pt_config())
    assert len(search.decisions) == 3 and not search.finished
    reports = search.run()
    assert len(reports) == 2 + 3 and search.finished and search.epoch == 5
    phase = [r.extra.get("phase") for r in reports]
    assert phase == [None, None, "perturbation", "perturbation", "perturbation"]
    assert [r.extra["decision"] for r in reports[2:]] == \
        [f"cell.e{'-'.join(map(str, T201_edges()[e]))}" for _, _, e in search.decisions]
    final = search.result
    assert final is reports[-1]
    for (_, _, e), r in zip(search.decisions, reports[2:]):  # each decision holds in the final genome
        i, j = T201_edges()[e]
        assert final.genome.values[f"cell.e{i}-{j}"] == r.extra["choice"]
    assert set(search.net.fixed_ops["cell"]) == {0, 1, 2}
    assert search.w_opt.param_groups[0]["lr"] == pytest.approx(search.config.w_lr / 10)
    assert search.run() == []
    with pytest.raises(NasbenchError, match="search and perturbation selection"):
        search.train_epoch()


def T201_edges() -> list[tuple[int, int]]:  # noqa: N802
    return [(i, j) for j in range(1, 3) for i in range(j)]


def test_tuning_epochs_train_the_weights_between_decisions(data: DatasetSplits) -> None:
    tuned = DartsSearch(T201, data, pt_config(epochs=1, projection_tune_epochs=1))
    still = DartsSearch(T201, data, pt_config(epochs=1, projection_tune_epochs=0))
    for s in (tuned, still):
        s.train_epoch()
    weights = [p.detach().clone() for p in still.net.weight_parameters()]
    still.train_epoch()
    assert all(torch.equal(a, b) for a, b in zip(weights, still.net.weight_parameters()))  # scoring only
    weights = [p.detach().clone() for p in tuned.net.weight_parameters()]
    r = tuned.train_epoch()
    assert r.train_loss > 0 and not all(torch.equal(a, b) for a, b in zip(weights, tuned.net.weight_parameters()))
    last = tuned.run()[-1]
    assert last.train_loss == 0.0  # no tuning after the last decision


def test_an_early_stop_hands_over_to_the_selection(data: DatasetSplits) -> None:
    search = DartsSearch(T201, data, pt_config(epochs=4))
    search.train_epoch()
    search.stopped_at = 0  # as if the guard had stopped the search here
    assert search.search_done and not search.finished
    r = search.train_epoch()
    assert r.extra["phase"] == "perturbation" and r.epoch == 1
    assert r.aux_skip == pytest.approx(search._aux_skip(0))  # the weights were trained with that skip


def test_resume_mid_selection_keeps_the_decisions_made(data: DatasetSplits, tmp_path: Path) -> None:
    ck = tmp_path / "darts.pt"
    a = DartsSearch(T201, data, pt_config())
    for _ in range(3):
        a.train_epoch()
    a.save(ck)
    b = DartsSearch(T201, data, pt_config())
    assert b.load(ck) and b.epoch == 3 and b.projected == 1 and not b.finished
    assert b.net.fixed_ops == a.net.fixed_ops and b.result.genome == a.result.genome
    assert b.w_opt.param_groups[0]["lr"] == pytest.approx(b.config.w_lr / 10)
    a.run()
    assert len(b.run()) == 2 and b.finished
    assert b.net.fixed_ops == a.net.fixed_ops and b.result.genome == a.result.genome


def test_a_checkpoint_from_before_selection_existed_resumes_as_alpha_selection(data: DatasetSplits) -> None:
    old = DartsSearch(T201, data, DartsConfig(epochs=2, batch_size=32, selection="alpha"))
    old.train_epoch()
    state = old.state_dict()
    for key in ("selection", "projection_tune_epochs"):
        del state["config"][key]
    for key in ("projected", "fixed_ops", "fixed_inputs"):
        del state[key]
    with pytest.raises(ConfigError, match="before perturbation selection existed; resume it with --selection alpha"):
        DartsSearch(T201, data, pt_config()).load_state_dict(state)
    new = DartsSearch(T201, data, DartsConfig(epochs=2, batch_size=32, selection="alpha"))
    new.load_state_dict(state)
    assert new.epoch == 1 and new.projected == 0 and not new.decisions


def test_two_input_cells_get_their_inputs_from_the_selection(data: DatasetSplits) -> None:
    search = DartsSearch(TDARTS, data, pt_config(epochs=1, projection_tune_epochs=0))
    search.run()
    values = search.result.genome.values
    for cell in ("normal", "reduce"):
        assert values[f"{cell}.n2.inputs"] == "0+1"  # its only two inputs, no decision needed
        assert tuple(map(int, values[f"{cell}.n3.inputs"].split("+"))) == search.net.fixed_inputs[cell][3]
        assert 2 not in search.net.fixed_inputs[cell]
    assert sum(1 for r in search.history if r.extra.get("phase")) == len(search.decisions) == 2 * 5 + 2


# -- CLI ----------------------------------------------------------------------------------------


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch) -> Path:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_perturbation_selection_records_each_decision_and_exports_the_final_genome(workdir: Path, capsys) -> None:  # noqa: ANN001
    args = ["search", "--strategy", "darts", "--space", "nb201", "--dataset", "digits", "--limit", "64", "--epochs", "1",
            "--batch-size", "32", "--retrain-epochs", "0", "--selection", "perturbation", "--projection-tune-epochs", "0",
            "--study", "pt"]
    assert main(["--quiet", *args]) == 0
    study = optuna.load_study(study_name="pt", storage="sqlite:///nasbench.db")
    trials = [t for t in study.trials if t.user_attrs.get("strategy") == "darts"]
    assert len(trials) == 1 + 6
    decisions = [t.user_attrs.get("selection_decision") for t in trials]
    assert decisions[0] is None and all(decisions[1:])
    best = json.loads((workdir / "best.json").read_text())
    assert trials[-1].user_attrs["genome_hash"] in json.dumps(best)
    out = capsys.readouterr().out
    assert "perturbation" in out
    assert main(["--quiet", *args]) == 0  # resume: nothing left to do, nothing recorded twice
    assert len([t for t in optuna.load_study(study_name="pt", storage="sqlite:///nasbench.db").trials
                if t.user_attrs.get("strategy") == "darts"]) == 7


@pytest.mark.parametrize(("extra", "message"), [
    (["--selection", "magnitude"], "unknown selection"),
    (["--selection", "perturbation", "--latency-weight", "0.1"], "needs --selection alpha"),
    # without --selection a latency-aware loss gets alpha selection: what is missing now is the profile
    (["--latency-weight", "0.1"], "needs --latency-profile"),
])
def test_cli_refuses_bad_selection_with_one_line(extra: list[str], message: str, workdir: Path, capsys) -> None:  # noqa: ANN001
    assert main(["search", "--strategy", "darts", "--limit", "64", "--epochs", "1", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_cut_edge_loses_the_auxiliary_skip_too() -> None:
    net = CellSupernet(TDARTS, 10, (1, 8, 8))
    net.set_aux_skip(0.5)
    assert net.edge_aux_skip("normal") == 0.5
    e13 = net.edges["normal"].index((1, 3))
    net.fixed_inputs["normal"][3] = (0, 2)
    beta = net.edge_aux_skip("normal")
    assert beta[e13] == 0.0 and beta[net.edges["normal"].index((0, 3))] == 0.5
    mask = torch.ones_like(net.alphas["normal"])
    e02 = net.edges["normal"].index((0, 2))
    mask[e02] = 0.0
    with net.masked("normal", mask):
        assert net.edge_aux_skip("normal")[e02] == 0.0
    assert net.edge_aux_skip("normal")[e02] == 0.5


def test_a_resumed_selection_keeps_the_checkpoints_order_whatever_the_seed(data: DatasetSplits, tmp_path: Path) -> None:
    ck = tmp_path / "darts.pt"
    a = DartsSearch(T201, data, pt_config(), seed=0)
    for _ in range(3):
        a.train_epoch()
    a.save(ck)
    b = DartsSearch(T201, data, pt_config(), seed=5)
    assert b.decisions != a.decisions  # another seed plans another order
    assert b.load(ck) and b.decisions == a.decisions
    b.run()
    assert set(b.net.fixed_ops["cell"]) == {0, 1, 2}  # every edge decided once


def test_an_old_study_resumes_when_asked_for_what_it_ran_with(tmp_path: Path) -> None:
    from nasbench.errors import StorageError
    from nasbench.objectives import Objectives
    from nasbench.runner import StudyRecorder

    url, legacy = f"sqlite:///{tmp_path / 's.db'}", {"darts": {"selection": "alpha"}}
    StudyRecorder(url, "old", T201, Objectives.parse("accuracy"), {"darts": {"epochs": 2}})
    StudyRecorder(url, "old", T201, Objectives.parse("accuracy"), {"darts": {"epochs": 2, "selection": "alpha"}},
                  legacy=legacy)
    with pytest.raises(StorageError, match="other settings"):
        StudyRecorder(url, "old", T201, Objectives.parse("accuracy"),
                      {"darts": {"epochs": 2, "selection": "perturbation"}}, legacy=legacy)
