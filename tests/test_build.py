"""Genome -> nn.Module: every space builds for any input, cells wire as specified, spaces load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nasbench import list_spaces, load_space
from nasbench.build import DenseCell, TwoInputCell, build_frozen
from nasbench.errors import ConfigError, GenomeError, SpaceError, UnknownNameError
from nasbench.ops import MBConv, ResNetBasic, ResNetBottleneck
from nasbench.space import Cell, CellSpace, MacroSpace, round_channels

SPACES = list_spaces()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


# -- every genome builds ----------------------------------------------------------------------
@pytest.mark.parametrize("name", SPACES)
@settings(max_examples=30, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), channels=st.sampled_from([1, 3, 4]),
       height=st.integers(5, 16), width=st.integers(5, 16), num_classes=st.integers(1, 12))
def test_every_sampled_genome_builds_and_runs(name: str, seed: int, channels: int, height: int,
                                              width: int, num_classes: int) -> None:
    space = load_space(name)
    model = space.build(space.sample(seed), num_classes=num_classes,
                        input_shape=(channels, height, width))
    out = _forward(model, torch.randn(2, channels, height, width))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", SPACES)
def test_built_model_trains(name: str) -> None:
    space = load_space(name)
    torch.manual_seed(0)
    model = space.build(space.sample(1), num_classes=3, input_shape=(3, 8, 8))
    model.train()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 8, 8)), torch.tensor([0, 2]))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads[-2:])  # the classifier learns
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


def test_build_rejects_bad_settings_and_foreign_genomes() -> None:
    space = load_space("resnet")
    genome = space.sample(0)
    with pytest.raises(ConfigError):
        space.build(genome, num_classes=0)
    with pytest.raises(ConfigError):
        space.build(genome, input_shape=(3, 32))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        space.build(genome, input_shape=(0, 32, 32))
    with pytest.raises(GenomeError):
        load_space("nb201").build(genome)
    with pytest.raises(ConfigError):
        build_frozen({"kind": "cell", "skeleton": "nasnet"})


# -- cell wiring ------------------------------------------------------------------------------
def _nb201(**edges: str) -> tuple[CellSpace, torch.nn.Module]:
    space = load_space("nb201")
    values = {d.label: "none" for d in space.decisions}
    values.update({f"cell.e{k[1:].replace('_', '-')}": v for k, v in edges.items()})
    return space, space.build(space.genome(values), num_classes=4, input_shape=(3, 8, 8))


def _cells(model: torch.nn.Module) -> list[DenseCell]:
    return [m for m in model.modules() if isinstance(m, DenseCell)]


def test_nb201_all_none_cells_output_zeros() -> None:
    _, model = _nb201()
    cells = _cells(model)
    assert len(cells) == 3 * 5 and all(len(c.edge_ops) == 0 for c in cells)
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(cells[0](x), torch.zeros_like(x))
    a = _forward(model, torch.randn(2, 3, 8, 8))
    b = _forward(model, torch.randn(2, 3, 8, 8))
    assert a.shape == (2, 4) and torch.allclose(a, b)  # the input cannot reach the output


@pytest.mark.parametrize(("edges", "factor"), [
    ({"e0_3": "skip_connect"}, 1.0),                                   # straight through
    ({"e0_1": "skip_connect", "e1_3": "skip_connect"}, 1.0),          # via node 1
    ({"e0_1": "skip_connect", "e1_2": "skip_connect"}, 0.0),          # node 2 never reaches 3
    ({"e1_3": "skip_connect", "e2_3": "skip_connect"}, 0.0),          # nodes 1, 2 are dead
    ({k: "skip_connect" for k in ("e0_1", "e0_2", "e1_2", "e0_3", "e1_3", "e2_3")}, 4.0),
])
def test_nb201_cell_sums_its_edges(edges: dict[str, str], factor: float) -> None:
    _, model = _nb201(**edges)
    x = torch.randn(2, 16, 8, 8)
    assert torch.allclose(_cells(model)[0](x), factor * x)


def test_nb201_skeleton_widths() -> None:
    _, model = _nb201(e0_3="nor_conv_3x3")
    widths = [c.edge_ops["0_3"][1].out_channels for c in _cells(model)]
    assert widths == [16] * 5 + [32] * 5 + [64] * 5
    assert model.classifier.in_features == 64


def test_darts_cells_follow_the_genome() -> None:
    space = load_space("darts")
    genome = space.sample(4)
    model = space.build(genome, num_classes=5, input_shape=(3, 16, 16))
    cells = [m for m in model.modules() if isinstance(m, TwoInputCell)]
    assert len(cells) == 8
    shapes = []
    hooks = [c.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:]))) for c in cells]
    _forward(model, torch.randn(2, 3, 16, 16))
    for h in hooks:
        h.remove()
    # Reductions at 8 // 3 = 2 and 2 * 8 // 3 = 5 double C (16 -> 32 -> 64); outputs concat 4 nodes.
    assert shapes == [(64, 16, 16)] * 2 + [(128, 8, 8)] * 3 + [(256, 4, 4)] * 3
    for i, cell in enumerate(cells):
        kind = "reduce" if i in (2, 5) else "normal"
        expected = [(s, d) for s, d, _ in space.cell(kind).edges(genome.values)]
        assert cell.edges == expected and len(cell.edges) == 8


def test_darts_settings_change_the_skeleton() -> None:
    cell = Cell("normal", ["skip", "sep_conv_3x3"], nodes=2, inputs=2)
    space = CellSpace("small_darts", [cell, Cell("reduce", ["max_pool_3x3"], nodes=2, inputs=2)],
                      skeleton="darts", C=4, layers=3, stem_multiplier=1)
    model = space.build(space.sample(0), num_classes=2, input_shape=(1, 8, 8))
    cells = [m for m in model.modules() if isinstance(m, TwoInputCell)]
    assert [c.out_channels for c in cells] == [8, 16, 32]  # reductions at layers 1 and 2
    assert _forward(model, torch.randn(2, 1, 8, 8)).shape == (2, 2)


def test_macro_blocks_follow_the_genome() -> None:
    space = load_space("resnet")
    for seed in range(5):
        genome = space.sample(seed)
        model = space.build(genome, num_classes=3, input_shape=(3, 8, 8))
        ops = [genome[f"s{s}.b{i}.op"] for s in (1, 2, 3) for i in range(genome[f"s{s}.depth"])]
        kinds = {"resnet_basic": ResNetBasic, "resnet_bottleneck": ResNetBottleneck}
        assert [type(b) for b in model.blocks] == [kinds[o] for o in ops]
        assert model.classifier.in_features == genome["s3.width"]


@pytest.mark.parametrize("mult", [0.75, 1.0, 1.25])
def test_width_multiplier_scales_stem_and_stages_not_head(mult: float) -> None:
    space = load_space("mobilenetv3")
    genome = space.genome({**space.sample(0).values, "width_mult": mult})
    model = space.build(genome, num_classes=3, input_shape=(3, 8, 8))
    channels: list[int] = []
    layers = [model.stem, *model.blocks, model.head]
    hooks = [m.register_forward_hook(lambda m, i, o: channels.append(o.shape[1])) for m in layers]
    _forward(model, torch.randn(1, 3, 8, 8))
    for h in hooks:
        h.remove()
    stage_widths = {"first": 16, "s1": 24, "s2": 40, "s3": 80, "s4": 112, "s5": 160}
    blocks = [b["stage"] for b in space.freeze(genome)["blocks"]]
    scale = (lambda w: w) if mult == 1.0 else (lambda w: round_channels(w * mult))
    assert channels == [scale(16), *(scale(stage_widths[s]) for s in blocks), 960]
    assert all(isinstance(b, MBConv) for b in model.blocks)


# -- loading spaces ---------------------------------------------------------------------------
def test_load_user_space_file(user_space_file: Path) -> None:
    space = load_space(str(user_space_file))
    assert isinstance(space, MacroSpace) and space.name == "user_file_space"
    assert space.size == 2 * 2 * 2
    model = space.build(space.sample(0), num_classes=4, input_shape=(3, 8, 8))
    assert _forward(model, torch.randn(2, 3, 8, 8)).shape == (2, 4)
    assert load_space(space) is space


@pytest.mark.parametrize(("source", "match"), [
    ("X = 1\n", "SPACE"),
    ("SPACE = 'nb201'\n", "SPACE"),
    ("raise RuntimeError('boom')\n", "RuntimeError: boom"),
    ("def broken(:\n", "SyntaxError"),
])
def test_bad_space_file_raises_space_error(tmp_path: Path, source: str, match: str) -> None:
    path = tmp_path / "bad_space.py"
    path.write_text(source)
    with pytest.raises(SpaceError, match=match):
        load_space(str(path))


def test_missing_space_file_raises_space_error(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="not found"):
        load_space(str(tmp_path / "nowhere.py"))


def test_unknown_builtin_space_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError) as err:
        load_space("nb2O1")
    for name in SPACES:
        assert name in str(err.value)
    assert load_space("nb201") is load_space("nb201")
