"""Helpers of the fuzz tests: example budgets, a per-example time limit, and the outcome tally.

Budgets: CI runs a modest number of examples per property (:data:`CI_EXAMPLES`), the same ones every
run (derandomized), so that a test's result does not change from one CI run to the next; the ``slow``
variants run :data:`SLOW_EXAMPLES` new random ones each time, to find new failures. A failure found
that way is kept as a named case of its module (e.g. ``HOSTILE`` in ``test_fuzz_images.py``). Every example must end, within :data:`TIME_LIMIT` CPU seconds, either in a
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
"""CPU seconds one example may use before it counts as a hang (wall time would depend on the machine's load)."""


def budget(examples: int, explore: bool = False) -> settings:
    """Hypothesis settings for ``examples`` examples: a fixed sequence, or new random ones if ``explore``."""
    return settings(
        max_examples=examples,
        deadline=None,  # wall-clock deadlines flake on a shared machine; hangs are caught by time_limit
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
        derandomize=not explore,
        database=None,
    )


class Hang(Exception):
    """An example ran past :data:`TIME_LIMIT`."""


@contextlib.contextmanager
def time_limit(seconds: float = TIME_LIMIT) -> Iterator[None]:
    """Raise :class:`Hang` in this (main) thread once the block has used ``seconds`` of CPU time.

    CPU time of this process (``ITIMER_PROF``), not wall time: other processes sharing the cores slow
    the wall clock, not the work an example does, so the limit catches a loop that never ends without
    failing an example because the machine is busy.
    """

    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no result after {seconds} s of CPU time")

    previous = signal.signal(signal.SIGPROF, alarm)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def tally(suite: str, outcome: str, counter: Counter[str] = FIGURES) -> None:
    """Count one example of ``suite`` as ``"accepted"`` or ``"refused"`` (with our documented error)."""
    counter[f"fuzz cases tried: {suite}"] += 1
    counter[f"fuzz cases {outcome}: {suite}"] += 1
