"""Small timing helpers shared by the benchmarks (interleaved, best-of-N)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Callable


def per_call(func: Callable[[], object], number: int) -> float:
    """Return seconds per call of ``func`` over ``number`` calls."""
    start = time.perf_counter()
    for _ in range(number):
        func()
    return (time.perf_counter() - start) / number


def interleaved(funcs: Sequence[Callable[[], object]], *, number: int, rounds: int) -> list[float]:
    """Time each of ``funcs`` in alternating rounds; return the median per call.

    Alternating the contenders round by round spreads any noise from the
    machine evenly over them, so their ratio stays meaningful.
    """
    samples: list[list[float]] = [[] for _ in funcs]
    for _ in range(rounds):
        for i, func in enumerate(funcs):
            samples[i].append(per_call(func, number))
    return [statistics.median(s) for s in samples]
