"""Non-dominated sorting and crowding distance (Deb et al., 2002), all objectives maximized."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["dominates", "nondominated_ranks", "crowding_distances"]

Point = Sequence[float]


def dominates(a: Point, b: Point) -> bool:
    """Whether ``a`` is at least as good as ``b`` everywhere and better somewhere (maximizing)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def nondominated_ranks(points: Sequence[Point]) -> list[int]:
    """Front index of every point: 0 for the Pareto front, 1 for the next, ..."""
    n = len(points)
    dominated_by = [0] * n
    dominating: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                dominating[i].append(j)
                dominated_by[j] += 1
            elif dominates(points[j], points[i]):
                dominating[j].append(i)
                dominated_by[i] += 1
    ranks = [0] * n
    front = [i for i in range(n) if dominated_by[i] == 0]
    rank = 0
    while front:
        nxt = []
        for i in front:
            ranks[i] = rank
            for j in dominating[i]:
                dominated_by[j] -= 1
                if dominated_by[j] == 0:
                    nxt.append(j)
        front, rank = nxt, rank + 1
    return ranks


def crowding_distances(points: Sequence[Point], ranks: Sequence[int]) -> list[float]:
    """Crowding distance of every point within its own front (boundary points: infinity)."""
    n = len(points)
    out = [0.0] * n
    if n == 0:
        return out
    for r in set(ranks):
        idx = [i for i in range(n) if ranks[i] == r]
        if len(idx) <= 2:
            for i in idx:
                out[i] = float("inf")
            continue
        for m in range(len(points[0])):
            idx.sort(key=lambda i: points[i][m])
            lo, hi = points[idx[0]][m], points[idx[-1]][m]
            if hi == lo:
                continue
            out[idx[0]] = out[idx[-1]] = float("inf")
            for k in range(1, len(idx) - 1):
                out[idx[k]] += (points[idx[k + 1]][m] - points[idx[k - 1]][m]) / (hi - lo)
    return out
