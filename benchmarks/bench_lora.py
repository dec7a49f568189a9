"""LoRA on the backbone against full fine-tuning: trainable parameters, training-step time, peak memory.

One model config (DINO ViT-S/16 at 224 px by default; a binary classification task and SimMIM, the
paper's MTL setup) built twice with the same backbone weights: ``full`` trains everything,
``lora`` trains LoRA adapters (``--rank``, alpha = 2 x rank, queries and values) and the heads. A step is
forward, loss, backward, AdamW step (``foreach``), on one fixed batch.

* **Step time**: each round runs both cases once in a fresh random order (seeded); the ratio is the
  median over rounds of the per-round ``lora / full`` step time. With one thread the clock is the
  process's CPU time, otherwise wall-clock.
* **Peak memory**: each case in a fresh process (model, optimizer, two steps); peak RSS, which includes
  the Python and PyTorch runtime (the same for both).

    OMP_NUM_THREADS=1 python -m benchmarks.bench_lora --threads 1 --batch-size 8 --rounds 5
    OMP_NUM_THREADS=1 python -m benchmarks.bench_lora --small --threads 1     # small ViT, a minute
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness.cases import SIZES
from benchmarks.harness.memory import peak_rss_mb
from benchmarks.harness.report import machine_info
from benchmarks.interleaved import time_interleaved
from mtl_hf import MTLConfig, MTLModel
from mtl_hf.lora import trainable_parameters

TASKS = {"tumour": {"type": "binary_classification"}, "mim": {"type": "mim"}}
CASES = ("full", "lora")
REPOSITORY = Path(__file__).resolve().parents[1]


def build(case: str, size: str, rank: int) -> MTLModel:
    """The model of ``case``. Both are built from seed 0, which gives them the same backbone and head
    weights (the adapters are drawn after everything else; ``tests/test_lora.py`` checks the same
    construction order), without a second model in memory."""
    backbone = {"model_type": "vit", **SIZES[size]}
    lora = {"r": rank, "alpha": 2 * rank, "target_modules": ["q_proj", "v_proj"]} if case == "lora" else None
    torch.manual_seed(0)
    return MTLModel(MTLConfig(backbone_config=backbone, tasks=TASKS, lora=lora)).train()


def stepper(model: MTLModel, batch_size: int, image_size: int) -> Any:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    labels = {"tumour": (torch.arange(batch_size) % 2).float()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, foreach=True)

    def step() -> None:
        torch.manual_seed(2)  # the same SimMIM mask for both cases
        model(x, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def memory_child(case: str, size: str, batch_size: int, rank: int, threads: int) -> None:
    torch.set_num_threads(threads)
    step = stepper(build(case, size, rank), batch_size, SIZES[size]["image_size"])
    for _ in range(2):
        step()
    print(json.dumps({"case": case, "peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="the small ViT (192 wide, 6 layers, 112 px)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--suites", default="speed,memory", help="speed, memory or both (default speed,memory)"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--memory-child", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = "small" if args.small else "vits16"
    if args.memory_child:
        memory_child(args.memory_child, size, args.batch_size, args.rank, args.threads)
        return

    suites = set(args.suites.split(","))
    torch.set_num_threads(args.threads)
    machine = machine_info(torch.device("cpu"), args.threads)
    result: dict[str, Any] = {
        "machine": machine,
        "settings": {"size": size, "batch_size": args.batch_size, "rank": args.rank, "rounds": args.rounds,
                     "clock": "cpu" if args.threads == 1 else "wall", "tasks": list(TASKS)},
    }  # fmt: skip
    print(f"{size}, batch {args.batch_size}, rank {args.rank}, {args.threads} thread(s)")
    if "memory" in suites:  # first, while this process is small (children are started from it)
        memory = {}
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPOSITORY), os.environ.get("PYTHONPATH")) if p)
        for case in CASES:
            command = [sys.executable, "-m", "benchmarks.bench_lora", "--memory-child", case]
            command += [
                "--threads",
                str(args.threads),
                "--batch-size",
                str(args.batch_size),
                "--rank",
                str(args.rank),
            ]
            command += ["--small"] if args.small else []
            done = subprocess.run(
                command, capture_output=True, text=True, env=env, cwd=REPOSITORY, check=True
            )
            memory[case] = json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"]
        result["peak_rss_mb"] = {case: round(v, 1) for case, v in memory.items()}
        result["peak_rss_ratio_lora_over_full"] = round(memory["lora"] / memory["full"], 4)
        print(
            f"  peak RSS (two steps, fresh process): full {memory['full']:.0f} MB, lora {memory['lora']:.0f} MB, "
            f"lora / full {result['peak_rss_ratio_lora_over_full']:.3f}x"
        )
    if "speed" in suites:
        models = {case: build(case, size, args.rank) for case in CASES}
        parameters = {
            case: dict(zip(("trainable", "total"), trainable_parameters(m), strict=True))
            for case, m in models.items()
        }
        steps = {case: stepper(m, args.batch_size, SIZES[size]["image_size"]) for case, m in models.items()}
        times = time_interleaved(steps, rounds=args.rounds, warmup=args.warmup, threads=args.threads)
        ratio = statistics.median(lo / fu for lo, fu in zip(times["lora"], times["full"], strict=True))
        result["parameters"] = parameters
        result["step_s"] = {case: round(statistics.median(t), 4) for case, t in times.items()}
        result["step_ratio_lora_over_full"] = round(ratio, 4)
        for case in CASES:
            p = parameters[case]
            print(
                f"  {case:<5} trainable {p['trainable']:>11,} of {p['total']:,}   step {result['step_s'][case]:.3f} s"
            )
        print(f"  lora / full step time ({args.rounds} rounds): {ratio:.3f}x")
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
