"""The memory suite: peak memory of two steps of each case, each case in a fresh process."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from .cases import IDLE, SIZES, Case, case_named
from .device import bench_device, synchronize
from .workbench import Workbench

REPOSITORY = Path(__file__).resolve().parents[2]
"""The checkout holding ``benchmarks/``: the working directory of the child processes."""


def memory_child(case: Case, size: str, batch_size: int, threads: int, force_cpu: bool) -> dict[str, Any]:
    """Run in a fresh process: build ``case``'s model, set it up, two calls of its step; peak memory."""
    torch.set_num_threads(threads)
    device = bench_device(force_cpu)
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
    # Linux reports KiB, macOS bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    return result


def memory_suite(
    cases: Sequence[Case], size: str, batch_size: int, threads: int, force_cpu: bool, parallel: int
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
    return {"metric": key, "batch_size": batch_size, "cases": by_case, "ratios": memory_ratios(by_case, key)}


def memory_ratios(by_case: dict[str, dict[str, Any]], key: str) -> dict[str, dict[str, float | None]]:
    """Peak ``key`` of each case over ``stl``'s (checkpointed cases also over ``stl_ckpt``'s): of the
    peaks, and of the peaks above the :data:`~benchmarks.harness.cases.IDLE` process's (RSS only: it
    includes the runtime)."""
    idle = by_case.get(IDLE.name, {}).get(key, 0.0) if key == "peak_rss_mb" else 0.0
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
