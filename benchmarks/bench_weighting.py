"""Cost of each loss weighter relative to ``fixed``: training-step time, fixed per-step cost, peak memory.

One model, one batch; every weighter runs the same full training step (forward in the weighter's
``forward_context``, ``weighter.backward``, AdamW step, ``on_step_end``) as the training loop does.

* **Step time.** Each round runs every weighter once, in a fresh random order (seeded; a rotated order
  gives a case the same predecessor every round, which biases it). Each ratio is the median over
  rounds of the per-round ratio to ``fixed``; the ratio of the fastest steps is printed next to it.
  ``fixed (A/A)`` is a second, identical ``fixed`` weighter: its ratio is the noise floor of the run.
  With one torch thread on a CPU the clock is the process's CPU time (other jobs on a shared machine
  barely move it); with several threads, or on a GPU, wall-clock time (``--clock`` overrides).
* **Fixed per-step cost** (``--overhead``): the same step on a one-layer, 32-wide ViT with a 2 x 2
  patch grid and one image, where compute vanishes and what remains is the weighter's own work
  (its weights, extra autograd nodes, per-task passes of gradient methods on a tiny graph, its
  bookkeeping). Added microseconds per step over ``fixed``, median of interleaved steps. Loss-based
  weighters add a constant, so their cost at any model size is ``1 + added / step time``.
* **Peak memory** in a fresh process per weighter, over a step after a first one: peak RSS on the CPU
  (which includes the model, the AdamW state and the Python and PyTorch runtime, the same for all),
  ``torch.cuda.max_memory_allocated`` on a GPU.

Default: the paper's setup, DINO ViT-S/16 at 224 px, a binary classification task on the clean view
and SimMIM on the masked view (two backbone passes). ``--tasks cls+cls`` puts two classification
tasks on the same view instead, where per-task gradients need one backbone backward pass per task.

    OMP_NUM_THREADS=1 python benchmarks/bench_weighting.py --threads 1 --batch-size 2 --overhead
    OMP_NUM_THREADS=1 python benchmarks/bench_weighting.py --small --threads 1   # tiny ViT, seconds

Goals for two tasks: loss-based weighters (uncertainty, DWA, RLW) <= 1.03x, FAMO <= 1.10x,
gradient-based weighters <= 1.9x with per-parameter gradients, feature-level variants <= 1.25x.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from mtl_hf import MTLConfig, MTLModel
from mtl_hf.configuration_mtl import DINO_VIT_S16
from mtl_hf.weighting import WEIGHTERS, BackwardContext, LossWeighter, SharedFeatureRecorder


@dataclass(frozen=True)
class Case:
    label: str
    weighting: dict[str, Any]
    goal: float | None
    loss_based: bool = False
    """Its own work does not grow with the model (weights from losses only)."""


CASES = [
    Case("fixed", {"type": "fixed"}, 1.0, loss_based=True),
    Case("fixed (A/A)", {"type": "fixed"}, 1.0, loss_based=True),
    Case("uncertainty", {"type": "uncertainty"}, 1.03, loss_based=True),
    Case("dwa", {"type": "dwa"}, 1.03, loss_based=True),
    Case("rlw", {"type": "rlw"}, 1.03, loss_based=True),
    Case("famo", {"type": "famo"}, 1.10, loss_based=True),
    Case("famo (same batch)", {"type": "famo", "update": "same_batch"}, None),  # one more forward: no goal
    Case("gradnorm (features)", {"type": "gradnorm", "gradients": "features"}, 1.25),
    Case("mgda-ub (features)", {"type": "mgda", "gradients": "features"}, 1.25),
    Case("pcgrad (features)", {"type": "pcgrad", "gradients": "features"}, 1.25),
    Case("cagrad (features)", {"type": "cagrad", "gradients": "features"}, 1.25),
    Case("nash_mtl (features)", {"type": "nash_mtl", "gradients": "features"}, 1.25),
    Case("gradnorm (parameters)", {"type": "gradnorm", "gradients": "parameters"}, 1.9),
    Case("pcgrad", {"type": "pcgrad"}, 1.9),
    Case("mgda", {"type": "mgda"}, 1.9),
    Case("cagrad", {"type": "cagrad"}, 1.9),
    Case("nash_mtl", {"type": "nash_mtl"}, 1.9),
]

TINY_BACKBONE = {**DINO_VIT_S16, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                 "intermediate_size": 64, "image_size": 32}  # fmt: skip
"""Where compute vanishes: a 2 x 2 patch grid, one layer, 32 wide (the fixed per-step cost)."""
SMALL_BACKBONE = {**DINO_VIT_S16, "hidden_size": 96, "num_hidden_layers": 4, "num_attention_heads": 3,
                  "intermediate_size": 384, "image_size": 112}  # fmt: skip

TASK_SETS = {
    "cls+mim": {"tumour": {"type": "binary_classification"}, "mim": {"type": "mim"}},
    "cls+cls": {
        "tumour": {"type": "binary_classification"},
        "grade": {"type": "multiclass_classification", "num_classes": 4},
    },
}


class Bench:
    """A model, a batch, one weighter per case, and the training step."""

    def __init__(
        self, args: argparse.Namespace, backbone: dict[str, Any] | None = None, batch_size: int | None = None
    ) -> None:
        backbone = {"model_type": "vit", **(backbone or (SMALL_BACKBONE if args.small else DINO_VIT_S16))}
        torch.manual_seed(0)
        self.device = torch.device(args.device)
        config = MTLConfig(backbone_config=backbone, tasks=TASK_SETS[args.tasks])
        self.model = MTLModel(config).to(self.device).train()
        size = backbone["image_size"]
        b = batch_size or args.batch_size
        g = torch.Generator().manual_seed(0)
        self.batch: dict[str, Any] = {
            "pixel_values": torch.randn(b, 3, size, size, generator=g).to(self.device),
            "labels": {"tumour": torch.randint(0, 2, (b,), generator=g).to(self.device)},
        }
        if "grade" in config.tasks:
            self.batch["labels"]["grade"] = torch.randint(0, 4, (b,), generator=g).to(self.device)
        if "mim" in config.tasks:
            grid = (size // 16, size // 16)
            self.batch["bool_masked_pos"] = self.model.head("mim").sample_mask(
                b, grid, self.device, generator=g
            )
        self.recorder = SharedFeatureRecorder(self.model.heads.values(), owner=self.model)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-5)
        self.context = BackwardContext(
            shared_parameters=self.model.shared_parameters(),
            parameters=[p for p in self.model.parameters() if p.requires_grad],
        )
        self.task_names = config.task_names

    def weighter(self, case: Case) -> LossWeighter:
        spec = dict(case.weighting)
        cls = WEIGHTERS.get(spec.pop("type"))
        return cls(self.task_names, cls.parse_options(spec, self.task_names)).to(self.device)

    def step(self, weighter: LossWeighter) -> None:
        self.model.weighter = weighter
        with weighter.forward_context(self.context):
            out = self.model(**self.batch)
        step = self.context.step(sync_gradients=True, shared_features=self.recorder.features)
        weighter.backward(out.task_losses, out.loss, step)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        weighter.on_step_end({k: float(v.detach()) for k, v in out.task_losses.items()})
        if weighter.needs_losses_after_step:  # as the training loop does: the same inputs and masks again
            with torch.no_grad():
                again = self.model(**{**self.batch, "bool_masked_pos": out.bool_masked_pos})
            weighter.on_losses_after_step({k: float(v) for k, v in again.task_losses.items()})

    def timed_step(self, weighter: LossWeighter) -> tuple[float, float]:
        """Wall-clock and process CPU seconds of one step."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        start, start_cpu = time.perf_counter(), time.process_time()
        self.step(weighter)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, time.process_time() - start_cpu

    def peak_bytes(self, case: Case) -> float:
        """Peak memory of a training step of ``case`` (after a first one, so the AdamW state and any
        buffer the weighter keeps exist): peak RSS on the CPU (Linux: the high-water mark is reset
        through ``/proc/self/clear_refs`` before the step), peak allocated memory on a GPU."""
        weighter = self.weighter(case)
        self.step(weighter)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self.step(weighter)
            return float(torch.cuda.max_memory_allocated())
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")  # reset the peak RSS to the current RSS
        except OSError:  # not Linux: the process's lifetime peak, model construction included
            self.step(weighter)
            return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        self.step(weighter)
        with open("/proc/self/status") as handle:
            kilobytes = next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:"))
        return float(kilobytes * 1024)


def measure_memory(cases: list[Case], argv: list[str]) -> dict[str, float]:
    """Peak memory of each case, each in a fresh process (peak RSS never goes down in a process)."""
    memory = {}
    for case in tqdm(cases, desc="memory"):
        out = subprocess.run(
            [sys.executable, __file__, *argv, "--memory-case", case.label],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        memory[case.label] = float(out.strip().splitlines()[-1])
    return memory


def _goal(goal: float | None) -> str:
    return "     -" if goal is None else f"{goal:5.2f}x"


def interleaved_times(
    bench: Bench, cases: list[Case], rounds: int, seed: int = 0, desc: str = "timing"
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock and CPU seconds of each case's step, ``rounds`` times, in a fresh random order per round."""
    weighters = {c.label: bench.weighter(c) for c in cases}
    for case in cases:  # warm-up: allocator, AdamW state, lazily built buffers
        bench.step(weighters[case.label])
    order = random.Random(seed)
    wall: dict[str, list[float]] = {c.label: [] for c in cases}
    cpu: dict[str, list[float]] = {c.label: [] for c in cases}
    with tqdm(total=rounds * len(cases), desc=desc, leave=False) as progress:
        for _ in range(rounds):
            shuffled = list(cases)
            order.shuffle(shuffled)
            for case in shuffled:
                w, c = bench.timed_step(weighters[case.label])
                wall[case.label].append(w)
                cpu[case.label].append(c)
                progress.update()
    return wall, cpu


def per_round_ratio(times: dict[str, list[float]], label: str) -> tuple[float, float]:
    """Median over rounds of ``label``'s step / ``fixed``'s step in the same round, and the ratio of minima."""
    ratios = [a / b for a, b in zip(times[label], times["fixed"], strict=True)]
    return statistics.median(ratios), min(times[label]) / min(times["fixed"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--small", action="store_true", help="tiny ViT (96 wide, 4 layers, 112 px) for a quick run"
    )
    parser.add_argument("--tasks", choices=sorted(TASK_SETS), default="cls+mim")
    parser.add_argument("--batch-size", type=int, default=None, help="images per step (default 8)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed rounds (default 5, or 15 with --small)"
    )
    parser.add_argument(
        "--only", nargs="*", default=None, help="labels of the cases to run (fixed always runs)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: inherited)"
    )
    parser.add_argument(
        "--clock", choices=("auto", "cpu", "wall"), default="auto",
        help="auto: process CPU time with one thread on a CPU, wall-clock time otherwise",
    )  # fmt: skip
    parser.add_argument(
        "--overhead", action="store_true", help="also measure each weighter's fixed per-step cost"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--memory-case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.batch_size = args.batch_size or 8
    argv = [a for a in sys.argv[1:] if a not in ("--no-memory", "--overhead")]
    if args.memory_case is not None:  # a child process of the memory pass
        print(Bench(args).peak_bytes(next(c for c in CASES if c.label == args.memory_case)))
        return
    repeats = args.repeats or (15 if args.small else 5)
    cases = [c for c in CASES if args.only is None or c.label.startswith("fixed") or c.label in args.only]
    clock = args.clock
    if clock == "auto":
        clock = "cpu" if args.device == "cpu" and torch.get_num_threads() == 1 else "wall"

    bench = Bench(args)
    load_start = os.getloadavg()
    header = (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; "
        f"{'small ViT' if args.small else 'ViT-S/16'} at {bench.batch['pixel_values'].shape[-1]} px, "
        f"batch {args.batch_size}, tasks {args.tasks}, {repeats} rounds in random order; clock: {clock}"
    )
    print(header)
    wall, cpu = interleaved_times(bench, cases, repeats)
    times = cpu if clock == "cpu" else wall
    overhead: dict[str, float] = {}
    if args.overhead:
        tiny = Bench(args, backbone=TINY_BACKBONE, batch_size=1)
        tiny_wall, tiny_cpu = interleaved_times(tiny, cases, 300, desc="fixed cost")
        tiny_times = tiny_cpu if clock == "cpu" else tiny_wall
        base = statistics.median(tiny_times["fixed"])
        overhead = {c.label: 1e6 * (statistics.median(tiny_times[c.label]) - base) for c in cases}
    memory = {} if args.no_memory else measure_memory(cases, argv)
    load_end = os.getloadavg()

    base_step = statistics.median(times["fixed"])
    print(f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end")
    print(
        f"\n{'weighter':24s} {'median step':>12s} {'ratio':>7s} {'fastest':>8s} {'goal':>6s}     "
        + (f" {'added µs/step':>13s} {'implied':>8s}" if overhead else "")
        + (f" {'peak MB':>8s} {'ratio':>6s}" if memory else "")
    )
    rows = []
    for case in cases:
        t = statistics.median(times[case.label])
        ratio, fastest = per_round_ratio(times, case.label)
        mark = (
            ""
            if case.label.startswith("fixed") or case.goal is None
            else ("ok" if ratio <= case.goal else "OVER")
        )
        line = (
            f"{case.label:24s} {t * 1000:10.0f}ms {ratio:6.3f}x {fastest:7.3f}x {_goal(case.goal)} {mark:4s}"
        )
        row: dict[str, Any] = {
            "weighter": case.label, "median_step_s": t, "ratio": ratio, "ratio_fastest": fastest,
            "goal": case.goal, "wall_ratio": per_round_ratio(wall, case.label)[0],
        }  # fmt: skip
        if overhead:
            line += f" {overhead[case.label]:13.0f}"
            row["added_us_per_step"] = overhead[case.label]
            if case.loss_based:  # a constant cost: its share of this model's step
                implied = 1.0 + overhead[case.label] / (1e6 * base_step)
                line += f" {implied:7.4f}x"
                row["implied_ratio"] = implied
            else:
                line += f" {'-':>8s}"
        if memory:
            line += f" {memory[case.label] / 2**20:8.0f} {memory[case.label] / memory['fixed']:5.2f}x"
            row |= {"peak_bytes": memory[case.label], "memory_ratio": memory[case.label] / memory["fixed"]}
        print(line)
        rows.append(row)
    if overhead:
        print(
            "\nadded µs/step: the weighter's own cost over `fixed` on a one-layer 32-wide ViT; implied: "
            "1 + added / the median `fixed` step above, for weighters whose work does not grow with the model"
        )
    if args.json:
        record = {
            "setup": header, "clock": clock, "load_average": [load_start[0], load_end[0]],
            "machine": platform.processor() or platform.machine(), "rows": rows,
        }  # fmt: skip
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
