"""The speed suite: cases interleaved round by round, timed by two clocks, and same-round ratios."""

from __future__ import annotations

import random
import resource
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .cases import RATIO_SPECS, Case, RatioSpec
from .device import synchronize
from .workbench import Workbench


@dataclass
class Timing:
    """One case's timings: seconds per call over the measured rounds, by the run's primary clock
    (``clock``: ``"wall"``, or ``"cpu"``, the process's CPU time) and by the other one."""

    name: str
    description: str
    times_s: list[float]
    images: int
    clock: str = "wall"
    other_times_s: list[float] | None = None
    flops: float | None = None
    """Model FLOPs of one call (no recomputation counted), ``None`` where not counted."""
    page_faults: list[int] | None = None
    """Minor page faults of the process during each call (memory the allocator had returned to the
    OS and the step had to fault in again, zeroed page by page)."""
    ceiling: str | None = None
    """Which matmul ceiling its MFU is taken against (``matmul_fp32`` or ``matmul_bf16``)."""

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def images_per_s(self) -> float:
        return self.images / self.median_s


@dataclass
class Ratio:
    """A measured ratio with its goal (``None``: reported only), by the primary clock (``value``: the
    median of per-round ratios, ``value_of_min``: the ratio of the fastest calls) and by the other."""

    name: str
    value: float
    value_of_min: float
    goal: float | None = None
    higher_is_better: bool = False
    clock: str = "wall"
    other_value: float | None = None

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        return self.value >= self.goal if self.higher_is_better else self.value <= self.goal


def run_interleaved(
    bench: Workbench, cases: Sequence[Case], rounds: int, warmup: int, progress: bool = True
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[int]]]:
    """Seconds per call of every case (by name), wall-clock and process CPU time, and minor page faults
    per call: ``warmup`` unrecorded rounds then ``rounds`` recorded ones; each round runs every case
    once, in a new random order (seeded), so that no case always follows the same other case (what ran
    just before, e.g. a heavy bf16 matmul or a large free, can slow a step down)."""
    from tqdm import tqdm

    calls = {c.name: bench.case(c) for c in cases}
    names = list(calls)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu_times: dict[str, list[float]] = {n: [] for n in names}
    faults: dict[str, list[int]] = {n: [] for n in names}
    shuffler = random.Random(0)
    for r in tqdm(range(warmup + rounds), desc="rounds", disable=not progress):
        order = list(names)
        shuffler.shuffle(order)
        for name in order:
            setup, run = calls[name]
            setup()
            synchronize(bench.device)
            faults_start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            synchronize(bench.device)
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
                cpu_times[name].append(time.process_time() - cpu_start)
                faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_start)
    return times, cpu_times, faults


def paired_ratio(
    times: dict[str, list[float]], numerator: str, denominators: Sequence[str]
) -> tuple[float, float]:
    """(median over rounds of ``t[num] / sum(t[den])``, ratio of the fastest calls)."""
    per_round = [
        times[numerator][r] / sum(times[d][r] for d in denominators) for r in range(len(times[numerator]))
    ]
    fastest = min(times[numerator]) / sum(min(times[d]) for d in denominators)
    return statistics.median(per_round), fastest


def compute_ratios(
    times: dict[str, list[float]],
    other_times: dict[str, list[float]] | None = None,
    clock: str = "wall",
    specs: Sequence[RatioSpec] = RATIO_SPECS,
) -> list[Ratio]:
    """The ratios of ``specs`` whose cases all have times (by case name)."""
    ratios = []
    for spec in specs:
        num, dens = spec.numerator.name, [d.name for d in spec.denominators]
        if num not in times or any(d not in times for d in dens):
            continue
        value, fastest = paired_ratio(times, num, dens)
        other = paired_ratio(other_times, num, dens)[0] if other_times is not None else None
        ratios.append(Ratio(spec.label, value, fastest, spec.goal, spec.higher_is_better, clock, other))
    return ratios


def speed_suite(
    bench: Workbench,
    cases: Sequence[Case],
    rounds: int,
    warmup: int,
    count_flops: bool = True,
    clock: str = "wall",
) -> tuple[dict[str, Timing], list[Ratio]]:
    """Interleaved timings of ``cases`` and the ratios of :data:`RATIO_SPECS`, by ``clock`` first.

    ``clock="cpu"`` (process CPU time) suits a CPU run with one torch thread on a shared machine: the
    time the process is descheduled in favour of others does not count, which wall-clock time cannot
    avoid. With several threads CPU time adds up their spin-waiting: use wall-clock time there and on
    accelerators."""
    wall, cpu, faults = run_interleaved(bench, cases, rounds, warmup)
    primary, other = (cpu, wall) if clock == "cpu" else (wall, cpu)
    timings: dict[str, Timing] = {}
    for case in cases:
        name = case.name
        ceiling = None
        if case.model != "matmul":
            ceiling = Case("matmul", mode="ceiling", precision=case.precision).name
        timings[name] = Timing(
            name,
            case.description,
            primary[name],
            bench.images_of(case),
            clock=clock,
            other_times_s=other[name],
            flops=bench.count_flops(case) if count_flops else None,
            ceiling=ceiling,
            page_faults=faults[name],
        )
    return timings, compute_ratios(primary, other, clock)


def mfu(timing: Timing, timings: dict[str, Timing]) -> float | None:
    """Model FLOP/s of ``timing`` over the matmul ceiling measured in the same rounds."""
    if timing.flops is None or timing.ceiling is None or timing.ceiling not in timings:
        return None
    ceiling = timings[timing.ceiling]
    assert ceiling.flops is not None
    return (timing.flops / timing.median_s) / (ceiling.flops / ceiling.median_s)
