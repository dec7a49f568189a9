"""Timing several cases against each other in one process: each round runs every case once, in a
fresh random order (seeded), so that no case always follows the same other one."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping


def time_interleaved(
    cases: Mapping[str, Callable[[], object]], *, rounds: int, warmup: int, threads: int
) -> dict[str, list[float]]:
    """Seconds per call of each case over ``rounds`` recorded rounds after ``warmup`` unrecorded ones.

    With one thread the clock is the process's CPU time (other jobs on a shared machine barely move
    it); with several, wall-clock time (CPU time would count spin-waiting threads).
    """
    clock = time.process_time if threads == 1 else time.perf_counter
    times: dict[str, list[float]] = {name: [] for name in cases}
    shuffler = random.Random(0)
    for r in range(warmup + rounds):
        order = list(cases)
        shuffler.shuffle(order)
        for name in order:
            start = clock()
            cases[name]()
            if r >= warmup:
                times[name].append(clock() - start)
    return times
