"""Tests for the NAS-Bench-201 tables as an instant evaluator, and ``nasbench search --benchmark``."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nasbench._spaces import load_space
from nasbench.benchmarks import NB201, NB201_DATASETS, BenchmarkEvaluator, resolve_nb201_paths
from nasbench.errors import ConfigError, DataError, GenomeError, NasbenchError
from nasbench.hardware import count_flops, count_params, torch_threads
from nasbench.objectives import Objectives
from nasbench.space import Cell, CellSpace
from search_spaces.nb201 import OPS

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nb201"
ACC_CSV, LAT_CSV = DATA / "nb201_accuracy.csv", DATA / "nb201_latency_ms.csv"

needs_data = pytest.mark.skipif(not (ACC_CSV.is_file() and LAT_CSV.is_file()),
                                reason=f"NAS-Bench-201 tables not found in {DATA}")
#: dataset -> column prefix, written out here so a change in the library's mapping is caught
PREFIX = {"cifar10": "c10", "cifar100": "c100", "imagenet16": "in16"}



@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Loading the tables and counting FLOPs run tiny forward passes; a second thread only adds contention."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def bench() -> NB201:
    if not (ACC_CSV.is_file() and LAT_CSV.is_file()):
        pytest.skip(f"NAS-Bench-201 tables not found in {DATA}")
    return NB201(ACC_CSV, LAT_CSV)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    if not ACC_CSV.is_file():
        pytest.skip(f"NAS-Bench-201 tables not found in {DATA}")
    with ACC_CSV.open(newline="") as f:
        return list(csv.DictReader(f))


def latency_row(arch_index: int) -> dict[str, str]:
    with LAT_CSV.open(newline="") as f:
        for row in csv.DictReader(f):
            if int(row["arch_index"]) == arch_index:
                return row
    raise LookupError(arch_index)


# -- the tables ----------------------------------------------------------------------------


@needs_data
def test_table_holds_every_cell_of_the_space(bench, rows):
    assert len(bench) == 15_625 == len(rows) == bench.space.size
    # arch strings of the CSV parse to genomes that map back to their own row
    for i in random.Random(0).sample(range(len(rows)), 300):
        genome = bench.space.from_arch_str(rows[i]["arch_str"])
        assert bench.space.to_arch_str(genome) == rows[i]["arch_str"]
        assert bench.row(genome) == i
        assert bench.query(genome)["arch_index"] == int(rows[i]["arch_index"])


@needs_data
@pytest.mark.parametrize("row_number", [0, 1])
@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "imagenet16"])
def test_query_returns_the_csv_numbers_as_fractions(bench, rows, row_number, dataset):
    row = rows[row_number]
    genome = bench.space.from_arch_str(row["arch_str"])
    p = PREFIX[dataset]
    m200 = bench.query(genome, dataset)
    assert m200["val_accuracy"] == pytest.approx(float(row[f"{p}_valid_acc_200ep_1seed"]) / 100, abs=1e-12)
    assert m200["test_accuracy"] == pytest.approx(float(row[f"{p}_test_acc_200ep_mean"]) / 100, abs=1e-12)
    assert m200["arch_index"] == int(row["arch_index"])
    m12 = bench.query(genome, dataset, epochs=12)
    assert m12["val_accuracy"] == pytest.approx(float(row[f"{p}_valid_acc_12ep"]) / 100, abs=1e-12)
    assert m12["test_accuracy"] == pytest.approx(float(row[f"{p}_test_acc_12ep"]) / 100, abs=1e-12)
    assert m12["train_seconds"] == pytest.approx(m200["train_seconds"] * 12 / 200)
    assert "latency_ms" not in m200
    assert m200["params"] == bench.costs(genome).params and m200["flops"] == bench.costs(genome).flops


@needs_data
@pytest.mark.parametrize("row_number", [0, 1])
def test_latency_column_matches_the_latency_csv(bench, rows, row_number):
    genome = bench.space.from_arch_str(rows[row_number]["arch_str"])
    lat = latency_row(int(rows[row_number]["arch_index"]))
    for device in ("raspi4", "pixel3", "gold_6226"):
        m = bench.query(genome, "cifar10", device=device)
        assert m["latency_ms"] == pytest.approx(float(lat[device]), abs=1e-12)
        assert m["latency_device"] == device
    assert set(bench.latency_devices) == set(lat) - {"arch_index"}


@needs_data
def test_latency_rows_are_matched_by_arch_index_not_by_position(tmp_path, bench, rows):
    # a latency table in another row order (and with one extra device) gives the same numbers
    lat0, lat1 = latency_row(0), latency_row(1)
    path = tmp_path / "lat.csv"
    path.write_text(f"arch_index,raspi4\n1,{lat1['raspi4']}\n0,{lat0['raspi4']}\n")
    small = NB201(ACC_CSV, path)
    for r in (0, 1):
        genome = small.space.from_arch_str(rows[r]["arch_str"])
        assert small.query(genome, device="raspi4")["latency_ms"] == pytest.approx(float((lat0, lat1)[r]["raspi4"]))
    assert small.latency_devices == ["raspi4"]


@needs_data
def test_best_cifar10_test_accuracy_is_the_csv_maximum(bench, rows):
    best = max(rows, key=lambda r: float(r["c10_test_acc_200ep_mean"]))
    m = bench.query(bench.space.from_arch_str(best["arch_str"]), "cifar10")
    assert m["test_accuracy"] == pytest.approx(float(best["c10_test_acc_200ep_mean"]) / 100, abs=1e-12)
    assert m["test_accuracy"] == pytest.approx(0.9437, abs=5e-5)


# -- params and FLOPs ----------------------------------------------------------------------


def _genomes_with_dead_nodes(space: CellSpace) -> list:
    """Cells where some ops hold parameters but are fed only by dead nodes."""
    conv3, conv1, skip, pool, none = "nor_conv_3x3", "nor_conv_1x1", "skip_connect", "avg_pool_3x3", "none"

    def cell(e01, e02, e12, e03, e13, e23):  # noqa: ANN001, ANN202
        return space.genome({"cell.e0-1": e01, "cell.e0-2": e02, "cell.e1-2": e12,
                             "cell.e0-3": e03, "cell.e1-3": e13, "cell.e2-3": e23})

    return [
        cell(none, none, none, none, none, none),  # nothing computes
        cell(none, conv3, conv3, conv1, conv1, skip),  # node 1 dead: e1-2, e1-3 hold params only
        cell(none, none, conv3, conv1, pool, conv3),  # nodes 1 and 2 dead: a dead chain
        cell(conv3, conv1, skip, none, none, none),  # output node dead: the cell outputs zeros
        cell(conv1, none, none, conv3, conv3, conv3),  # node 2 dead: e2-3 holds params only
        cell(conv3, conv3, conv3, conv3, conv3, conv3),  # the largest cell
        cell(skip, pool, skip, pool, skip, pool),  # no parameters in the cell
    ]


@needs_data
def test_costs_equal_counting_the_built_network(bench):
    space = bench.space
    rng = random.Random(0)
    genomes = _genomes_with_dead_nodes(space) + [space.sample(rng) for _ in range(13)]
    seen_dead_params = False
    for g in genomes:
        model = space.build(g, num_classes=10, input_shape=(3, 32, 32))
        costs = bench.costs(g)
        assert costs.params == count_params(model), space.to_arch_str(g)
        assert costs.flops == count_flops(model, (3, 32, 32)), space.to_arch_str(g)
        seen_dead_params |= g["cell.e0-1"] == "none" and g["cell.e1-2"] == "nor_conv_3x3"
    assert seen_dead_params
    # a dead conv adds parameters but no MACs
    a, b = _genomes_with_dead_nodes(space)[:2]
    assert bench.costs(b).params > bench.costs(a).params


# -- errors --------------------------------------------------------------------------------


@needs_data
def test_unknown_dataset_device_and_epochs_are_config_errors(bench):
    g = bench.space.sample(0)
    with pytest.raises(ConfigError, match="cifar10"):
        bench.query(g, "mnist")
    with pytest.raises(ConfigError, match="cifar10"):
        BenchmarkEvaluator(bench, "svhn")
    with pytest.raises(ConfigError, match="raspi4"):  # lists the devices there are
        bench.query(g, device="tpu_v9")
    with pytest.raises(ConfigError, match="raspi4"):
        BenchmarkEvaluator(bench, device="tpu_v9")
    with pytest.raises(ConfigError, match="200"):
        bench.query(g, epochs=50)
    assert NB201.dataset_name("ImageNet16-120") == "imagenet16"
    assert NB201.dataset_name("C10") == "cifar10"
    assert set(NB201_DATASETS) == set(PREFIX)


@needs_data
def test_latency_objective_without_device_is_refused(bench):
    with pytest.raises(NasbenchError, match="--device-latency"):
        BenchmarkEvaluator(bench, "cifar10", Objectives.parse("accuracy,latency"))
    ev = BenchmarkEvaluator(bench, "cifar10", Objectives.parse("accuracy,latency"), device="raspi4")
    g = bench.space.sample(1)
    result = ev(g, 0)
    assert result.ok
    assert result.values == (result.metrics["val_accuracy"], result.metrics["latency_ms"])
    with pytest.raises(NasbenchError, match="--device-latency"):  # a latency constraint needs a device too
        BenchmarkEvaluator(bench).estimate(g, with_latency=True)


@needs_data
def test_genome_of_another_space_is_refused(bench):
    with pytest.raises(GenomeError, match="resnet"):
        bench.query(load_space("resnet").sample(0))
    # same cell, other skeleton settings: another structural hash
    narrow = CellSpace("nb201", [Cell("cell", OPS, nodes=4)], skeleton="nb201", C=8)
    assert narrow.hash != bench.space.hash
    with pytest.raises(GenomeError, match="another version"):
        bench.query(narrow.sample(0))


def test_missing_files_and_folders_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        NB201(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="nb201_accuracy.csv"):
        resolve_nb201_paths(tmp_path)  # a folder without the table
    with pytest.raises(DataError, match="not found"):
        resolve_nb201_paths(tmp_path / "missing")
    (tmp_path / "nb201_accuracy.csv").write_text("arch_index,arch_str\n")
    assert resolve_nb201_paths(tmp_path) == (tmp_path / "nb201_accuracy.csv", None)
    (tmp_path / "nb201_latency_ms.csv").write_text("arch_index,raspi4\n")
    assert resolve_nb201_paths(tmp_path / "nb201_accuracy.csv") == (
        tmp_path / "nb201_accuracy.csv", tmp_path / "nb201_latency_ms.csv")


def test_tables_with_wrong_columns_or_content_are_data_errors(tmp_path):
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("index,arch\n0,x\n")
    with pytest.raises(DataError, match="arch_str"):
        NB201(wrong)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError):
        NB201(empty)
    if ACC_CSV.is_file():
        lat = tmp_path / "lat.csv"
        lat.write_text("index,raspi4\n0,1.0\n")
        with pytest.raises(DataError, match="arch_index"):
            NB201(ACC_CSV, lat)


def test_table_lacking_a_dataset_s_columns_is_a_data_error(tmp_path, rows):
    part = tmp_path / "c10_only.csv"
    cols = ["arch_index", "arch_str", "c10_valid_acc_200ep_1seed", "c10_test_acc_200ep_mean"]
    with part.open("w", newline="") as f:
        w = csv.DictWriter(f, cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows[:2])
    try:
        small = NB201(part)
    except DataError:
        return  # refusing at load time is fine too
    genome = small.space.from_arch_str(rows[0]["arch_str"])
    assert small.query(genome, "cifar10")["val_accuracy"] == pytest.approx(float(rows[0]["c10_valid_acc_200ep_1seed"]) / 100)
    with pytest.raises(DataError, match="cifar100|c100"):
        small.query(genome, "cifar100")


# -- the CLI -------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"  # no training here; one thread keeps start-up light
    return env


@needs_data
def test_cli_search_on_the_benchmark_end_to_end(tmp_path):
    db = tmp_path / "x.db"
    out = subprocess.run(
        [sys.executable, "-m", "nasbench.cli", "search", "--space", "nb201", "--benchmark", f"nb201:{DATA}",
         "--budget", "30", "--strategy", "evolution", "--storage", f"sqlite:///{db}"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    study = optuna.load_study(study_name="nb201-cifar10-evolution", storage=f"sqlite:///{db}")
    trials = study.trials
    assert len(trials) == 30 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["genome_hash"] for t in trials}) == 30
    best = json.loads((tmp_path / "best.json").read_text())
    assert 0.5 < best["metrics"]["test_accuracy"] <= 0.9437
    assert best["metrics"]["val_accuracy"] == pytest.approx(max(t.values[0] for t in trials))
    assert study.user_attrs["nasbench"]["benchmark"] == "nb201"


@needs_data
def test_cli_latency_objective_with_a_latency_bound(tmp_path, capsys):
    from nasbench.cli import main

    db = tmp_path / "lat.db"
    code = main(["--quiet", "search", "--space", "nb201", "--benchmark", f"nb201:{DATA}", "--budget", "20",
                 "--objective", "accuracy,latency", "--device-latency", "raspi4", "--max-latency-ms", "10",
                 "--storage", f"sqlite:///{db}", "--out", str(tmp_path / "best.json")])
    assert code == 0, capsys.readouterr().err
    trials = optuna.load_study(study_name="nb201-cifar10-evolution-latency", storage=f"sqlite:///{db}").trials
    assert len(trials) == 20
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert all(t.user_attrs["latency_ms"] <= 10 and t.values[1] == t.user_attrs["latency_ms"] for t in trials)
    assert (tmp_path / "best.json").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["--space", "nb201", "--benchmark", "nb201:/nonexistent"], "not found"),
    (["--space", "resnet", "--benchmark", f"nb201:{DATA}"], "--space nb201"),
    (["--space", "nb201", "--benchmark", f"nb201:{DATA}", "--objective", "accuracy,latency"], "--device-latency"),
])
def test_cli_bad_benchmark_arguments_exit_2_with_one_line(tmp_path, capsys, args, message):
    from nasbench.cli import main

    if str(DATA) in " ".join(args) and not ACC_CSV.is_file():
        pytest.skip(f"NAS-Bench-201 tables not found in {DATA}")
    db = tmp_path / "never.db"
    code = main(["--quiet", "search", *args, "--storage", f"sqlite:///{db}", "--out", str(tmp_path / "b.json")])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nasbench: error:") and message in lines[0]
    assert not db.exists()  # refused before the study is touched
