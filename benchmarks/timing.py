"""Small timing helpers shared by the benchmarks (interleaved, best-of-N)."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Mapping, Sequence
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


def alternating_calls(
    calls: Mapping[str, Callable[[], float]], *, warmup: int, number: int
) -> dict[str, float]:
    """Run each timed call in turn, ``number`` times each; return each one's median seconds.

    Each call times itself and returns its seconds (a round trip includes
    its own check of the answer, outside the clock). Alternating call by call
    spreads the machine's drift over all contenders; the collector is off
    while timing, so a collection cannot land on one of them.
    """
    for _ in range(warmup):
        for call in calls.values():
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(number):
            for name, call in calls.items():
                samples[name].append(call())
    finally:
        if gc_was:
            gc.enable()
    return {name: statistics.median(s) for name, s in samples.items()}
