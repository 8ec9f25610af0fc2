"""Tests for device latency profiles (lookup table + measured networks), the latency predictor,
and their use by ``nasbench search`` and ``nasbench latency``.

Timings on a shared 2-core machine are noisy, so no test asserts a time: measured values are
only checked to be positive, and the one comparison of predictors (learned vs FLOPs) is made
on a space designed so that the gap is many times the noise (see that test).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import pytest
from conftest import run_main
from scipy.stats import spearmanr

from nasbench._spaces import load_space
from nasbench.build import DenseCell
from nasbench.errors import ConfigError
from nasbench.export import save_architecture
from nasbench.hardware import (
    PROFILE_FORMAT,
    LatencyPredictor,
    LatencyProfile,
    covering_genomes,
    measure_networks,
    profile_space,
    trace_units,
)
from nasbench.space import Block, Choice, MacroSpace, Stage

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = (3, 8, 8)

#: Plain 3x3 convs, narrow or wide, shallow or deep. At 8x8 a layer's fixed cost (module
#: calls, BN, activation) is comparable to its arithmetic, so a deep narrow network is slow
#: with few MACs: latency is far from linear in FLOPs, while the sum of per-unit times plus
#: a per-unit term tracks it. That gap is what the predictor comparison relies on.
LAT_SPACE = MacroSpace("lat_cmp", stem_width=8, stages=[
    Stage("a", Block("conv_3x3"), width=Choice([8, 48]), depth=Choice([1, 2, 3, 4, 5, 6]), stride=1),
    Stage("b", Block("conv_3x3"), width=Choice([8, 48]), depth=Choice([1, 2, 3, 4]), stride=2),
])
N_FIT, N_HELD = 20, 15

#: A user's space file for the CLI.
USER_SPACE = """
from nasbench.space import Block, Choice, MacroSpace, Stage

SPACE = MacroSpace(
    "lat_user",
    stem_width=4,
    stages=[Stage("s1", Block.choice(["conv_3x3", "dwsep_conv"]), width=Choice([4, 8]), depth=Choice([1, 2]),
                  stride=2)],
)
"""



@pytest.fixture(scope="module")
def lat_profile(one_torch_thread) -> LatencyProfile:  # noqa: ANN001
    """LAT_SPACE profiled at 3x8x8 with N_FIT + N_HELD networks measured end to end (~1-3 s)."""
    return profile_space(LAT_SPACE, input_shape=SHAPE, networks=N_FIT + N_HELD, seed=0, warmup=2, repeats=7)


@pytest.fixture(scope="module")
def resnet_profile(tmp_path_factory, one_torch_thread) -> Path:  # noqa: ANN001
    """The resnet space profiled for the digits dataset (1x8x8, 10 classes), tiny settings."""
    path = tmp_path_factory.mktemp("resnet_profile") / "resnet.json"
    profile_space(load_space("resnet"), input_shape=(1, 8, 8), num_classes=10, networks=5, warmup=1,
                  repeats=3).save(path)
    return path



def parse_key(key: str) -> tuple:
    """A table key as a plain tuple, read without ``trace_units``: ops as (name, C_in, C_out,
    stride, input shape), other modules as (class name, input shape)."""
    kind, _, body = key.partition(":")
    data = json.loads(body)
    if kind == "op":
        name, c_in, c_out, stride, _params, shape = data
        return (name, c_in, c_out, stride, tuple(shape))
    cls, _repr, shape = data
    return (cls, tuple(shape))


# -- profile_space -----------------------------------------------------------------------------


def test_profile_table_has_one_entry_per_distinct_unit(lat_profile: LatencyProfile) -> None:
    units: set[str] = set()
    for g in covering_genomes(LAT_SPACE):
        units |= {u.key for u in trace_units(LAT_SPACE.build(g, num_classes=10, input_shape=SHAPE), SHAPE)}
    assert set(lat_profile.table) == units
    assert all(math.isfinite(ms) and ms > 0 for ms in lat_profile.table.values())
    # Widths 8/48, stem 8: stem; a: 8->8, 8->48, 48->48 on 8x8; b: 8|48 -> 8|48 at stride 2 on 8x8,
    # then 8->8, 48->48 on 4x4; pool and classifier for 8 or 48 channels.
    assert len(units) == 1 + 3 + 4 + 2 + 2 + 2


def test_profile_networks_and_metadata(lat_profile: LatencyProfile) -> None:
    nets = lat_profile.networks
    assert len(nets) == N_FIT + N_HELD
    genomes = [LAT_SPACE.load_genome(n["genome"]) for n in nets]
    assert len({g.hash for g in genomes}) == len(genomes)  # distinct networks
    assert all(math.isfinite(n["ms"]) and n["ms"] > 0 for n in nets)
    p = lat_profile
    assert (p.space, p.space_hash) == (LAT_SPACE.name, LAT_SPACE.hash)
    assert (p.device, p.threads, p.batch_size, p.input_shape, p.num_classes) == ("cpu", 1, 1, SHAPE, 10)
    assert (p.warmup, p.repeats) == (2, 7)
    assert p.device_name and p.torch_version and p.created


def test_profile_of_a_small_space_measures_all_of_it(one_torch_thread) -> None:  # noqa: ANN001
    space = MacroSpace("lat_small", stem_width=4, stages=[Stage("s", Block("conv_3x3"), width=Choice([4, 8]))])
    profile = profile_space(space, input_shape=(1, 8, 8), networks=10, warmup=1, repeats=3)
    assert len(profile.networks) == space.size == 2  # cannot sample more distinct networks than exist


# -- JSON --------------------------------------------------------------------------------------


def test_profile_round_trips_through_json(lat_profile: LatencyProfile, tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    lat_profile.save(path)
    data = json.loads(path.read_text())
    assert data["format"] == PROFILE_FORMAT
    loaded = LatencyProfile.load(path)
    assert loaded == lat_profile
    assert isinstance(loaded.input_shape, tuple)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", ["other format", "no format", "malformed", "list", "unknown field",
                                  "missing field", "missing input_shape"])
def test_load_refuses_what_is_not_a_profile(lat_profile: LatencyProfile, tmp_path: Path, case: str) -> None:
    good = {"format": PROFILE_FORMAT, **dataclasses.asdict(lat_profile)}
    text = {
        "other format": lambda: json.dumps({**good, "format": "nasbench.latency-profile/999"}),
        "no format": lambda: json.dumps({k: v for k, v in good.items() if k != "format"}),
        "malformed": lambda: json.dumps(good)[:-10],
        "list": lambda: json.dumps([good]),
        "unknown field": lambda: json.dumps({**good, "colour": "blue"}),
        "missing field": lambda: json.dumps({k: v for k, v in good.items() if k != "device_name"}),
        "missing input_shape": lambda: json.dumps({k: v for k, v in good.items() if k != "input_shape"}),
    }[case]()
    path = _write(tmp_path / "bad.json", text)
    with pytest.raises(ConfigError, match="re-profile") as info:
        LatencyProfile.load(path)
    assert "\n" not in str(info.value)


def test_load_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found.*nasbench latency profile"):
        LatencyProfile.load(tmp_path / "nope.json")


def test_check_accepts_its_own_space_device_and_batch(lat_profile: LatencyProfile) -> None:
    lat_profile.check(LAT_SPACE, device="cpu", batch_size=1)
    lat_profile.check(LAT_SPACE, device="cpu:0")  # same device type
    lat_profile.check()


def test_check_refuses_other_space_device_and_batch_size(lat_profile: LatencyProfile) -> None:
    renamed = MacroSpace("other_name", stem_width=8, stages=list(LAT_SPACE.stages))
    changed = MacroSpace("lat_cmp", stem_width=8, stages=[LAT_SPACE.stages[0]])  # same name, other structure
    assert changed.hash != LAT_SPACE.hash
    messages = []
    for kwargs, pattern in [({"space": renamed}, "is for space 'lat_cmp'.*not 'other_name'"),
                            ({"space": changed}, f"hash {LAT_SPACE.hash}.*hash {changed.hash}"),
                            ({"device": "cuda"}, "measured on cpu.*not cuda"),
                            ({"batch_size": 4}, "batch size 1, not 4.*--batch-size")]:
        with pytest.raises(ConfigError, match=pattern) as info:
            lat_profile.check(**kwargs)
        messages.append(str(info.value))
    assert len(set(messages)) == 4 and not any("\n" in m for m in messages)


# -- predictor ---------------------------------------------------------------------------------


def _fixed_genome():  # noqa: ANN202
    return LAT_SPACE.genome({"a.width": 8, "a.depth": 2, "b.width": 48, "b.depth": 1})


#: The units of ``_fixed_genome`` by hand: stem, two 8->8 convs, one strided 8->48 conv, pool, classifier.
FIXED_UNITS = Counter({("conv_3x3", 3, 8, 1, (3, 8, 8)): 1, ("conv_3x3", 8, 8, 1, (8, 8, 8)): 2,
                       ("conv_3x3", 8, 48, 2, (8, 8, 8)): 1, ("AdaptiveAvgPool2d", (48, 4, 4)): 1,
                       ("Linear", (48,)): 1})


def test_table_sum_is_the_sum_of_the_looked_up_entries(lat_profile: LatencyProfile) -> None:
    rng = random.Random(5)
    table = {k: rng.uniform(0.1, 10.0) for k in lat_profile.table}  # known values, all different
    profile = dataclasses.replace(lat_profile, table=table, networks=[])
    by_unit = {parse_key(k): v for k, v in table.items()}
    assert len(by_unit) == len(table)
    expected = sum(by_unit[u] * n for u, n in FIXED_UNITS.items())
    predictor = LatencyPredictor(profile, LAT_SPACE)
    genome = _fixed_genome()
    assert predictor.table_sum(genome) == pytest.approx(expected, rel=1e-12)
    costs = predictor.costs(genome)
    assert costs["units"] == sum(FIXED_UNITS.values())
    assert costs["flops"] > 0 and costs["params"] > 0
    assert predictor.predict(genome) == pytest.approx(expected, rel=1e-12)  # no networks: no correction


def test_predict_is_positive_and_finite(lat_profile: LatencyProfile) -> None:
    predictor = LatencyPredictor(lat_profile, LAT_SPACE)  # fitted on the profile's networks
    genomes = [LAT_SPACE.sample(s) for s in range(8)]
    preds = predictor.predict_many(genomes)
    assert preds.shape == (8,)
    assert np.all(np.isfinite(preds)) and np.all(preds > 0)
    assert [predictor.predict(g) for g in genomes] == list(preds)


def test_predictor_with_few_networks_uses_the_table_sum(lat_profile: LatencyProfile) -> None:
    profile = dataclasses.replace(lat_profile, networks=lat_profile.networks[:4])
    predictor = LatencyPredictor(profile, LAT_SPACE)
    g = _fixed_genome()
    assert predictor.predict(g) == predictor.table_sum(g)


def test_a_unit_missing_from_the_table_asks_to_reprofile(lat_profile: LatencyProfile) -> None:
    genome = _fixed_genome()
    strided = next(k for k in lat_profile.table if parse_key(k) == ("conv_3x3", 8, 48, 2, (8, 8, 8)))
    table = {k: v for k, v in lat_profile.table.items() if k != strided}
    predictor = LatencyPredictor(dataclasses.replace(lat_profile, table=table, networks=[]), LAT_SPACE)
    with pytest.raises(ConfigError, match="lacks unit.*re-profile"):
        predictor.predict(genome)
    # A profile made for another input shape lacks every unit.
    other = LatencyPredictor(dataclasses.replace(lat_profile, input_shape=(3, 16, 16), networks=[]), LAT_SPACE)
    with pytest.raises(ConfigError, match="re-profile"):
        other.table_sum(genome)


def test_predictor_refuses_a_profile_of_another_space(lat_profile: LatencyProfile) -> None:
    with pytest.raises(ConfigError, match="latency profile is for space 'lat_cmp'"):
        LatencyPredictor(lat_profile, load_space("resnet"))


def test_fit_needs_one_measurement_per_genome(lat_profile: LatencyProfile) -> None:
    predictor = LatencyPredictor(dataclasses.replace(lat_profile, networks=[]), LAT_SPACE)
    genomes = [LAT_SPACE.sample(s) for s in range(4)]
    with pytest.raises(ConfigError, match="one measurement each"):
        predictor.fit(genomes, np.ones(3))
    with pytest.raises(ConfigError, match=">= 2 genomes"):
        predictor.fit(genomes[:1], np.ones(1))
    assert predictor.fit(genomes, np.arange(1.0, 5.0)) is predictor


def _mape(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - true) / true))


def test_learned_predictor_beats_a_linear_flops_baseline(lat_profile: LatencyProfile) -> None:
    """Fit both on N_FIT measured networks, compare rank correlation on the N_HELD others.

    Robust on a loaded machine: every number is a median of repeats, both predictors are
    scored against the same measurements (so slow periods hurt both), and the space is built
    so that FLOPs explain latency poorly (deep narrow nets: many layers, few MACs). Trials with
    extra CPU hogs running gave the predictor 1-10 % MAPE against 9-30 % for FLOPs.
    """
    fit, held = lat_profile.networks[:N_FIT], lat_profile.networks[N_FIT:]
    predictor = LatencyPredictor(dataclasses.replace(lat_profile, networks=fit), LAT_SPACE)  # fits on `fit`
    fit_g = [LAT_SPACE.load_genome(n["genome"]) for n in fit]
    held_g = [LAT_SPACE.load_genome(n["genome"]) for n in held]
    fit_ms = np.array([n["ms"] for n in fit])
    held_ms = np.array([n["ms"] for n in held])
    flops = np.array([predictor.costs(g)["flops"] for g in fit_g + held_g], dtype=float)
    slope, intercept = np.polyfit(flops[:N_FIT], fit_ms, 1)
    baseline = slope * flops[N_FIT:] + intercept
    learned = predictor.predict_many(held_g)
    # Ranked, not MAPE: the fit and held-out networks are measured at different moments, and a
    # machine-wide slowdown in between shifts every held-out latency by the same factor (seen in
    # CI: both predictors 40-50% off), which MAPE punishes but ranking a search's candidates does not.
    rho_learned = spearmanr(learned, held_ms).statistic
    rho_flops = spearmanr(baseline, held_ms).statistic
    assert rho_learned > rho_flops, (
        f"predictor Spearman {rho_learned:.3f} vs FLOPs {rho_flops:.3f} "
        f"(MAPE {_mape(learned, held_ms):.3f} vs {_mape(baseline, held_ms):.3f})")


def test_measure_networks_measures_each_genome(one_torch_thread) -> None:  # noqa: ANN001
    genomes = [LAT_SPACE.sample(s) for s in range(3)]
    seen = []
    ms = measure_networks(LAT_SPACE, genomes, device="cpu", batch_size=2, threads=1, input_shape=(1, 8, 8),
                          num_classes=3, warmup=1, repeats=3, progress=lambda *a: seen.append(a))
    assert len(ms) == 3 and all(t > 0 for t in ms)
    assert seen == [("networks", 1, 3), ("networks", 2, 3), ("networks", 3, 3)]


# -- per-op latencies (for DARTS) --------------------------------------------------------------

#: Fake cost (ms) of each NB-201 edge op, by registry name.
OP_MS = {"relu_conv_bn_3x3": 3.0, "relu_conv_bn_1x1": 1.0, "avg_pool_3x3": 0.5, "skip": 0.25}


def test_op_latency_table_of_nb201_with_a_known_table() -> None:
    space = load_space("nb201")
    keys: set[str] = set()
    for g in covering_genomes(space):
        keys |= {u.key for u in trace_units(space.build(g, num_classes=10, input_shape=SHAPE), SHAPE)}
    table = {k: OP_MS.get(parse_key(k)[0], 7.0) for k in keys}  # skeleton units: 7 ms, never varied
    profile = LatencyProfile(space="nb201", space_hash=space.hash, device="cpu", device_name="test", threads=1,
                             batch_size=1, input_shape=SHAPE, num_classes=10, torch_version="x", created="now",
                             warmup=0, repeats=1, table=table, networks=[])
    predictor = LatencyPredictor(profile, space)
    base = space.genome({label: "nor_conv_3x3" for label in (d.label for d in space.decisions)})
    cells = sum(isinstance(m, DenseCell) for m in space.build(base, num_classes=10, input_shape=SHAPE).modules())
    assert cells == 15
    ops = predictor.op_latency_table(base)
    cost = {"none": 0.0, "skip_connect": 0.25, "nor_conv_1x1": 1.0, "avg_pool_3x3": 0.5, "nor_conv_3x3": 3.0}
    assert set(ops) == {d.label for d in space.decisions}
    for label, row in ops.items():
        assert set(row) == set(cost)
        assert row["none"] == 0.0  # the zero op is the cheapest
        # Each cell pays the edge's op; removing edge 0->1 also kills node 1's two out-edges (3x3 convs).
        dead_extra = 2 * cost["nor_conv_3x3"] if label == "cell.e0-1" else 0.0
        for v, ms in row.items():
            expected = 0.0 if v == "none" else cells * (cost[v] + dead_extra)
            assert ms == pytest.approx(expected), (label, v)


# -- search with a latency profile -------------------------------------------------------------

STRATEGY_CASES = [("random", "accuracy,latency"), ("tpe", "accuracy"), ("nsga2", "accuracy,latency"),
                  ("evolution", "accuracy,latency")]


def search_args(strategy: str, objective: str, profile: Path, bound: float | None, study: str) -> list[str]:
    args = ["--quiet", "search", "--space", "resnet", "--dataset", "digits", "--limit", "100", "--epochs", "0.2",
            "--strategy", strategy, "--objective", objective, "--latency-profile", str(profile),
            "--measure-latency", "--budget", "3", "--study", study, "--population", "2", "--tournament", "2"]
    return args + (["--max-latency-ms", repr(bound)] if bound is not None else [])


@pytest.fixture(scope="module")
def latency_bound(resnet_profile: Path) -> float:
    """The median predicted latency of 40 random resnet networks: about half the space breaks it."""
    predictor = LatencyPredictor(LatencyProfile.load(resnet_profile), load_space("resnet"))
    rng = random.Random(0)
    preds = sorted(predictor.predict(load_space("resnet").sample(rng)) for _ in range(40))
    assert preds[-1] > preds[20]  # the bound binds
    return preds[20]


@pytest.mark.parametrize(("strategy", "objective"), STRATEGY_CASES)
def test_search_honours_the_predicted_latency_bound(strategy: str, objective: str, resnet_profile: Path,
                                                    latency_bound: float, tmp_path: Path, monkeypatch,
                                                    capsys) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(search_args(strategy, objective, resnet_profile, latency_bound, "lat"), capsys)
    assert code == 0, err
    study = optuna.load_study(study_name="lat", storage=f"sqlite:///{tmp_path / 'nasbench.db'}")
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    space = load_space("resnet")
    predictor = LatencyPredictor(LatencyProfile.load(resnet_profile), space)
    for t in trials:
        attrs = t.user_attrs
        assert attrs["latency_ms"] <= latency_bound
        assert attrs["latency_source"].startswith("predicted")
        genome = space.load_genome(attrs["genome"])
        assert attrs["latency_ms"] == pytest.approx(predictor.predict(genome), rel=1e-9)
        assert attrs["measured_latency_ms"] > 0
        if objective == "accuracy,latency":
            assert t.values[1] == attrs["latency_ms"]


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("INFO", "WARNING"))]
    assert len(lines) == 1, err
    assert lines[0].startswith("nasbench: error: ") and "Traceback" not in err
    return lines[0]


def test_search_refuses_a_profile_of_another_space(lat_profile: LatencyProfile, tmp_path: Path, monkeypatch,
                                                   capsys) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    lat_profile.save(tmp_path / "other_space.json")
    code, _, err = run_main(search_args("random", "accuracy,latency", tmp_path / "other_space.json", None, "x"),
                            capsys)
    assert code == 2
    assert "latency profile is for space 'lat_cmp'" in _one_error_line(err)
    assert not (tmp_path / "nasbench.db").exists()  # refused before the study is touched


@pytest.mark.parametrize(("change", "pattern"), [({"input_shape": (3, 8, 8)}, "is for 3x8x8 inputs.*1x8x8"),
                                                 ({"num_classes": 100}, "100 classes.*--num-classes 10")])
def test_search_refuses_a_profile_for_other_inputs(change: dict, pattern: str, resnet_profile: Path,
                                                   tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    path = tmp_path / f"other_{next(iter(change))}.json"
    # A real profile for other inputs has a table (and networks) for them: emulate it without the
    # networks, which the predictor would otherwise re-trace with this table at construction.
    dataclasses.replace(LatencyProfile.load(resnet_profile), networks=[], **change).save(path)
    code, _, err = run_main(search_args("random", "accuracy,latency", path, 1e6, "x"), capsys)
    assert code == 2
    assert re.search(pattern, _one_error_line(err))
    assert not (tmp_path / "nasbench.db").exists()


# -- nasbench latency --------------------------------------------------------------------------


def test_cli_latency_profile_writes_a_loadable_profile(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.py").write_text(USER_SPACE)
    code, out, err = run_main(["latency", "profile", "--space", "space.py", "--input-shape", "1,8,8",
                               "--networks", "6", "--repeats", "3", "--warmup", "1", "--out", "p.json"], capsys)
    assert code == 0, err
    profile = LatencyProfile.load(tmp_path / "p.json")
    space = load_space(str(tmp_path / "space.py"))
    profile.check(space, device="cpu", batch_size=1)
    assert (profile.input_shape, profile.num_classes, profile.threads, profile.repeats) == ((1, 8, 8), 10, 1, 3)
    assert len(profile.networks) == 6 and all(n["ms"] > 0 for n in profile.networks)
    assert f"wrote p.json: {len(profile.table)} units and 6 networks of lat_user" in out


def test_cli_latency_predict_prints_the_prediction(resnet_profile: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    space = load_space("resnet")
    genome = space.sample(11)
    save_architecture(tmp_path / "arch.json", genome, space=space, input_shape=(1, 8, 8))
    code, out, err = run_main(["latency", "predict", str(tmp_path / "arch.json"), "--profile", str(resnet_profile)],
                              capsys)
    assert code == 0, err
    m = re.match(r"([0-9.]+) ms predicted on .*table sum ([0-9.]+) ms over (\d+) units", out.strip())
    assert m, out
    predictor = LatencyPredictor(LatencyProfile.load(resnet_profile), space)
    assert float(m.group(1)) == pytest.approx(predictor.predict(genome), abs=5e-4)
    assert float(m.group(2)) == pytest.approx(predictor.table_sum(genome), abs=5e-4)
    assert int(m.group(3)) == predictor.costs(genome)["units"]


@pytest.mark.parametrize(("flags", "pattern"), [(["--batch-size", "4"], "batch size 1, not 4"),
                                                (["--device", "cuda"], "measured on cpu.*not cuda")])
def test_cli_latency_predict_refuses_a_mismatched_profile(flags: list[str], pattern: str, resnet_profile: Path,
                                                          tmp_path: Path, capsys) -> None:  # noqa: ANN001
    space = load_space("resnet")
    save_architecture(tmp_path / "arch.json", space.sample(1), space=space, input_shape=(1, 8, 8))
    code, _, err = run_main(["latency", "predict", str(tmp_path / "arch.json"), "--profile", str(resnet_profile),
                             *flags], capsys)
    assert code == 2
    assert re.search(pattern, _one_error_line(err))


def test_cli_latency_predict_on_a_user_space_file(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.py").write_text(USER_SPACE)
    space = load_space(str(tmp_path / "space.py"))
    profile_space(space, input_shape=(1, 8, 8), networks=2, warmup=1, repeats=3).save(tmp_path / "p.json")
    save_architecture(tmp_path / "arch.json", space.sample(0), space=space, input_shape=(1, 8, 8))
    code, out, err = run_main(["latency", "predict", "arch.json", "--profile", "p.json"], capsys)
    assert code == 0, err
    assert re.match(r"[0-9.]+ ms predicted", out.strip())


def test_cli_latency_evaluate_reports_accuracy_as_json(resnet_profile: Path, capsys) -> None:  # noqa: ANN001
    import nasbench.hardware

    if not hasattr(nasbench.hardware, "accuracy_report"):
        pytest.skip("nasbench.hardware.accuracy_report is not written yet")
    code, out, err = run_main(["latency", "evaluate", "--profile", str(resnet_profile), "--n", "3", "--json"],
                              capsys)
    assert code == 0, err
    report = json.loads(out)  # stdout is the JSON report only
    assert (report["space"], report["n_heldout"], report["n_fit"]) == ("resnet", 3, 5)
    for name in ("predictor", "table_sum", "flops_linear"):
        r = report[name]
        assert 0.0 <= r["within_10pct"] <= 1.0 and r["mape"] >= 0 and -1.0 <= r["spearman"] <= 1.0
