"""The harness's command line: ``python -m benchmarks.harness [options]`` from the repository root."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .cases import (
    DEFAULT_BATCH,
    DEFAULT_MEMORY_BATCH,
    MEMORY_CASES,
    QUICK_MEMORY_CASES,
    SIZES,
    SPEED_CASES,
    Case,
    case_named,
)
from .device import bench_device
from .memory import memory_child, memory_suite
from .optimizer import optimizer_suite
from .overhead import overhead_suite
from .precision import precision_suite
from .report import BenchReport, format_report, machine_info
from .speed import Ratio, Timing, mfu, speed_suite
from .workbench import Workbench, timm_available

SUITES = ("speed", "overhead", "memory", "optimizer", "precision")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.harness",
        description=(
            "Measure training-step and inference speed, memory, the AdamW step and bf16 autocast of mtl-hf "
            "models against transformers' ViTForImageClassification / ViTForMaskedImageModeling (and timm "
            "when installed) on the same config, batch and inputs, interleaved in one process; print "
            "median times, MFU and same-run ratios with their goals."
        ),
        epilog=(
            "On a shared machine set --threads to the cores really free: extra threads spin-wait and "
            "slow every step. Ratios are robust to load; absolute times are not."
        ),
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="vits16", help="model size (default vits16)")
    parser.add_argument(
        "--quick", action="store_true", help="small size, few rounds: under a minute on a CPU"
    )
    parser.add_argument("--batch-size", type=int, help="batch size (default 8 for vits16, 16 for small)")
    parser.add_argument("--threads", type=int, help="torch threads (default: os.cpu_count())")
    parser.add_argument("--rounds", type=int, help="measured rounds (default 3; 5 with --quick)")
    parser.add_argument("--warmup", type=int, default=1, help="unrecorded warm-up rounds (default 1)")
    parser.add_argument(
        "--suites",
        help=f"comma-separated, from {', '.join(SUITES)} (default: all; --quick: all but memory, "
        "whose fresh processes take a minute of their own)",
    )
    parser.add_argument("--cases", help="comma-separated speed cases (default: all available)")
    parser.add_argument(
        "--memory-batch-size", type=int, help="batch of the memory suite (default 16 vits16, 32 small)"
    )
    parser.add_argument(
        "--memory-cases", help="comma-separated memory cases (default: all; --quick: a shorter list)"
    )
    parser.add_argument("--memory-parallel", type=int, default=2, help="memory processes at once (default 2)")
    parser.add_argument(
        "--memory-tensors",
        action="store_true",
        help="memory suite on a CPU: one more step under PyTorch's profiler, for the peak of live tensor "
        "bytes and what held them (parameters, optimizer state, activations, gradients, ...)",
    )
    parser.add_argument(
        "--clock",
        choices=("auto", "wall", "cpu"),
        default="auto",
        help="clock of the step times and ratios: process CPU time or wall-clock time (default auto: CPU "
        "time for a one-thread CPU run, which ignores time lost to other processes, else wall-clock)",
    )
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 autocast cases")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model before timing")
    parser.add_argument("--no-flops", action="store_true", help="skip FLOP counting (and MFU)")
    parser.add_argument(
        "--cpu", action="store_true", help="run on the CPU even when an accelerator is present"
    )
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    return parser


def default_cases(bf16: bool) -> list[Case]:
    """Every speed case (without the bf16 ones unless ``bf16``; without timm's when it is missing)."""
    cases = [c for c in SPEED_CASES.values() if bf16 or not c.bf16]
    if not timm_available():
        cases = [c for c in cases if c.model != "timm_cls"]
    return cases


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    size = "small" if args.quick else args.size
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    memory_batch = args.memory_batch_size or DEFAULT_MEMORY_BATCH[size]
    if args.memory_child:
        case = case_named(args.memory_child)
        print(json.dumps(memory_child(case, size, memory_batch, threads, args.cpu, args.memory_tensors)))
        return 0
    default_suites = [s for s in SUITES if s != "memory"] if args.quick else list(SUITES)
    suites = [s.strip() for s in args.suites.split(",") if s.strip()] if args.suites else default_suites
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        print(
            f"error: --suites: unknown suite {unknown[0]!r}; choose from {', '.join(SUITES)}", file=sys.stderr
        )
        return 2
    device = bench_device(args.cpu)
    clock = args.clock
    if clock == "auto":
        clock = "cpu" if device.type == "cpu" and threads == 1 else "wall"
    batch_size = args.batch_size or DEFAULT_BATCH[size]
    rounds = args.rounds or (5 if args.quick else 3)
    bf16 = not args.no_bf16
    cases = default_cases(bf16)
    if args.cases:
        try:
            cases = [case_named(c.strip(), SPEED_CASES) for c in args.cases.split(",") if c.strip()]
        except ValueError as exc:
            print(f"error: --cases: {exc}", file=sys.stderr)
            return 2
    report = BenchReport(
        machine=machine_info(device, threads),
        settings={
            "size": size,
            "backbone": SIZES[size],
            "batch_size": batch_size,
            "rounds": rounds,
            "warmup": args.warmup,
            "suites": suites,
            "compile": args.compile,
            "bf16": bf16,
            "clock": clock,
        },
    )
    timings: dict[str, Timing] = {}
    ratios: list[Ratio] = []
    if "memory" in suites:
        memory_cases = list((QUICK_MEMORY_CASES if args.quick else MEMORY_CASES).values())
        if args.memory_cases:
            try:
                memory_cases = [
                    case_named(c.strip(), MEMORY_CASES) for c in args.memory_cases.split(",") if c.strip()
                ]
            except ValueError as exc:
                print(f"error: --memory-cases: {exc}", file=sys.stderr)
                return 2
        report.memory = memory_suite(
            memory_cases, size, memory_batch, threads, args.cpu, args.memory_parallel, args.memory_tensors
        )
    needs_models = "speed" in suites or "precision" in suites
    if needs_models:
        bench = Workbench(SIZES[size], batch_size, device, cases=cases, compile_models=args.compile)
        if "precision" in suites:
            report.precision = precision_suite(bench)
        if "speed" in suites:
            timings, ratios = speed_suite(
                bench, cases, rounds, args.warmup, count_flops=not args.no_flops, clock=clock
            )
            report.timings = {
                n: {**asdict(t), "median_s": t.median_s, "min_s": t.min_s, "mfu": mfu(t, timings)}
                for n, t in timings.items()
            }
            report.ratios = [{**asdict(r), "met": r.met} for r in ratios]
        del bench
    if "overhead" in suites:
        report.overhead = overhead_suite(SIZES[size], batch_size, device)
    if "optimizer" in suites:
        report.optimizer = optimizer_suite(SIZES[size], device, rounds=max(rounds, 5) * 2, warmup=2)
    report.machine["loadavg_end"] = (
        [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    )
    print(format_report(report, timings, ratios))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(report), indent=2, default=_jsonable) + "\n")
        print(f"\nwrote {args.json}")
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return repr(value)
