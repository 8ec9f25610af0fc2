"""Genomes: canonical JSON, hashes, validation, seeded sampling, mutation and crossover."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasbench import list_spaces, load_space
from nasbench.errors import GenomeError
from nasbench.space import GENOME_FORMAT, Block, Cell, CellSpace, Choice, Genome, MacroSpace, Stage
from nasbench.space._space import Space

ROOT = Path(__file__).resolve().parents[1]
SPACES = list_spaces()
SEEDS = st.integers(0, 2**32 - 1)
PROPERTY = settings(max_examples=30, deadline=None, derandomize=True)


def _kind_cases() -> list[tuple[str, str]]:
    return sorted({(name, d.kind) for name in SPACES for d in load_space(name).decisions
                   if len(d.values) > 1})


def _changed(a: Genome, b: Genome) -> list[str]:
    return [k for k in a if k in b and a[k] != b[k]]


# -- canonical JSON and hashes ----------------------------------------------------------------
@pytest.mark.parametrize("name", SPACES)
@PROPERTY
@given(seed=SEEDS)
def test_json_round_trip_is_identical(name: str, seed: int) -> None:
    space = load_space(name)
    genome = space.sample(seed)
    text = genome.to_json()
    again = space.load_genome(text)
    assert again == genome and again.to_json() == text and again.hash == genome.hash
    assert space.load_genome(json.loads(text)) == genome
    assert space.load_genome(json.dumps(json.loads(text), indent=4)) == genome
    data = json.loads(text)
    assert data["format"] == GENOME_FORMAT and data["space"] == name
    assert data["space_hash"] == space.hash


def test_hashes_are_equal_across_processes() -> None:
    code = ("from nasbench import list_spaces, load_space\n"
            "for n in list_spaces():\n"
            "    s = load_space(n); g = s.sample(7)\n"
            "    print(n, s.hash, g.hash, g.to_json())\n")
    outputs = []
    for hashseed in ("1", "2"):
        env = {"PYTHONPATH": str(ROOT), "PYTHONHASHSEED": hashseed, "PATH": ""}
        outputs.append(subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                                      capture_output=True, text=True, check=True).stdout)
    here = "".join(f"{n} {load_space(n).hash} {load_space(n).sample(7).hash} "
                   f"{load_space(n).sample(7).to_json()}\n" for n in SPACES)
    assert outputs[0] == outputs[1] == here


def test_insertion_order_does_not_matter() -> None:
    space = load_space("resnet")
    values = space.sample(1).values
    backwards = dict(reversed(list(values.items())))
    a, b = space.genome(values), space.genome(backwards)
    assert a == b and a.hash == b.hash and a.to_json() == b.to_json() and hash(a) == hash(b)


def test_inactive_decisions_are_dropped() -> None:
    space = load_space("resnet")
    values = {**space.sample(2).values, "s1.depth": 1}
    values.update({"s1.b1.op": "resnet_basic", "s1.b2.op": "resnet_bottleneck"})
    genome = space.genome(values)
    assert "s1.b1.op" not in genome and "s1.b2.op" not in genome
    trimmed = {k: v for k, v in values.items() if k not in ("s1.b1.op", "s1.b2.op")}
    assert genome == space.genome(trimmed) and genome.hash == space.genome(trimmed).hash
    # A stored genome carrying inactive values loads to the canonical one.
    stored = Genome(space.name, space.hash, values)
    assert space.load_genome(stored.to_json()) == genome


def test_numbers_are_canonical_but_bools_are_not_numbers() -> None:
    space = load_space("mobilenetv3")
    values = {**space.sample(0).values, "width_mult": 1.0}
    as_int = space.genome({**values, "width_mult": 1})
    assert as_int == space.genome(values) and isinstance(as_int["width_mult"], float)
    with pytest.raises(GenomeError) as err:
        space.genome({**values, "s1.depth": True})
    assert err.value.path == "s1.depth"


def test_genome_is_read_only_mapping() -> None:
    genome = load_space("nb201").sample(0)
    copy = genome.values
    copy["cell.e0-1"] = "changed"
    assert genome["cell.e0-1"] != "changed"
    with pytest.raises(TypeError):
        genome["cell.e0-1"] = "none"  # type: ignore[index]


def test_bool_choices_round_trip_and_stay_bools() -> None:
    block = Block("mbconv", kernel_size=3, se=Choice([False, True]))
    space = MacroSpace("flags", [Stage("s", block, width=8)])
    on = space.genome({"s.b0.se": True})
    assert space.load_genome(on.to_json())["s.b0.se"] is True
    assert space.to_vector(on) == [1] and space.decision("s.b0.se").ordered is False
    with pytest.raises(GenomeError):
        space.genome({"s.b0.se": 1})


# -- validation errors ------------------------------------------------------------------------
def test_unknown_decision_names_label_and_hints() -> None:
    space = load_space("nb201")
    values = space.sample(0).values
    with pytest.raises(GenomeError) as err:
        space.genome({**values, "cell.e0-4": "none"})
    assert err.value.path == "cell.e0-4"
    assert "did you mean" in str(err.value) and "cell.e0-1" in str(err.value)
    with pytest.raises(GenomeError) as far:
        space.genome({**values, "zzzzzz": "none"})
    assert far.value.path == "zzzzzz" and "did you mean" not in str(far.value)
    with pytest.raises(GenomeError) as lookup:
        space.decision("cell.e1-2x")
    assert lookup.value.path == "cell.e1-2x" and "cell.e1-2" in str(lookup.value)


def test_each_validation_error_has_its_own_message() -> None:
    space = load_space("nb201")
    genome = space.sample(0)
    messages = {}
    with pytest.raises(GenomeError) as err:
        space.genome({**genome.values, "cell.e0-1": "conv_9x9"})
    assert err.value.path == "cell.e0-1" and "nor_conv_3x3" in str(err.value)
    messages["range"] = str(err.value)
    with pytest.raises(GenomeError) as err:
        space.genome({k: v for k, v in genome.items() if k != "cell.e2-3"})
    assert err.value.path == "cell.e2-3"
    messages["missing"] = str(err.value)
    with pytest.raises(GenomeError) as err:
        space.validate(load_space("resnet").sample(0))
    assert "resnet" in str(err.value) and "nb201" in str(err.value)
    messages["space"] = str(err.value)
    other_version = CellSpace("nb201", [Cell("cell", ["none", "skip_connect"], nodes=4)],
                              skeleton="nb201")
    assert other_version.hash != space.hash
    with pytest.raises(GenomeError) as err:
        other_version.load_genome(space.genome({d.label: "none" for d in space.decisions}).to_json())
    assert "version" in str(err.value) and space.hash in str(err.value)
    messages["version"] = str(err.value)
    words = {"range": "range", "missing": "missing", "space": "space", "version": "version"}
    assert all(words[k] in m for k, m in messages.items())
    assert len({m.split(":")[-1] for m in messages.values()}) == 4


@pytest.mark.parametrize("use", [
    lambda s, g: s.mutate(g, 0),
    lambda s, g: s.crossover(g, g, 0),
    lambda s, g: s.crossover(s.sample(0), g, 0, mode="stage"),
    lambda s, g: s.to_vector(g),
    lambda s, g: s.to_features(g),
    lambda s, g: s.optuna_distributions(g),
], ids=["mutate", "crossover", "stage_crossover", "to_vector", "to_features", "optuna"])
def test_foreign_genomes_are_refused_everywhere(use) -> None:
    space = load_space("resnet")
    with pytest.raises(GenomeError):
        use(space, load_space("nb201").sample(0))


@pytest.mark.parametrize("text", [
    "{not json",
    "[1, 2]",
    "null",
    '{"format": "nasbench.genome/0", "space": "nb201", "space_hash": "x", "values": {}}',
    '{"space": "nb201", "space_hash": "x", "values": {}}',
    f'{{"format": "{GENOME_FORMAT}", "space": "nb201", "values": {{}}}}',
    f'{{"format": "{GENOME_FORMAT}", "space": "nb201", "space_hash": "x", "values": [1]}}',
    f'{{"format": "{GENOME_FORMAT}", "space": "nb201", "space_hash": "x", "values": {{"a": [1]}}}}',
])
def test_malformed_genome_json_raises(text: str) -> None:
    with pytest.raises(GenomeError):
        load_space("nb201").load_genome(text)


def test_wrong_format_tag_is_named_in_the_message() -> None:
    data = load_space("nb201").sample(0).to_dict()
    data["format"] = "something/9"
    with pytest.raises(GenomeError, match="something/9"):
        load_space("nb201").load_genome(data)


# -- sampling ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SPACES)
def test_sampling_is_seeded_and_valid(name: str) -> None:
    space = load_space(name)
    genomes = [space.sample(seed) for seed in range(12)]
    assert genomes == [space.sample(seed) for seed in range(12)]
    assert space.sample(random.Random(5)) == space.sample(5)
    assert len(set(genomes)) == len(genomes)
    for g in genomes:
        assert space.validate(g) == g
        assert {d.label for d in space.active_decisions(g)} == set(g)


def test_sampling_leaves_the_global_rng_alone(tiny_space: MacroSpace) -> None:
    random.seed(1234)
    expected = random.random()
    random.seed(1234)
    tiny_space.sample(3)
    tiny_space.mutate(tiny_space.sample(4), seed=5)
    tiny_space.crossover(tiny_space.sample(6), tiny_space.sample(7), seed=8)
    assert random.random() == expected


def test_sampling_reaches_every_depth() -> None:
    space = load_space("resnet")
    depths = {space.sample(seed)["s3.depth"] for seed in range(60)}
    assert depths == {1, 2, 3}


# -- mutation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SPACES)
@PROPERTY
@given(seed=SEEDS)
def test_mutation_changes_one_decision_validly(name: str, seed: int) -> None:
    space = load_space(name)
    genome = space.sample(seed)
    child = space.mutate(genome, seed + 1)
    assert space.validate(child) == child and child != genome
    changed = _changed(genome, child)
    assert len(changed) == 1
    d = space.decision(changed[0])
    if d.ordered:
        assert abs(d.index(child[d.label]) - d.index(genome[d.label])) == 1
    if set(child) != set(genome):  # only a decision with children changes the active set
        assert d.children
    assert space.mutate(genome, seed + 1) == child  # seeded


@pytest.mark.parametrize(("name", "kind"), _kind_cases())
def test_mutation_restricted_to_a_kind(name: str, kind: str) -> None:
    space = load_space(name)
    for seed in range(15):
        genome = space.sample(seed)
        child = space.mutate(genome, seed, kinds=[kind])
        (label,) = _changed(genome, child)
        assert space.decision(label).kind == kind
        assert space.validate(child) == child


def test_mutation_of_an_absent_kind_raises() -> None:
    space = load_space("nb201")
    with pytest.raises(GenomeError, match="depth"):
        space.mutate(space.sample(0), 0, kinds=["depth"])


@pytest.mark.parametrize("name", ["resnet", "mobilenetv3"])
def test_depth_mutation_activates_and_deactivates_blocks(name: str) -> None:
    space = load_space(name)
    stages = [lbl.split(".")[0] for lbl in (d.label for d in space.decisions) if lbl.endswith(".depth")]
    grew = shrank = 0
    for seed in range(30):
        genome = space.sample(seed)
        child = space.mutate(genome, seed, kinds=["depth"])
        (label,) = _changed(genome, child)
        assert set(child) != set(genome)
        grew += child[label] > genome[label]
        shrank += child[label] < genome[label]
        for s in stages:
            blocks = {k.split(".")[1] for k in child if k.startswith(f"{s}.b")}
            assert blocks == {f"b{i}" for i in range(child[f"{s}.depth"])}
    assert grew and shrank


def test_ordered_decisions_step_to_a_neighbour() -> None:
    width = Choice([8, 16, 24, 32, 40, 48])
    space = MacroSpace("steps", stages=[Stage("s", Block("conv_3x3"), width=width)])
    genome = space.genome({"s.width": 24})
    seen = {space.mutate(genome, seed)["s.width"] for seed in range(30)}
    assert seen == {16, 32}
    unordered = CellSpace("jumps", [Cell("cell", ["none", "skip", "avg_pool_3x3", "max_pool_3x3"],
                                         nodes=2)], skeleton="nb201")
    start = unordered.genome({"cell.e0-1": "none"})
    assert {unordered.mutate(start, s)["cell.e0-1"] for s in range(40)} == {
        "skip", "avg_pool_3x3", "max_pool_3x3"}


# -- crossover --------------------------------------------------------------------------------
def _check_provenance(space: Space, a: Genome, b: Genome, child: Genome) -> None:
    for label, value in child.items():
        if label in a and label in b:
            assert value in (a[label], b[label])
        elif label in a:
            assert value == a[label]
        elif label in b:
            assert value == b[label]


@pytest.mark.parametrize("name", SPACES)
@PROPERTY
@given(seed=SEEDS)
def test_uniform_crossover_is_valid_and_inherits(name: str, seed: int) -> None:
    space = load_space(name)
    a, b = space.sample(seed), space.sample(seed + 1)
    child = space.crossover(a, b, seed + 2)
    assert space.validate(child) == child
    _check_provenance(space, a, b, child)
    assert space.crossover(a, b, seed + 2) == child
    assert space.crossover(a, a, seed) == a


@pytest.mark.parametrize("name", SPACES)
@PROPERTY
@given(seed=SEEDS)
def test_stage_crossover_cuts_between_groups(name: str, seed: int) -> None:
    space = load_space(name)
    a, b = space.sample(seed), space.sample(seed + 1)
    child = space.crossover(a, b, seed + 2, mode="stage")
    assert space.validate(child) == child
    _check_provenance(space, a, b, child)
    group = {d.label: space.groups.index(d.group) for d in space.decisions}

    def consistent(cut: int) -> bool:
        return all(child[k] == (a if group[k] < cut else b)[k] for k in child
                   if k in (a if group[k] < cut else b))

    if len(space.groups) > 1:
        assert any(consistent(cut) for cut in range(1, len(space.groups)))
    assert space.crossover(a, a, seed, mode="stage") == a


@PROPERTY
@given(seed=SEEDS)
def test_operators_on_a_user_space_with_op_specific_params(tiny_space: MacroSpace, seed: int) -> None:
    a, b = tiny_space.sample(seed), tiny_space.sample(seed + 1)
    for child in (tiny_space.mutate(a, seed), tiny_space.mutate(a, seed, kinds=["op"])):
        assert tiny_space.validate(child) == child and len(_changed(a, child)) == 1
    op_child = tiny_space.mutate(a, seed, kinds=["op"])
    (label,) = _changed(a, op_child)
    prefix = label.rsplit(".", 1)[0]
    own = {k for k in op_child if k.startswith(f"{prefix}.mbconv.")}
    assert bool(own) == (op_child[label] == "mbconv")
    for mode in ("uniform", "stage"):
        child = tiny_space.crossover(a, b, seed, mode=mode)
        assert tiny_space.validate(child) == child
        _check_provenance(tiny_space, a, b, child)


def test_unknown_crossover_mode_raises() -> None:
    space = load_space("resnet")
    with pytest.raises(GenomeError, match="mode"):
        space.crossover(space.sample(0), space.sample(1), 0, mode="half")
