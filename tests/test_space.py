"""The search-space DSL: sizes, structure, encodings, graphs and NAS-Bench-201 strings."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasbench import list_spaces, load_space
from nasbench.errors import GenomeError, SpaceError
from nasbench.space import Block, Cell, CellSpace, Choice, MacroSpace, Stage

ROOT = Path(__file__).resolve().parents[1]
SPACES = list_spaces()
SEEDS = st.integers(0, 2**32 - 1)
NB201_STR = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|"
             "+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")


# -- sizes ------------------------------------------------------------------------------------
def test_builtin_spaces_are_registered() -> None:
    assert sorted(SPACES) == ["darts", "mobilenetv3", "nb201", "resnet"]


@pytest.mark.parametrize(("name", "size"), [
    ("nb201", 5**6),
    ("darts", ((1 * 49) * (3 * 49) * (6 * 49) * (10 * 49)) ** 2),
    ("resnet", 2 * (3 * (2 + 4 + 8)) ** 3),
    ("mobilenetv3", 3 * sum(9**d for d in (2, 3, 4)) ** 5),
])
def test_builtin_space_sizes_are_exact(name: str, size: int) -> None:
    assert load_space(name).size == size


def test_nb201_size_is_15625() -> None:
    assert load_space("nb201").size == 15625


def test_size_equals_brute_force_enumeration(tiny_space: MacroSpace) -> None:
    # Every full assignment of every decision, canonicalised: inactive decisions drop out.
    labels = [d.label for d in tiny_space.decisions]
    distinct = {tiny_space.genome(dict(zip(labels, combo)))
                for combo in itertools.product(*(d.values for d in tiny_space.decisions))}
    assert len(distinct) == tiny_space.size == 2 * 2 * (5 + 5 * 5) * 2


def test_enumerate_yields_every_genome_once(tiny_space: MacroSpace) -> None:
    genomes = list(tiny_space.enumerate())
    assert len(genomes) == len(set(genomes)) == tiny_space.size
    assert all(tiny_space.validate(g) == g for g in genomes)
    with pytest.raises(GenomeError):
        next(load_space("darts").enumerate())


def test_fill_keeps_given_values_and_samples_the_rest(tiny_space: MacroSpace) -> None:
    genome = tiny_space.fill({"a.depth": 2, "a.b1.op": "mbconv", "stem.width": 8}, seed=3)
    assert (genome["a.depth"], genome["a.b1.op"], genome["stem.width"]) == (2, "mbconv", 8)
    assert tiny_space.validate(genome) == genome
    assert tiny_space.fill({"a.depth": 2}, seed=3) == tiny_space.fill({"a.depth": 2}, seed=3)
    assert "a.b1.op" not in tiny_space.fill({"a.depth": 1, "a.b1.op": "mbconv"})
    with pytest.raises(GenomeError):
        tiny_space.fill({"a.depth": 5})


def test_size_of_cell_space_by_enumeration() -> None:
    space = CellSpace("mini", [Cell("normal", ["skip", "max_pool_3x3"], nodes=2, inputs=2),
                               Cell("reduce", ["skip"], nodes=1, inputs=2)], skeleton="darts")
    distinct = {space.from_vector(v) for v in itertools.product(
        *(range(len(d.values)) for d in space.decisions))}
    # normal: node 2 has 1 input pair, node 3 has 3; 2 ops per edge; reduce: 1 pair, 1 op.
    assert len(distinct) == space.size == (1 * 4) * (3 * 4)


# -- the DSL ----------------------------------------------------------------------------------
def test_users_own_space_end_to_end() -> None:
    import torch

    space = MacroSpace(
        "my_space",
        stages=[
            Stage("s1", Block("mbconv", kernel_size=Choice([3, 5]), expansion=Choice([3, 6])),
                  width=Choice([16, 24]), depth=Choice([1, 2]), stride=2),
            Stage("s2", Block.choice(["resnet_basic", "conv_3x3"]), width=32, depth=Choice([1, 2]),
                  stride=2),
        ],
    )
    genome = space.sample(seed=0)
    model = space.build(genome, num_classes=10, input_shape=(3, 16, 16))
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    assert space.load_genome(genome.to_json()) == genome


def test_op_specific_params_are_active_only_with_their_op(tiny_space: MacroSpace) -> None:
    base = {"stem.width": 4, "a.width": 4, "a.depth": 1, "b.b0.kernel_size": 3}
    conv = tiny_space.genome({**base, "a.b0.op": "conv_3x3"})
    mb = tiny_space.genome({**base, "a.b0.op": "mbconv", "a.b0.mbconv.kernel_size": 5,
                            "a.b0.mbconv.expansion": 3})
    assert "a.b0.mbconv.kernel_size" not in conv
    assert mb["a.b0.mbconv.kernel_size"] == 5
    block = tiny_space.freeze(mb)["blocks"][0]
    assert (block["op"], block["params"]) == ("mbconv", {"kernel_size": 5, "expansion": 3})
    with pytest.raises(GenomeError) as err:
        tiny_space.genome({**base, "a.b0.op": "mbconv"})
    assert err.value.path.startswith("a.b0.mbconv.")


def test_decision_kinds_and_order_are_inferred(tiny_space: MacroSpace) -> None:
    kinds = {d.label: (d.kind, d.ordered) for d in tiny_space.decisions}
    assert kinds["a.width"] == ("width", True)
    assert kinds["a.depth"] == ("depth", True)
    assert kinds["a.b0.op"] == ("op", False)
    assert kinds["a.b0.mbconv.kernel_size"] == ("kernel", True)
    assert kinds["a.b0.mbconv.expansion"] == ("expansion", True)
    assert load_space("darts").decision("normal.n2.inputs").kind == "connection"
    assert load_space("mobilenetv3").decision("width_mult").kind == "width"


def test_import_space_does_not_import_torch() -> None:
    code = ("import sys, nasbench.space, nasbench\n"
            "space = nasbench.load_space('mobilenetv3'); space.mutate(space.sample(0), 1)\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""}, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("make", [
    lambda: Choice([]),
    lambda: Choice([1, 1]),
    lambda: Choice([[1]]),
    lambda: Choice([1, 2], kind="colour"),
    lambda: Choice([1, 1.0]),  # equal numbers: one genome value, two vector indices
    lambda: Choice([1.0, float("nan")]),  # never validates, not JSON
    lambda: Stage("s", Block("conv_3x3"), width=8, depth=0),
    lambda: Stage("s", Block("conv_3x3"), width=Choice([8, 0])),
    lambda: Stage("s", Block("conv_3x3"), width=8, stride=3),
    lambda: Stage("s.x", Block("conv_3x3"), width=8),
    lambda: Block("conv.3x3"),
    lambda: Block.choice([]),
    lambda: MacroSpace("m", []),
    lambda: MacroSpace("m", [Stage("s", Block("conv_3x3"), 8), Stage("s", Block("conv_3x3"), 8)]),
    lambda: MacroSpace("m", [Stage("head", Block("conv_3x3"), 8)]),
    lambda: MacroSpace("bad name", [Stage("s", Block("conv_3x3"), 8)]),
    lambda: CellSpace("c", [Cell("cell", ["skip"], nodes=4)], skeleton="nasnet"),
    lambda: CellSpace("c", [Cell("cell", ["skip"], nodes=4)], skeleton="nb201", width=3),
    lambda: CellSpace("c", [Cell("a", ["skip"], 4), Cell("b", ["skip"], 4)], skeleton="nb201"),
    lambda: CellSpace("c", [Cell("normal", ["skip"], 4, inputs=2)], skeleton="darts"),
    lambda: Cell("cell", [], nodes=4),
    lambda: Cell("cell", ["skip"], nodes=1),
    lambda: Cell("cell", ["skip"], nodes=4, inputs=3),
], ids=[
    "empty_choice", "duplicate_values", "list_value", "unknown_kind", "int_equals_float",
    "nan_value", "depth_zero", "width_zero", "stride_3", "dotted_stage",
    "dotted_op", "empty_block_choice", "no_stages", "duplicate_stages", "reserved_stage",
    "bad_space_name", "unknown_skeleton", "unknown_setting", "nb201_two_cells", "darts_one_cell",
    "cell_no_ops", "cell_one_node", "cell_three_inputs",
])
def test_malformed_space_raises_space_error(make) -> None:
    with pytest.raises(SpaceError):
        make()


def test_space_hash_tracks_structure() -> None:
    def make(widths: list[int], name: str = "h") -> MacroSpace:
        return MacroSpace(name, [Stage("s", Block("conv_3x3"), width=Choice(widths))])

    assert make([8, 16]).hash == make([8, 16]).hash
    assert make([8, 16]).hash != make([8, 32]).hash
    assert make([8, 16]).hash != make([8, 16], name="other").hash
    stride = MacroSpace("h", [Stage("s", Block("conv_3x3"), width=Choice([8, 16]), stride=2)])
    assert stride.hash != make([8, 16]).hash
    ops = MacroSpace("h", [Stage("s", Block("conv_5x5"), width=Choice([8, 16]))])
    assert ops.hash != make([8, 16]).hash


# -- encodings --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SPACES)
@settings(max_examples=40, deadline=None, derandomize=True)
@given(seed=SEEDS)
def test_vector_round_trip(name: str, seed: int) -> None:
    space = load_space(name)
    genome = space.sample(seed)
    vec = space.to_vector(genome)
    assert len(vec) == len(space.decisions)
    assert [i == -1 for i in vec] == [d.label not in genome for d in space.decisions]
    assert space.from_vector(vec) == genome
    # Entries of inactive decisions are ignored.
    other = [0 if i == -1 else i for i in vec]
    assert space.from_vector(other) == genome


@pytest.mark.parametrize(("vector", "label"), [([0] * 5, ""), ([0] * 5 + [5], "cell.e2-3"),
                                               ([-1] + [0] * 5, "cell.e0-1")])
def test_bad_vector_raises(vector: list[int], label: str) -> None:
    with pytest.raises(GenomeError) as err:
        load_space("nb201").from_vector(vector)
    assert err.value.path == label


@pytest.mark.parametrize("name", SPACES)
@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=SEEDS)
def test_features_are_one_hot_per_active_decision(name: str, seed: int) -> None:
    space = load_space(name)
    genome = space.sample(seed)
    feats = space.to_features(genome)
    assert feats.shape == (space.feature_size,) and feats.dtype == np.float32
    offset = 0
    for d in space.decisions:
        part = feats[offset:offset + len(d.values)]
        if d.label in genome:
            assert part.sum() == 1 and d.values[int(part.argmax())] == genome[d.label]
        else:
            assert not part.any()
        offset += len(d.values)
    assert offset == space.feature_size


@pytest.mark.parametrize("name", SPACES)
def test_optuna_distributions_cover_active_decisions(name: str) -> None:
    space = load_space(name)
    genome = space.sample(3)
    dists = space.optuna_distributions(genome)
    assert set(dists) == set(genome)
    for label, dist in dists.items():
        assert tuple(dist.choices) == space.decision(label).values
        assert genome[label] in dist.choices
    assert set(space.optuna_distributions()) == {d.label for d in space.decisions}


@pytest.mark.parametrize(("name", "depth_label"), [("resnet", "s2.depth"),
                                                    ("mobilenetv3", "s3.depth")])
def test_suggest_with_optuna_gives_valid_conditional_genomes(name: str, depth_label: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    genomes = []

    def objective(trial: optuna.Trial) -> float:
        genome = space.suggest(trial)
        assert space.validate(genome) == genome
        assert trial.params == genome.values
        genomes.append(genome)
        return 0.0

    study.optimize(objective, n_trials=25)
    depths = {g[depth_label] for g in genomes}
    assert len(depths) > 1  # conditional decisions come and go
    stage = depth_label.split(".")[0]
    for g in genomes:
        blocks = {k.split(".")[1] for k in g if k.startswith(f"{stage}.b")}
        assert blocks == {f"b{i}" for i in range(g[depth_label])}


# -- graphs -----------------------------------------------------------------------------------
def test_nb201_graph_edges_carry_ops_and_skip_zero_edges() -> None:
    space = load_space("nb201")
    genome = space.from_arch_str("|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|avg_pool_3x3~1|none~2|")
    g = space.to_graph(genome)
    assert set(g.nodes) == {0, 1, 2, 3}
    assert g.nodes[0]["role"] == "input" and g.nodes[3]["role"] == "output"
    assert {(s, d): a["op"] for s, d, a in g.edges(data=True)} == {
        (0, 2): "nor_conv_3x3", (0, 3): "skip_connect", (1, 3): "avg_pool_3x3"}
    all_none = space.genome({d.label: "none" for d in space.decisions})
    assert space.to_graph(all_none).number_of_edges() == 0


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=SEEDS)
def test_darts_graph_nodes_have_two_distinct_inputs(seed: int) -> None:
    space = load_space("darts")
    genome = space.sample(seed)
    for cell in ("normal", "reduce"):
        g = space.to_graph(genome, cell)
        assert [g.nodes[i]["role"] for i in (0, 1)] == ["input", "input"]
        for j in range(2, 6):
            preds = list(g.predecessors(j))
            assert len(preds) == 2 == len(set(preds)) and all(p < j for p in preds)
            src = sorted(int(s) for s in genome[f"{cell}.n{j}.inputs"].split("+"))
            assert sorted(preds) == src
        assert sorted(g.predecessors(6)) == [2, 3, 4, 5] and g.nodes[6]["role"] == "output"
    with pytest.raises(SpaceError):
        space.to_graph(genome, "nope")


@pytest.mark.parametrize("name", ["resnet", "mobilenetv3"])
def test_macro_graph_is_a_chain(name: str) -> None:
    space = load_space(name)
    genome = space.sample(11)
    arch = space.freeze(genome)
    g = space.to_graph(genome)
    order = ["input"]
    while g.out_degree(order[-1]):
        (nxt,) = g.successors(order[-1])
        order.append(nxt)
    assert order[-1] == "output" and len(order) == g.number_of_nodes()
    layers = [g.nodes[n] for n in order[1:-1]]
    expected = [arch["stem"], *arch["blocks"]] + ([arch["head"]] if arch["head"] else [])
    assert [(n["op"], n["channels"], n["stride"]) for n in layers] == [
        (b["op"], b["C_out"], b["stride"]) for b in expected]


def test_freeze_respects_depths_and_width_multiplier() -> None:
    space = load_space("mobilenetv3")
    genome = space.sample(5)
    values = {**genome.values, "width_mult": 0.75, "s1.depth": 2}
    values.update({k: v for k, v in space.sample(6).values.items() if k not in values})
    genome = space.genome(values)
    blocks = space.freeze(genome)["blocks"]
    s1 = [b for b in blocks if b["stage"] == "s1"]
    assert len(s1) == 2 and [b["stride"] for b in s1] == [2, 1]
    assert {b["C_out"] for b in s1} == {24}  # round_channels(24 * 0.75) keeps >= 90%
    assert len(blocks) == 1 + sum(genome[f"s{i}.depth"] for i in range(1, 6))


# -- NAS-Bench-201 strings --------------------------------------------------------------------
def test_known_nb201_string_parses() -> None:
    space = load_space("nb201")
    genome = space.from_arch_str(NB201_STR)
    assert genome.values == {
        "cell.e0-1": "nor_conv_3x3", "cell.e0-2": "nor_conv_3x3", "cell.e1-2": "avg_pool_3x3",
        "cell.e0-3": "skip_connect", "cell.e1-3": "nor_conv_3x3", "cell.e2-3": "skip_connect"}
    assert space.to_arch_str(genome) == NB201_STR


@settings(max_examples=40, deadline=None, derandomize=True)
@given(seed=SEEDS)
def test_nb201_string_round_trip(seed: int) -> None:
    space = load_space("nb201")
    genome = space.sample(seed)
    assert space.from_arch_str(space.to_arch_str(genome)) == genome


def test_all_nb201_genomes_have_distinct_strings() -> None:
    space = load_space("nb201")
    strings = {space.to_arch_str(space.from_vector(v))
               for v in itertools.product(range(5), repeat=6)}
    assert len(strings) == 15625


@pytest.mark.parametrize("text", [
    "",
    "|nor_conv_3x3~0|",
    "|nor_conv_3x3~0|+|none~0|none~1|",
    NB201_STR + "+|none~0|",
    NB201_STR.replace("avg_pool_3x3", "conv_9x9"),
    NB201_STR.replace("avg_pool_3x3~1", "avg_pool_3x3~2"),
    NB201_STR.replace("avg_pool_3x3~1", "avg_pool_3x3~0"),  # same source twice
    NB201_STR.replace("avg_pool_3x3~1", "avg_pool_3x3"),
    NB201_STR.replace("avg_pool_3x3~1", "avg_pool_3x3~x"),
    NB201_STR.replace("avg_pool_3x3~1", "avg_pool_3x3~²"),  # a digit for isdigit(), not int()
    NB201_STR[1:],
    NB201_STR.replace("|+|", "+"),
    NB201_STR.replace("|skip_connect~2|", "|"),
])
def test_malformed_nb201_string_raises(text: str) -> None:
    with pytest.raises(GenomeError):
        load_space("nb201").from_arch_str(text)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(text=st.text(alphabet="|+~0123²_abcdeknorvx", max_size=60))
def test_any_text_parses_or_raises_genome_error(text: str) -> None:
    space = load_space("nb201")
    try:
        genome = space.from_arch_str(text)
    except GenomeError:
        return
    assert space.validate(genome) == genome


def test_arch_strings_need_a_single_cell_space() -> None:
    space = load_space("darts")
    with pytest.raises(SpaceError):
        space.to_arch_str(space.sample(0))
    with pytest.raises(SpaceError):
        space.from_arch_str(NB201_STR)
