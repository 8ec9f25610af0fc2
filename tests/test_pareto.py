"""Tests for the Pareto helpers: dominance, non-dominated ranks, crowding distance (all maximized)."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from nasbench.strategies._pareto import crowding_distances, dominates, nondominated_ranks

INF = float("inf")


def brute_force_ranks(points):  # noqa: ANN001
    """Peel fronts by definition: a point's rank is the number of fronts removed before it is non-dominated."""
    left = set(range(len(points)))
    ranks = [-1] * len(points)
    rank = 0
    while left:
        front = {i for i in left if not any(dominates(points[j], points[i]) for j in left if j != i)}
        for i in front:
            ranks[i] = rank
        left -= front
        rank += 1
    return ranks


def test_dominates_needs_at_least_as_good_everywhere_and_better_somewhere():
    assert dominates((2, 2), (1, 2))
    assert dominates((2, 3), (1, 2))
    assert not dominates((1, 2), (1, 2))  # equal points do not dominate each other
    assert not dominates((2, 1), (1, 2))  # a trade-off
    assert not dominates((1, 2), (2, 2))


def test_ranks_of_hand_made_fronts():
    # (2,2) beats all; (1,2) and (2,1) trade off; (1,1) is under both; (0,0) under everything.
    points = [(1, 2), (2, 1), (1, 1), (0, 0), (2, 2)]
    assert nondominated_ranks(points) == [1, 1, 2, 3, 0]


def test_ranks_with_duplicates_and_ties():
    # Duplicates share a rank; a tie in one objective still dominates when the other is better.
    points = [(1, 1), (1, 1), (0, 0), (1, 0), (0, 1), (1, 1)]
    assert nondominated_ranks(points) == [0, 0, 2, 1, 1, 0]


def test_ranks_of_a_single_front_and_of_a_chain():
    front = [(0, 3), (1, 2), (2, 1), (3, 0)]
    assert nondominated_ranks(front) == [0, 0, 0, 0]
    chain = [(3, 3), (0, 0), (2, 2), (1, 1)]
    assert nondominated_ranks(chain) == [0, 3, 1, 2]
    assert nondominated_ranks([]) == []
    assert nondominated_ranks([(5, 5)]) == [0]


def test_ranks_match_the_definition_on_random_points_with_many_ties():
    rng = random.Random(0)
    for _ in range(30):
        n, m = rng.randint(1, 25), rng.randint(1, 3)
        points = [tuple(rng.randint(0, 3) for _ in range(m)) for _ in range(n)]
        assert nondominated_ranks(points) == brute_force_ranks(points)


def test_crowding_distance_matches_a_hand_computation():
    # One front. Objective 0 sorted: A0 B2 C5 D10 (range 10): B (5-0)/10, C (10-2)/10.
    # Objective 1 sorted: D0 C5 B6 A10 (range 10): C (6-0)/10, B (10-5)/10.
    points = [(0, 10), (2, 6), (5, 5), (10, 0)]
    ranks = nondominated_ranks(points)
    assert ranks == [0, 0, 0, 0]
    d = crowding_distances(points, ranks)
    assert d[0] == INF and d[3] == INF
    assert d[1] == pytest.approx(0.5 + 0.5)
    assert d[2] == pytest.approx(0.8 + 0.6)


def test_crowding_distance_is_computed_within_each_front():
    # Front 0: three points; front 1: three points shifted down and squeezed; the two must not mix.
    points = [(0, 4), (1, 1), (4, 0), (-1, 2), (0, 1.5), (2, -1)]
    ranks = nondominated_ranks(points)
    assert ranks == [0, 0, 0, 1, 1, 1]
    d = crowding_distances(points, ranks)
    assert [d[0], d[2], d[3], d[5]] == [INF] * 4
    assert d[1] == pytest.approx((4 - 0) / 4 + (4 - 0) / 4)  # neighbours (0,4) and (4,0)
    assert d[4] == pytest.approx((2 - -1) / 3 + (2 - -1) / 3)  # neighbours (-1,2) and (2,-1)


def test_crowding_distance_of_small_fronts_and_empty_input():
    assert crowding_distances([], []) == []
    assert crowding_distances([(1, 2)], [0]) == [INF]
    assert crowding_distances([(1, 2), (2, 1)], [0, 0]) == [INF, INF]


def test_crowding_distance_with_a_constant_objective_does_not_divide_by_zero():
    # The third objective is constant: it adds nothing, the middle point keeps 1 + 1.
    points = [(0, 2, 7), (1, 1, 7), (2, 0, 7)]
    d = crowding_distances(points, [0, 0, 0])
    assert d[0] == INF and d[2] == INF
    assert d[1] == pytest.approx(2.0)
    assert all(not math.isnan(x) for x in d)


def test_crowding_distance_does_not_depend_on_input_order():
    points = [(7, 0, 2), (7, 1, 1), (7, 2, 0)]  # objective 0 constant; (7,1,1) is interior in the others
    for perm in itertools.permutations(range(3)):
        shuffled = [points[i] for i in perm]
        d = crowding_distances(shuffled, [0, 0, 0])
        by_point = dict(zip(shuffled, d))
        assert by_point[(7, 1, 1)] == pytest.approx(2.0)
