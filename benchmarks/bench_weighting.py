"""Cost of each loss weighter relative to ``fixed``: training-step time and peak memory.

One model, one batch; every weighter runs the same full training step (forward in the weighter's
``forward_context``, ``weighter.backward``, AdamW step, ``on_step_end``) as the training loop does.
Configurations are interleaved round by round (order rotated each round) and the median step time of
each is divided by that of ``fixed`` in the same run; the ratio of median process CPU times is given
too, as other load on a shared machine disturbs it less than wall-clock time. Peak memory is measured
in a fresh process per weighter, over a step after a first one: peak RSS on the CPU (which includes the
model, the AdamW state and the Python and PyTorch runtime, the same for all),
``torch.cuda.max_memory_allocated`` on a GPU.

Default: the paper's setup, DINO ViT-S/16 at 224 px, a binary classification task on the clean view
and SimMIM on the masked view (two backbone passes). ``--tasks cls+cls`` puts two classification
tasks on the same view instead, where per-task gradients need one backbone backward pass per task.

    OMP_NUM_THREADS=2 python benchmarks/bench_weighting.py --batch-size 2  # ViT-S/16, minutes
    OMP_NUM_THREADS=1 python benchmarks/bench_weighting.py --small       # tiny ViT, seconds

Goals for two tasks: loss-based weighters (uncertainty, DWA, RLW) <= 1.03x, FAMO <= 1.10x,
gradient-based weighters <= 1.9x with per-parameter gradients, feature-level variants <= 1.25x.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
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
    goal: float


CASES = [
    Case("fixed", {"type": "fixed"}, 1.0),
    Case("uncertainty", {"type": "uncertainty"}, 1.03),
    Case("dwa", {"type": "dwa"}, 1.03),
    Case("rlw", {"type": "rlw"}, 1.03),
    Case("famo", {"type": "famo"}, 1.10),
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

    def __init__(self, args: argparse.Namespace) -> None:
        backbone = {"model_type": "vit", **(SMALL_BACKBONE if args.small else DINO_VIT_S16)}
        torch.manual_seed(0)
        self.device = torch.device(args.device)
        config = MTLConfig(backbone_config=backbone, tasks=TASK_SETS[args.tasks])
        self.model = MTLModel(config).to(self.device).train()
        size = backbone["image_size"]
        b = args.batch_size
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
        "--repeats", type=int, default=None, help="timed rounds (default 3, or 15 with --small)"
    )
    parser.add_argument(
        "--only", nargs="*", default=None, help="labels of the cases to run (fixed always runs)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--memory-case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batch_size = args.batch_size or 8
    argv = [a for a in sys.argv[1:] if a != "--no-memory"]
    if args.memory_case is not None:  # a child process of the memory pass
        print(Bench(args).peak_bytes(next(c for c in CASES if c.label == args.memory_case)))
        return
    repeats = args.repeats or (15 if args.small else 3)
    cases = [c for c in CASES if args.only is None or c.label == "fixed" or c.label in args.only]

    bench = Bench(args)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; "
        f"{'small ViT' if args.small else 'ViT-S/16'} at {bench.batch['pixel_values'].shape[-1]} px, "
        f"batch {args.batch_size}, tasks {args.tasks}, {repeats} interleaved rounds"
    )
    weighters = {c.label: bench.weighter(c) for c in cases}
    for case in tqdm(cases, desc="warm-up"):
        bench.step(weighters[case.label])
    times: dict[str, list[float]] = {c.label: [] for c in cases}
    cpu_times: dict[str, list[float]] = {c.label: [] for c in cases}
    with tqdm(total=repeats * len(cases), desc="timing") as progress:
        for r in range(repeats):
            shift = r % len(cases)
            for case in cases[shift:] + cases[:shift]:
                wall, cpu = bench.timed_step(weighters[case.label])
                times[case.label].append(wall)
                cpu_times[case.label].append(cpu)
                progress.update()
    memory = {} if args.no_memory else measure_memory(cases, argv)

    base_wall, base_cpu = statistics.median(times["fixed"]), statistics.median(cpu_times["fixed"])
    print(
        f"\n{'weighter':24s} {'median step':>12s} {'ratio':>7s} {'CPU ratio':>10s} {'goal':>6s}"
        + (f" {'peak MB':>8s} {'ratio':>6s}" if memory else "")
    )
    for case in cases:
        t = statistics.median(times[case.label])
        ratio, cpu_ratio = t / base_wall, statistics.median(cpu_times[case.label]) / base_cpu
        mark = "" if case.label == "fixed" else ("ok" if ratio <= case.goal else "OVER")
        line = (
            f"{case.label:24s} {t * 1000:10.0f}ms {ratio:6.2f}x {cpu_ratio:9.2f}x {case.goal:5.2f}x {mark:4s}"
        )
        if memory:
            line += f" {memory[case.label] / 2**20:8.0f} {memory[case.label] / memory['fixed']:5.2f}x"
        print(line)


if __name__ == "__main__":
    main()
