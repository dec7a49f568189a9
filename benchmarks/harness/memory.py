"""The memory suite: peak memory of two steps of each case, each case in a fresh process.

Two measures on a CPU:

* **peak RSS**: the process's own high-water mark of resident memory (``VmHWM`` in
  ``/proc/self/status``). Not ``getrusage``'s ``ru_maxrss``: on Linux a child's ``ru_maxrss`` starts at
  the resident size of its parent when it forked (kept through ``exec``). RSS includes what the C
  allocator keeps after ``free``: glibc raises its mmap threshold after large blocks are freed
  (up to 32 MB), so a step's later activations come from the heap, and freed heap memory stays
  resident until glibc trims it. ``MALLOC_MMAP_THRESHOLD_`` (bytes, in the environment of the run)
  fixes the threshold: every block above it is mapped and unmapped on its own, and RSS follows what
  is in use. The run records any ``MALLOC_*`` setting;
* **peak heap in use**: the bytes the C allocator has handed out and not taken back (glibc's
  ``mallinfo2``: ``uordblks + hblkhd``), sampled every millisecond by a thread: PyTorch's CPU tensors
  and everything else the process allocates, whatever the allocator keeps. Linux with glibc only.

On a GPU the measure is ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import resource
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from .cases import IDLE, SIZES, Case, case_named
from .device import bench_device, synchronize
from .workbench import Workbench

REPOSITORY = Path(__file__).resolve().parents[2]
"""The checkout holding ``benchmarks/``: the working directory of the child processes."""


def peak_rss_mb() -> float:
    """This process's peak resident memory since its ``exec``: ``VmHWM`` on Linux; elsewhere
    ``ru_maxrss`` (which on macOS has no parent carry-over)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


_MALLINFO2_FIELDS = [
    "arena",
    "ordblks",
    "smblks",
    "hblks",
    "hblkhd",
    "usmblks",
    "fsmblks",
    "uordblks",
    "fordblks",
    "keepcost",
]
"""glibc's ``struct mallinfo2``, every field a ``size_t``."""


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2_FIELDS]


def heap_in_use_mb() -> float | None:
    """Bytes the C allocator has handed out and not taken back (glibc's ``mallinfo2``), in MiB;
    ``None`` without glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError, TypeError):
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20


class HeapPeak:
    """Context manager sampling :func:`heap_in_use_mb` every ``interval`` seconds in a thread; ``peak_mb``
    is the largest sample (``None`` without glibc). PyTorch's CPU kernels release the GIL, so the
    thread samples during forward and backward passes too."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.peak_mb: float | None = heap_in_use_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._update()

    def _update(self) -> None:
        now = heap_in_use_mb()
        if now is not None and self.peak_mb is not None:
            self.peak_mb = max(self.peak_mb, now)

    def __enter__(self) -> HeapPeak:
        if self.peak_mb is not None:
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
        self._update()


def tensor_peak(step: Callable[[], None]) -> dict[str, Any]:
    """One call of ``step`` under PyTorch's profiler (``profile_memory``): the peak of the bytes held by
    live CPU tensors during the call, and what held them at that moment, in MiB by the profiler's kinds
    (parameters, optimizer state, inputs, activations saved for backward, gradients, temporaries,
    autograd detail; ``unknown`` for tensors it could not place). Independent of the C allocator.
    Reads the profiler's memory timeline (``torch.profiler._memory_profiler``)."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import _CATEGORY_TO_INDEX, MemoryProfileTimeline

    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        step()
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline("cpu")
    totals = [sum(s) for s in sizes]
    peak = max(range(len(totals)), key=totals.__getitem__)
    names = {
        index + 1: (c.name.lower() if c is not None else "unknown") for c, index in _CATEGORY_TO_INDEX.items()
    }
    kinds = {names[i]: size / 2**20 for i, size in enumerate(sizes[peak]) if size and i in names}
    return {"peak_mb": totals[peak] / 2**20, "by_kind_mb": kinds}


def memory_child(
    case: Case, size: str, batch_size: int, threads: int, force_cpu: bool, tensors: bool = False
) -> dict[str, Any]:
    """Run in a fresh process: build ``case``'s model, set it up, two calls of its step; peak memory.
    With ``tensors`` (on a CPU), a third call under the profiler: :func:`tensor_peak`."""
    torch.set_num_threads(threads)
    device = bench_device(force_cpu)
    with HeapPeak() as heap:
        bench = Workbench(SIZES[size], batch_size, device, cases=[case])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        setup, step = bench.case(case)
        setup()
        for _ in range(2):
            step()
        synchronize(device)
    result: dict[str, Any] = {"case": case.name, "batch_size": batch_size}
    if device.type == "cuda":
        result["peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    result["peak_rss_mb"] = peak_rss_mb()
    if heap.peak_mb is not None:
        result["peak_heap_mb"] = heap.peak_mb
    if tensors and device.type == "cpu" and case.mode != "idle":
        result["tensors"] = tensor_peak(step)
    return result


def memory_suite(
    cases: Sequence[Case],
    size: str,
    batch_size: int,
    threads: int,
    force_cpu: bool,
    parallel: int,
    tensors: bool = False,
) -> dict[str, Any]:
    """Each case in its own process (up to ``parallel`` at once: peak memory does not depend on
    timing); ratios of peaks to ``stl``'s (checkpointed cases also to ``stl_ckpt``'s), and of peaks
    above the :data:`~benchmarks.harness.cases.IDLE` process's."""
    from tqdm import tqdm

    def one(case: Case) -> dict[str, Any]:
        command = [sys.executable, "-m", "benchmarks.harness", "--memory-child", case.name, "--size", size]
        command += ["--memory-batch-size", str(batch_size), "--threads", str(threads)]
        if force_cpu:
            command.append("--cpu")
        if tensors:
            command.append("--memory-tensors")
        path = os.pathsep.join(p for p in (str(REPOSITORY), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": path}
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPOSITORY, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"memory case {case.name!r} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        results = list(tqdm(pool.map(one, cases), total=len(cases), desc="memory"))
    by_case = {r["case"]: r for r in results}
    key = "peak_allocated_mb" if "peak_allocated_mb" in results[0] else "peak_rss_mb"
    summary: dict[str, Any] = {
        "metric": key,
        "batch_size": batch_size,
        "malloc_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_")},
        "cases": by_case,
        "ratios": memory_ratios(by_case, key),
    }
    if all("peak_heap_mb" in r for r in results):
        summary["heap_ratios"] = memory_ratios(by_case, "peak_heap_mb")
    profiled = {name: r["tensors"]["peak_mb"] for name, r in by_case.items() if "tensors" in r}
    if profiled:
        rows = {name: {"peak_tensor_mb": peak} for name, peak in profiled.items()}
        summary["tensor_ratios"] = memory_ratios(rows, "peak_tensor_mb", above_idle=False)
    return summary


def memory_ratios(
    by_case: dict[str, dict[str, Any]], key: str, above_idle: bool | None = None
) -> dict[str, dict[str, float | None]]:
    """Peak ``key`` of each case over ``stl``'s (checkpointed cases also over ``stl_ckpt``'s): of the
    peaks, and of the peaks above the :data:`~benchmarks.harness.cases.IDLE` process's (``above_idle``;
    by default for RSS and heap, which include the runtime, the model and its optimizer)."""
    if above_idle is None:
        above_idle = key in ("peak_rss_mb", "peak_heap_mb")
    idle = by_case.get(IDLE.name, {}).get(key, 0.0) if above_idle else 0.0
    stl, stl_ckpt = Case("stl").name, Case("stl", checkpointing=True).name
    pairs = [(name, stl) for name in by_case if name not in (IDLE.name, stl)]
    pairs += [(name, stl_ckpt) for name in by_case if name != stl_ckpt and case_named(name).checkpointing]
    ratios: dict[str, dict[str, float | None]] = {}
    for name, reference in pairs:
        if reference not in by_case:
            continue
        peak, ref = by_case[name][key], by_case[reference][key]
        ratios[f"{name} / {reference}"] = {
            "peak": peak / ref,
            "above_idle": (peak - idle) / (ref - idle) if ref > idle else None,
        }
    return ratios
