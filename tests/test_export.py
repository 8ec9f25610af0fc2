"""Exported architectures: JSON round trips, weights, no code execution, clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nasbench import list_spaces, load_architecture, load_space, save_architecture
from nasbench.errors import ArchitectureFileError, GenomeError
from nasbench.export import ARCHITECTURE_FORMAT
from nasbench.space import Block, MacroSpace, Stage

SHAPE = (3, 8, 8)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every float parameter and BN statistic random, so a lost tensor changes the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
    return model.eval()


@pytest.mark.parametrize("name", list_spaces())
def test_round_trip_keeps_genome_metrics_and_bytes(tmp_path: Path, name: str) -> None:
    genome = load_space(name).sample(3)
    metrics = {"accuracy": 0.91, "latency_ms": 3.5, "params": 12345, "note": "best", "ok": True}
    arch = save_architecture(tmp_path / "a.json", genome, metrics, num_classes=7, input_shape=(1, 9, 9))
    loaded = load_architecture(tmp_path / "a.json")
    assert loaded.genome == genome and loaded.genome.hash == genome.hash
    assert loaded.metrics == metrics
    assert loaded.num_classes == 7 and loaded.input_shape == (1, 9, 9)
    assert loaded.arch == arch.arch == load_space(name).freeze(genome)
    first = (tmp_path / "a.json").read_bytes()
    save_architecture(tmp_path / "a.json", genome, metrics, num_classes=7, input_shape=(1, 9, 9))
    save_architecture(tmp_path / "sub" / "b.json", loaded.genome, loaded.metrics,
                      num_classes=7, input_shape=(1, 9, 9))
    assert (tmp_path / "a.json").read_bytes() == first == (tmp_path / "sub" / "b.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "sub"]  # no temp file left
    data = json.loads(first)
    assert data["format"] == ARCHITECTURE_FORMAT and data["genome_hash"] == genome.hash
    assert "weights" not in data


def test_loaded_architecture_builds_without_weights(tmp_path: Path) -> None:
    genome = load_space("resnet").sample(0)
    save_architecture(tmp_path / "a.json", genome, num_classes=4, input_shape=SHAPE)
    model = load_architecture(tmp_path / "a.json").build()
    assert model(torch.randn(2, *SHAPE)).shape == (2, 4)


@pytest.mark.parametrize("name", list_spaces())
def test_weights_round_trip_gives_identical_outputs(tmp_path: Path, name: str) -> None:
    space = load_space(name)
    genome = space.sample(5)
    model = _randomized(space.build(genome, num_classes=6, input_shape=SHAPE))
    save_architecture(tmp_path / "w.json", genome, {"accuracy": 0.5}, weights=model,
                      num_classes=6, input_shape=SHAPE)
    assert (tmp_path / "w.safetensors").is_file()
    loaded = load_architecture(tmp_path / "w.json")
    rebuilt = loaded.build().eval()
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
        fresh = loaded.build(load_weights=False).eval()
        assert not torch.equal(fresh(x), model(x))
    # Another head or resolution: builds, loads weights only when the head fits.
    with torch.no_grad():
        assert loaded.build(num_classes=2).eval()(x).shape == (2, 2)
        bigger = torch.randn(2, 3, 16, 16)
        assert torch.equal(loaded.build(input_shape=(3, 16, 16)).eval()(bigger), model(bigger))


def test_state_dict_weights_are_accepted(tmp_path: Path) -> None:
    space = load_space("resnet")
    genome = space.sample(2)
    model = _randomized(space.build(genome, num_classes=3, input_shape=SHAPE), seed=1)
    save_architecture(tmp_path / "s.json", genome, weights=model.state_dict(), num_classes=3,
                      input_shape=SHAPE)
    rebuilt = load_architecture(tmp_path / "s.json").build()
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value)


def test_loading_never_runs_the_space_file(tmp_path: Path, user_space_file: Path) -> None:
    marker = tmp_path / "ran.txt"
    user_space_file.write_text(user_space_file.read_text()
                               + f"\nopen({str(marker)!r}, 'a').write('x')\n")
    space = load_space(str(user_space_file))
    genome = space.sample(1)
    save_architecture(tmp_path / "u.json", genome, space=str(user_space_file), num_classes=3,
                      input_shape=SHAPE)
    runs = marker.read_text()
    user_space_file.unlink()
    loaded = load_architecture(tmp_path / "u.json")
    model = loaded.build()
    assert model(torch.randn(2, *SHAPE)).shape == (2, 3)
    assert loaded.genome == genome and marker.read_text() == runs


def test_user_space_genome_needs_its_space_to_export(tmp_path: Path) -> None:
    space = MacroSpace("nowhere_space", [Stage("s", Block("conv_3x3"), width=8)])
    with pytest.raises(ArchitectureFileError, match="space="):
        save_architecture(tmp_path / "x.json", space.sample(0))
    save_architecture(tmp_path / "x.json", space.sample(0), space=space)
    assert load_architecture(tmp_path / "x.json", space=space).genome == space.sample(0)


def test_non_finite_and_numpy_metrics_become_plain_json(tmp_path: Path) -> None:
    genome = load_space("nb201").sample(0)
    metrics = {"loss": float("nan"), "ratio": math.inf, "curve": [1.0, float("nan")],
               "np_float": np.float32(0.25), "np_int": np.int64(7), "nested": {"x": -math.inf}}
    save_architecture(tmp_path / "m.json", genome, metrics)
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    got = json.loads(text)["metrics"]
    assert got == {"loss": None, "ratio": None, "curve": [1.0, None], "np_float": 0.25,
                   "np_int": 7, "nested": {"x": None}}
    assert type(got["np_int"]) is int
    assert load_architecture(tmp_path / "m.json").metrics == got


def test_numpy_bool_metric_stays_a_bool(tmp_path: Path) -> None:
    genome = load_space("nb201").sample(0)
    save_architecture(tmp_path / "b.json", genome, {"feasible": np.bool_(True)})
    assert load_architecture(tmp_path / "b.json").metrics["feasible"] is True


# -- errors -----------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "arch.json"
    save_architecture(path, load_space("nb201").sample(0), {"accuracy": 0.5})
    return path


@pytest.mark.parametrize("edit", [
    lambda d: "{ this is not json",
    lambda d: "[]",
    lambda d: json.dumps({**d, "format": "nasbench.architecture/0"}),
    lambda d: json.dumps({k: v for k, v in d.items() if k != "format"}),
    lambda d: json.dumps({k: v for k, v in d.items() if k != "genome"}),
    lambda d: json.dumps({k: v for k, v in d.items() if k != "architecture"}),
    lambda d: json.dumps({**d, "genome": {**d["genome"], "format": "x"}}),
    lambda d: json.dumps({**d, "genome": [1, 2]}),
    lambda d: json.dumps({**d, "architecture": [1]}),
    lambda d: json.dumps({**d, "build": {"num_classes": "ten"}}),
    lambda d: json.dumps({**d, "build": {"input_shape": [3, 32]}}),
])
def test_malformed_file_raises_architecture_file_error(saved: Path, edit) -> None:
    saved.write_text(edit(json.loads(saved.read_text())))
    with pytest.raises(ArchitectureFileError):
        load_architecture(saved)


def test_genome_hash_mismatch_is_detected(saved: Path) -> None:
    data = json.loads(saved.read_text())
    values = data["genome"]["values"]
    values["cell.e0-1"] = "none" if values["cell.e0-1"] != "none" else "skip_connect"
    saved.write_text(json.dumps(data))  # genome edited, genome_hash and architecture stale
    with pytest.raises(ArchitectureFileError):
        load_architecture(saved)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ArchitectureFileError, match="not found"):
        load_architecture(tmp_path / "none.json")
    with pytest.raises(ArchitectureFileError):
        load_architecture(tmp_path)  # a directory


def test_missing_or_corrupt_weights_raise(tmp_path: Path) -> None:
    space = load_space("resnet")
    genome = space.sample(0)
    model = space.build(genome, num_classes=10, input_shape=SHAPE)
    save_architecture(tmp_path / "w.json", genome, weights=model, input_shape=SHAPE)
    (tmp_path / "w.safetensors").write_bytes(b"not safetensors")
    loaded = load_architecture(tmp_path / "w.json")
    with pytest.raises(ArchitectureFileError):
        loaded.build()
    (tmp_path / "w.safetensors").unlink()
    with pytest.raises(ArchitectureFileError, match="weights"):
        load_architecture(tmp_path / "w.json")


def test_loading_with_another_space_raises_genome_error(saved: Path) -> None:
    assert load_architecture(saved, space="nb201").genome.space == "nb201"
    with pytest.raises(GenomeError, match="nb201"):
        load_architecture(saved, space="resnet")
    with pytest.raises(GenomeError):
        load_architecture(saved, space=load_space("darts"))


def test_weights_named_outside_the_json_folder_are_refused_unless_passed_explicitly(tmp_path: Path) -> None:
    space = load_space("resnet")
    genome = space.sample(0)
    model = _randomized(space.build(genome, num_classes=10, input_shape=SHAPE))
    other, mine = tmp_path / "other", tmp_path / "mine"
    save_architecture(other / "w.json", genome, weights=model, input_shape=SHAPE)
    data = json.loads((other / "w.json").read_text())
    mine.mkdir()
    for named in ("../other/w.safetensors", str(other / "w.safetensors")):
        (mine / "a.json").write_text(json.dumps({**data, "weights": named}))
        with pytest.raises(ArchitectureFileError, match="outside its folder") as info:
            load_architecture(mine / "a.json")
        assert "\n" not in str(info.value)
    # the user passing them is fine, from anywhere
    arch = load_architecture(mine / "a.json", weights=other / "w.safetensors")
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(arch.build().eval()(x), model(x))
    # a subfolder of the JSON's folder is inside it
    (mine / "sub").mkdir()
    (mine / "sub" / "w.safetensors").write_bytes((other / "w.safetensors").read_bytes())
    (mine / "a.json").write_text(json.dumps({**data, "weights": "sub/w.safetensors"}))
    assert load_architecture(mine / "a.json").weights_path == mine / "sub" / "w.safetensors"
