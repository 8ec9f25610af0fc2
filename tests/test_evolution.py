"""Tests for the evolutionary strategy: random start, mutation, crossover, aging, tournaments,
failures, determinism, parallel asks, replay, the multi-objective mode, and search quality on NB201."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import pytest

from nasbench._spaces import load_space
from nasbench.errors import ConfigError
from nasbench.objectives import Evaluation, Objectives
from nasbench.strategies import EvolutionStrategy, RandomStrategy, create_strategy
from nasbench.strategies._pareto import nondominated_ranks

ACC = Objectives.parse("accuracy")
ACC_PARAMS = Objectives.parse("accuracy,params")
FAILED = Evaluation(None, {}, failure="out of memory")
NB201_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nb201"



@pytest.fixture(scope="module")
def nb201():
    return load_space("nb201")


@pytest.fixture(scope="module")
def resnet():
    return load_space("resnet")


def score(genome) -> float:  # noqa: ANN001
    """A deterministic 'accuracy' in [0, 1) from the genome."""
    return int(genome.hash[:8], 16) / 16**8


def ok(*values: float) -> Evaluation:
    return Evaluation(tuple(values), {"val_accuracy": values[0]})


def diff(a, b) -> int:  # noqa: ANN001
    """Decisions set differently in two genomes (a decision active in only one counts)."""
    return sum(a.get(k) != b.get(k) for k in set(a) | set(b))


def one_change(child, parent) -> bool:  # noqa: ANN001
    """Whether child is one mutation of parent: exactly one shared decision differs (a depth change may
    add or drop the decisions it (de)activates)."""
    return sum(child[k] != parent[k] for k in set(child) & set(parent)) == 1


def members(strategy) -> list:  # noqa: ANN001
    return [g for g, _ in strategy.population]


def evo(space, objectives=ACC, seed=0, **options) -> EvolutionStrategy:  # noqa: ANN001
    return EvolutionStrategy(space, objectives, seed=seed, **options)


# -- the random start and mutation ---------------------------------------------------------


@pytest.mark.parametrize("space_name", ["nb201", "resnet"])
def test_population_starts_random_then_children_are_mutants(space_name):
    space = load_space(space_name)
    p = 8
    s = evo(space, population_size=p, tournament_size=3, seed=3)
    first = []
    for _ in range(p):
        g = s.ask()
        assert space.validate(g) == g
        first.append(g)
        s.tell(g, ok(score(g)))
    assert len({g.hash for g in first}) == p
    if space_name == "nb201":  # 15,625 cells: random samples are never one mutation apart
        assert all(diff(g, h) > 1 for i, g in enumerate(first) for h in first[:i])
    assert members(s) == first
    for k in range(40):
        pop = members(s)
        child = s.ask()
        assert space.validate(child) == child
        assert any(one_change(child, m) for m in pop)
        if k == 0 and space_name == "nb201":  # members far apart: the child is one edge from its parent only
            dists = sorted(diff(child, m) for m in pop)
            assert dists[0] == 1 < dists[1]
        s.tell(child, ok(score(child)))


@pytest.mark.parametrize("space_name", ["nb201", "resnet"])
@pytest.mark.parametrize("objectives", [ACC, ACC_PARAMS], ids=["single", "multi"])
def test_tournament_over_the_whole_population_always_picks_the_best(space_name, objectives):
    space = load_space(space_name)
    p = 6
    s = evo(space, objectives, population_size=p, tournament_size=p, seed=1)
    genomes = [s.ask() for _ in range(p)]
    best = genomes[2]
    for i, g in enumerate(genomes):  # the best dominates every other member in both objectives
        values = (0.9, 100.0) if g is best else (0.5 + 0.01 * i, 200.0 + i)
        s.tell(g, ok(*values[: len(objectives.names)]))
    for _ in range(25):
        child = s.ask()
        assert space.validate(child) == child
        assert child != best
        assert one_change(child, best)
        s.tell(child, FAILED)  # keeps the population as it is
    assert members(s) == genomes


def test_tournament_picks_the_best_of_the_drawn_members(nb201):
    # P=4, S=3: the worst member can never win a tournament; the best wins whenever drawn (3/4).
    s = evo(nb201, population_size=4, tournament_size=3, seed=5)
    genomes = [s.ask() for _ in range(4)]
    for g, v in zip(genomes, (0.3, 0.9, 0.1, 0.5)):
        s.tell(g, ok(v))
    worst, best = genomes[2], genomes[1]
    parents = []
    for _ in range(60):
        child = s.ask()
        (parent,) = [m for m in genomes if diff(child, m) == 1]
        parents.append(parent)
        s.tell(child, FAILED)
    assert worst not in parents
    assert parents.count(best) >= 0.6 * len(parents)


# -- aging and failures --------------------------------------------------------------------


def test_aging_keeps_at_most_p_members_and_the_oldest_leaves_first(nb201):
    p = 5
    s = evo(nb201, population_size=p, tournament_size=2, seed=7)
    told_ok = []
    for k in range(40):
        g = s.ask()
        if k % 7 == 3:
            s.tell(g, FAILED)
        else:
            s.tell(g, ok(score(g)))
            told_ok.append(g)
        assert len(s.population) <= p
        assert members(s) == told_ok[-p:]  # oldest first; the best does not survive its age
    values = [v for _, v in s.population]
    assert values == [(score(g),) for g in told_ok[-p:]]


def test_failed_evaluations_never_join_the_population(nb201):
    s = evo(nb201, population_size=4, tournament_size=2, seed=2)
    failed = set()
    for _ in range(30):
        g = s.ask()
        if score(g) < 0.5:  # the same genomes always fail
            s.tell(g, FAILED)
            failed.add(g.hash)
        else:
            s.tell(g, ok(score(g)))
        assert not failed & {m.hash for m in members(s)}
    assert failed and len(s.population) == 4
    # a run of failures while the population fills keeps asking random genomes
    t = evo(nb201, population_size=3, tournament_size=2, seed=2)
    for _ in range(10):
        t.tell(t.ask(), FAILED)
    assert t.population == []
    g = t.ask()
    assert nb201.validate(g) == g


# -- crossover ---------------------------------------------------------------------------


def _uniform_population(space, n, **options):  # noqa: ANN001
    """A strategy whose population is n cells, cell k having op k on every edge (values tell parents apart)."""
    ops = space.cells[0].op_values
    labels = [d.label for d in space.decisions]
    genomes = [space.genome({lab: ops[k] for lab in labels}) for k in range(n)]
    s = evo(space, population_size=n, **options)
    for k, g in enumerate(genomes):
        s.replay(g, ok(0.1 * (k + 1)))
    return s, genomes, set(ops[:n])


def _mixed_two_members(child, member_ops) -> bool:  # noqa: ANN001
    """Child is a real cross of two members: two member ops, each on >= 2 edges (no single mutation does that)."""
    ops = list(child.values.values())
    counts = [ops.count(op) for op in set(ops)]
    return set(ops) <= member_ops and len(counts) == 2 and min(counts) >= 2


def test_uniform_crossover_children_take_their_values_from_two_parents(nb201):
    s, genomes, member_ops = _uniform_population(nb201, 4, tournament_size=1, crossover_rate=1.0,
                                                 mutation_rate=0.0, seed=4)
    children = []
    for _ in range(60):
        child = s.ask()
        assert nb201.validate(child) == child
        ops = set(child.values.values())
        from_parents = ops <= member_ops and len(ops) <= 2
        mutant_of_a_parent = min(diff(child, m) for m in genomes) == 1  # a cross that gave a parent back
        assert from_parents or mutant_of_a_parent
        children.append(child)
        s.tell(child, FAILED)
    assert sum(_mixed_two_members(c, member_ops) for c in children) >= 0.4 * len(children)
    # without crossover no child mixes two members
    s, genomes, member_ops = _uniform_population(nb201, 4, tournament_size=1, crossover_rate=0.0, seed=4)
    for _ in range(60):
        child = s.ask()
        assert not _mixed_two_members(child, member_ops)
        assert min(diff(child, m) for m in genomes) == 1
        s.tell(child, FAILED)


def _stage_child_of(space, child, a, b) -> bool:  # noqa: ANN001
    """Whether child takes the groups before some cut from a and the rest from b (missing ones: either/random)."""
    for cut in range(1, len(space.groups)):
        first = set(space.groups[:cut])

        def fits(label: str, first: set = first) -> bool:
            primary, other = (a, b) if space.decision(label).group in first else (b, a)
            expected = primary.get(label, other.get(label))
            return expected is None or child[label] == expected

        if all(fits(label) for label in child):
            return True
    return False


def test_stage_crossover_cuts_between_stages(resnet):
    assert len(resnet.groups) == 4
    s = evo(resnet, population_size=4, tournament_size=1, crossover_rate=1.0, mutation_rate=0.0,
            crossover_mode="stage", seed=6)
    genomes = [s.ask() for _ in range(4)]
    for g in genomes:
        s.tell(g, ok(score(g)))
    real = 0
    for _ in range(60):
        child = s.ask()
        assert resnet.validate(child) == child
        pairs = [(a, b) for a in genomes for b in genomes if a != b and _stage_child_of(resnet, child, a, b)]
        mutants = [m for m in genomes if one_change(child, m)]  # a cross that gave a parent back, mutated
        assert pairs or mutants
        real += bool(pairs) and child not in genomes and not mutants
        s.tell(child, FAILED)
    assert real >= 0.3 * 60


# -- determinism, parallel asks, replay ----------------------------------------------------


def _run(space, seed, n=40, **options) -> list[str]:  # noqa: ANN001
    s = evo(space, seed=seed, **options)
    out = []
    for k in range(n):
        g = s.ask()
        s.tell(g, FAILED if k % 9 == 4 else ok(score(g)))
        out.append(g.hash)
    return out


@pytest.mark.parametrize("options", [{}, {"crossover_rate": 0.5, "mutation_rate": 0.5}])
def test_same_seed_same_asks_other_seed_other_asks(nb201, options):
    random.seed(1)
    a = _run(nb201, 11, population_size=6, tournament_size=3, **options)
    random.seed(2)  # the global RNG plays no part
    b = _run(nb201, 11, population_size=6, tournament_size=3, **options)
    c = _run(nb201, 12, population_size=6, tournament_size=3, **options)
    assert a == b
    assert a != c
    assert a[6:] != c[6:]  # the children differ too, not only the random start


def test_parallel_asks_before_any_tell_told_in_any_order(nb201):
    p = 5
    s = evo(nb201, population_size=p, tournament_size=2, seed=8)
    batch = [s.ask() for _ in range(8)]  # population empty: all random
    assert len({g.hash for g in batch}) == 8
    assert all(nb201.validate(g) == g for g in batch)
    assert all(diff(g, h) > 1 for i, g in enumerate(batch) for h in batch[:i])
    order = [5, 0, 7, 2, 6, 1, 3, 4]
    told_ok = []
    for i in order:
        if i == 7:
            s.tell(batch[i], FAILED)
        else:
            s.tell(batch[i], ok(score(batch[i])))
            told_ok.append(batch[i])
    assert members(s) == told_ok[-p:]
    # now full: a second batch are children, told in reverse order
    pop = members(s)
    second = [s.ask() for _ in range(6)]
    assert all(min(diff(c, m) for m in pop) == 1 for c in second)
    for c in reversed(second):
        s.tell(c, ok(score(c)))
    assert len(s.population) == p
    assert members(s) == ([*told_ok, *reversed(second)])[-p:]


def test_parallel_asks_while_filling_count_pending_random_genomes(nb201):
    # 3 told, 2 asked and pending: P=5 is reached by pending asks, so the next ask is a child.
    s = evo(nb201, population_size=5, tournament_size=2, seed=9)
    for _ in range(3):
        g = s.ask()
        s.tell(g, ok(score(g)))
    pending = [s.ask(), s.ask()]
    pop = members(s)
    child = s.ask()
    assert min(diff(child, m) for m in pop) == 1
    for g in pending:
        s.tell(g, ok(score(g)))
    assert len(s.population) == 5


@pytest.mark.parametrize("objectives", [ACC, ACC_PARAMS], ids=["single", "multi"])
def test_replaying_the_history_rebuilds_the_population(nb201, objectives):
    s = evo(nb201, objectives, population_size=6, tournament_size=3, crossover_rate=0.3, seed=13)
    history = []
    for k in range(50):
        g = s.ask()
        ev = FAILED if k % 5 == 2 else ok(*(score(g), float(k % 7))[: len(objectives.names)])
        s.tell(g, ev)
        history.append((g, ev))
    fresh = evo(nb201, objectives, population_size=6, tournament_size=3, crossover_rate=0.3, seed=99)
    for g, ev in history:
        fresh.replay(g, ev)
    assert fresh.population == s.population
    assert len(fresh.population) == 6
    assert nb201.validate(fresh.ask()) is not None


# -- multi-objective -----------------------------------------------------------------------


def _filled(space, points):  # noqa: ANN001
    s = evo(space, ACC_PARAMS, population_size=len(points), tournament_size=2, seed=0)
    genomes = [s.ask() for _ in points]
    for g, v in zip(genomes, points):
        s.tell(g, ok(*v))
    return s, genomes


def test_multi_objective_removes_a_dominated_newcomer(nb201):
    front = [(0.9, 400.0), (0.8, 300.0), (0.7, 200.0), (0.6, 100.0)]  # accuracy up, params down
    s, genomes = _filled(nb201, front)
    before = s.population
    newcomer = s.ask()
    s.tell(newcomer, ok(0.65, 350.0))  # dominated by (0.8, 300) and (0.7, 200)
    assert s.population == before


def test_multi_objective_removes_the_member_a_newcomer_dominates(nb201):
    front = [(0.9, 400.0), (0.8, 300.0), (0.7, 200.0), (0.6, 100.0)]
    s, genomes = _filled(nb201, front)
    newcomer = s.ask()
    s.tell(newcomer, ok(0.85, 250.0))  # dominates (0.8, 300) only
    assert len(s.population) == 4
    assert genomes[1] not in members(s)
    assert set(members(s)) == {genomes[0], genomes[2], genomes[3], newcomer}


def test_multi_objective_removes_the_most_crowded_when_all_are_non_dominated(nb201):
    # (0.79, 290) sits next to (0.8, 300): crowding 0.667 vs 0.733 and 1.267 for (0.7, 200).
    front = [(0.9, 400.0), (0.8, 300.0), (0.7, 200.0), (0.6, 100.0)]
    s, genomes = _filled(nb201, front)
    newcomer = s.ask()
    s.tell(newcomer, ok(0.79, 290.0))
    assert newcomer not in members(s)
    assert members(s) == genomes


def test_multi_objective_population_stays_p_and_drops_a_worst_ranked_member(nb201):
    p = 6
    s = evo(nb201, ACC_PARAMS, population_size=p, tournament_size=3, seed=21)
    rng = random.Random(0)
    removed_ranks = []
    for _ in range(60):
        before = s.population
        g = s.ask()
        v = (round(rng.random(), 2), float(rng.randint(1, 20)))  # coarse values: ties and duplicates
        s.tell(g, ok(*v))
        after = s.population
        assert len(after) == min(len(before) + 1, p)
        combined = [*before, (g, v)]
        if len(combined) > p:
            (removed,) = [i for i, item in enumerate(combined) if item not in after]
            ranks = nondominated_ranks([(a, -b) for _, (a, b) in combined])
            assert ranks[removed] == max(ranks)
            removed_ranks.append(ranks[removed])
    assert len(s.population) == p
    assert max(removed_ranks) > 0  # dominated members were there to remove


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    {"population_size": 1}, {"population_size": 0},
    {"population_size": 4, "tournament_size": 5}, {"tournament_size": 0},
    {"mutation_rate": -0.1}, {"mutation_rate": 1.5}, {"crossover_rate": -1.0}, {"crossover_rate": 2.0},
    {"crossover_mode": "onepoint"},
])
def test_bad_hyperparameters_are_config_errors(nb201, options):
    with pytest.raises(ConfigError):
        EvolutionStrategy(nb201, ACC, 0, **options)


def test_registry_and_state_dict(nb201):
    s = create_strategy("evolution", nb201, ACC, 3, population_size=7, tournament_size=2,
                        crossover_rate=0.25, crossover_mode="stage")
    assert isinstance(s, EvolutionStrategy) and s.name == "evolution" and s.seed == 3
    state = json.loads(json.dumps(s.state_dict()))
    assert state == {"population_size": 7, "tournament_size": 2, "mutation_rate": 1.0,
                     "crossover_rate": 0.25, "crossover_mode": "stage"}


# -- search quality on NAS-Bench-201 -------------------------------------------------------


@pytest.fixture(scope="module")
def nb201_evaluator():
    if not (NB201_DIR / "nb201_accuracy.csv").is_file():
        pytest.skip(f"NAS-Bench-201 tables not found in {NB201_DIR}")
    from nasbench.benchmarks import NB201, BenchmarkEvaluator
    from nasbench.hardware import torch_threads

    with torch_threads(1):  # loading measures op costs on tiny networks; one thread avoids contention
        return BenchmarkEvaluator(NB201(NB201_DIR / "nb201_accuracy.csv"), "cifar10", ACC)


def _best_test_accuracy(strategy, evaluator, queries: int = 100) -> float:  # noqa: ANN001
    """Run until ``queries`` distinct genomes were looked up (repeats told their stored result, as the runner
    does); return the test accuracy of the best by validation accuracy."""
    seen = {}
    while len(seen) < queries:
        g = strategy.ask()
        if g.hash not in seen:
            seen[g.hash] = evaluator(g, 0)
        strategy.tell(g, seen[g.hash])
    best = max(seen.values(), key=lambda e: e.values[0])
    return best.metrics["test_accuracy"]


def test_evolution_beats_random_search_on_nb201(nb201_evaluator):
    # 10 seeds x 100 distinct queries on cifar10 validation accuracy. Over 30 independent groups of
    # 10 seeds the gap of the means was always positive (0.12 to 0.61 points, mean ~0.35).
    space = nb201_evaluator.benchmark.space
    evolution = [_best_test_accuracy(EvolutionStrategy(space, ACC, seed=s), nb201_evaluator) for s in range(10)]
    rand = [_best_test_accuracy(RandomStrategy(space, ACC, seed=s), nb201_evaluator) for s in range(10)]
    assert statistics.mean(evolution) > statistics.mean(rand) + 0.0005
    assert statistics.mean(evolution) > 0.935  # close to the table's best, 94.37%
