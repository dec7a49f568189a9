"""Training the runs of a compare grid: one after the other, or in parallel worker processes.

Every run is an ordinary training run in its own folder (finished ones are skipped by the caller,
interrupted ones resume from their checkpoint). With ``workers > 1`` the runs go to that many spawned
processes, each training one run at a time with ``threads`` torch threads (default 1). On a CPU that is
how small models use several cores: a tiny ViT's step cannot keep two threads busy, whereas two
one-thread processes each own a core. The data cache and the split manifests must exist before the
workers start (the caller prepares them), so workers only read them.

Progress: a bar for the whole grid (runs done, elapsed time, estimated time left) and, below it, the
training loop's bar of each run in progress (one line per worker). Each run's wall and CPU time are
returned, for the record of what the grid cost.
"""

from __future__ import annotations

import os
import queue
import resource
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import MtlHfError
from ..options import OptionsError

if TYPE_CHECKING:
    from ..training.config import RunConfig


class GridRunError(MtlHfError):
    """A run of the grid failed; the message names the run and carries its error."""


@dataclass(frozen=True)
class GridJob:
    """One run to train: a header naming it, its config and whether to resume its checkpoint."""

    header: str
    config: RunConfig
    resume: bool


@dataclass(frozen=True)
class JobTiming:
    """What one run cost: wall-clock seconds and CPU seconds of the process that trained it, and when
    it finished (seconds since the epoch)."""

    output_dir: str
    wall_seconds: float
    cpu_seconds: float
    finished_at: float


def run_jobs(jobs: Sequence[GridJob], *, workers: int = 1, threads: int | None = None) -> list[JobTiming]:
    """Train ``jobs`` (in order when ``workers == 1``) and return their timings in the order given.

    Args:
        jobs: The runs to train.
        workers: Processes training runs at the same time.
        threads: Torch threads per worker process (default 1 when ``workers > 1``; the process's
            setting when training in this process).

    Raises:
        GridRunError: a run failed (after the other workers finished their current run).
    """
    from tqdm.auto import tqdm

    if workers < 1:
        raise OptionsError(f"workers: must be at least 1, got {workers}")
    total = tqdm(total=len(jobs), desc="runs", unit="run", position=0, dynamic_ncols=True)
    try:
        if workers == 1 or len(jobs) <= 1:
            timings = []
            for job in jobs:
                total.write(job.header)
                timings.append(_train_job(job.config, job.resume, threads))
                total.update()
            return timings
        return _run_parallel(jobs, min(workers, len(jobs)), threads or 1, total)
    finally:
        total.close()


def _train_job(config: RunConfig, resume: bool, threads: int | None) -> JobTiming:
    import torch

    from ..training.loop import train

    if threads is not None:
        torch.set_num_threads(threads)
    wall, cpu = time.perf_counter(), _cpu_seconds()
    train(config, resume=resume)
    return JobTiming(str(config.output_dir), time.perf_counter() - wall, _cpu_seconds() - cpu, time.time())


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _worker(jobs: Any, results: Any, threads: int) -> None:
    """A worker process: train the jobs it takes until it takes ``None``; report each result."""
    while True:
        item = jobs.get()
        if item is None:
            return
        index, job = item
        from tqdm.auto import tqdm

        tqdm.write(job.header)
        try:
            results.put((index, _train_job(job.config, job.resume, threads), None))
        except BaseException as exc:  # reported to the parent, which raises it with the run's name
            results.put((index, None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
            if not isinstance(exc, Exception):
                raise


def _run_parallel(jobs: Sequence[GridJob], workers: int, threads: int, total: Any) -> list[JobTiming]:
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # never fork a process that has started torch threads
    job_queue: Any = context.Queue()
    results: Any = context.Queue()
    for item in enumerate(jobs):
        job_queue.put(item)
    for _ in range(workers):
        job_queue.put(None)
    processes = []
    saved = os.environ.get("TQDM_POSITION")
    try:
        for slot in range(workers):
            # tqdm reads TQDM_* defaults when imported: each worker's run bars get their own line.
            os.environ["TQDM_POSITION"] = str(slot + 1)
            process = context.Process(target=_worker, args=(job_queue, results, threads), daemon=True)
            process.start()
            processes.append(process)
    finally:
        if saved is None:
            os.environ.pop("TQDM_POSITION", None)
        else:
            os.environ["TQDM_POSITION"] = saved
    timings: dict[int, JobTiming] = {}
    failures: list[str] = []
    try:
        while len(timings) + len(failures) < len(jobs):
            try:
                index, timing, error = results.get(timeout=5.0)
            except queue.Empty:
                if not any(p.is_alive() for p in processes):
                    raise GridRunError(
                        "every worker process of the grid ended before its runs were done (killed?); "
                        "run the same command again to resume"
                    ) from None
                continue
            if error is not None:
                failures.append(f"{jobs[index].header} ({jobs[index].config.output_dir}): {error}")
                while True:  # drop the runs not started yet; running ones finish
                    try:
                        item = job_queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        job_queue.put(None)
                        break
                    failures.append(f"{item[1].header}: not started")
                continue
            timings[index] = timing
            total.set_postfix_str(os.path.basename(str(timing.output_dir)), refresh=False)
            total.update()
    finally:
        for process in processes:
            process.join(timeout=1.0 if failures else None)
            if process.is_alive():
                process.terminate()
    if failures:
        raise GridRunError("a run of the grid failed:\n" + "\n".join(failures))
    return [timings[i] for i in range(len(jobs))]
