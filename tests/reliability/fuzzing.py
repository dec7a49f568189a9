"""Helpers of the fuzz tests: example budgets, a per-example time limit, and the outcome tally.

Budgets: CI runs a modest number of examples per property (:data:`CI_EXAMPLES`); the ``slow`` variants
run :data:`SLOW_EXAMPLES`. Every example must end, within :data:`TIME_LIMIT` seconds, either in a
value that passes the property's checks or in the exception type the project documents for bad input.
"""

from __future__ import annotations

import contextlib
import signal
from collections import Counter
from collections.abc import Iterator
from types import FrameType

from hypothesis import HealthCheck, settings

from .conftest import FIGURES

CI_EXAMPLES = 150
SLOW_EXAMPLES = 3000
TIME_LIMIT = 20.0
"""Seconds one example may take before it counts as a hang (generous: the CI machine is shared)."""


def budget(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,  # wall-clock deadlines flake on a shared machine; hangs are caught by time_limit
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
        derandomize=False,
        database=None,
    )


class Hang(Exception):
    """An example ran past :data:`TIME_LIMIT`."""


@contextlib.contextmanager
def time_limit(seconds: float = TIME_LIMIT) -> Iterator[None]:
    """Raise :class:`Hang` in this (main) thread if the block runs longer than ``seconds``."""

    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def tally(suite: str, outcome: str, counter: Counter[str] = FIGURES) -> None:
    """Count one example of ``suite`` as ``"accepted"`` or ``"refused"`` (with our documented error)."""
    counter[f"fuzz cases tried: {suite}"] += 1
    counter[f"fuzz cases {outcome}: {suite}"] += 1
