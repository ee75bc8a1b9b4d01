"""The Pareto front of a multi-objective study: the trials no other trial beats on every
objective at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """``a`` is at least as good as ``b`` on every objective and better on one."""
    better = False
    for x, y, direction in zip(a, b, directions, strict=True):
        if direction == "maximize":
            x, y = -x, -y
        if x > y:
            return False
        better = better or x < y
    return better


def pareto_front(
    candidates: Sequence[tuple[T, Sequence[float]]], directions: Sequence[str]
) -> list[T]:
    """The candidates no other candidate dominates, in their given order. Candidates are
    tried best-first on the first objective, so each is compared with the front so far
    (at most a few hundred trials) rather than with every other trial."""
    sign = [-1.0 if d == "maximize" else 1.0 for d in directions]
    order = sorted(
        range(len(candidates)),
        key=lambda i: [s * v for s, v in zip(sign, candidates[i][1], strict=True)],
    )
    front: list[int] = []
    for i in order:
        values = candidates[i][1]
        if not any(dominates(candidates[j][1], values, directions) for j in front):
            front.append(i)
    return [candidates[i][0] for i in sorted(front)]
