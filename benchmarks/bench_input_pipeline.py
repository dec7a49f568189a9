"""Does the data pipeline keep up with training on this machine, without taking the model's cores?

The real path of ``mtl-hf train``: the cached demo BraTS slices (Arrow; the demo's 200 patients x 10
FLAIR slices, split by the packaged demo config, whose 40 training patients give 400 training slices,
cached at the model's size), the training transforms (decode, augment, normalise) and the collate,
through ``mtl_hf.training.inputs.make_loader`` (seeded, one-thread workers, each batch fetched and
transformed in one call) with the default ``training.num_workers`` and other counts. Measured:

1. loader throughput alone (images/s, after the workers' start-up);
2. the MTL training step (classification + SimMIM, fused AdamW) on batches already in memory,
   interleaved with the same step fed by the loader (and with the step on a second preloaded batch,
   an A/A control for the drift between identical measurements), so the loader-fed step includes
   waiting for data and the workers' competition for the cores.

Goals: loader images/s >= 5x the training images/s, and the loader-fed step <= 1.05x the preloaded one.

With ``--brats DIR`` (full-size BraTS patients, e.g. those ``bench_data.py --work W`` writes under
``W/brats``) the data are the four modalities cached at the model's size (uint8 + lz4, resized at
build time), the model takes 4 channels, and the loader figure that matters for a GPU is printed:
images/s per loader worker core with the training augmentations (goal >= 300; the in-process loader,
``0 workers``, runs on one core, and so does each worker): images per CPU second of the in-process
loader, measured once per round between the training steps (median and range printed). The load
average is printed at the start and at the end.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_input_pipeline --threads 1             # small ViT, ~1 min
    OMP_NUM_THREADS=1 python -m benchmarks.bench_input_pipeline --threads 1 --size vits16
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness.cases import SIZES
from mtl_hf import MTLConfig, MTLModel
from mtl_hf.experiments.demo import build, demo_run_config
from mtl_hf.options import from_dict
from mtl_hf.training.config import RunConfig, TrainingSection
from mtl_hf.training.inputs import build_training_data, make_loader


def run_config(data_dir: Path, cache_dir: Path, size: str, brats: Path | None = None) -> RunConfig:
    raw = demo_run_config("brats", data_dir)
    raw["cache_dir"] = str(cache_dir)
    raw["output_dir"] = str(cache_dir / "unused")
    channels = 1
    if brats is not None:  # four full-size modalities, cached at the model's size
        channels = 4
        raw["data"] = {
            "kind": "brats",
            "root": str(brats),
            "brats": {"modalities": ["t1", "t1ce", "t2", "flair"]},
            "split": {"train": 0.6, "validation": 0.2, "test": 0.2},
        }
    raw["model"]["backbone_config"] = {"model_type": "vit", **SIZES[size], "num_channels": channels}
    raw["data"]["image_size"] = SIZES[size]["image_size"]
    return from_dict(RunConfig, raw)


def loader_images_per_s(loader: Any, batches: int) -> float:
    """Images/s over ``batches`` batches, the first one (worker start-up) excluded."""
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    n = 0
    for batch in itertools.islice(iterator, batches):
        n += len(batch["pixel_values"])
    return n / (time.perf_counter() - start)


def images_per_cpu_second(loader: Any, batches: int) -> float:
    """Images per CPU second of the in-process loader (``num_workers=0``, one torch thread): what one
    loader core delivers, whatever else runs on the machine."""
    iterator = iter(loader)
    next(iterator)
    start = time.process_time()
    n = 0
    for batch in itertools.islice(iterator, batches):
        n += len(batch["pixel_values"])
    return n / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads of the training step (default 1)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--workers", type=int, nargs="+", help="worker counts for the loader (default: 0 1 2)"
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="alternations preloaded / loader-fed (default 4)"
    )
    parser.add_argument("--steps", type=int, default=3, help="steps per alternation (default 3)")
    parser.add_argument("--data", type=Path, default=Path("runs/bench-mae/demo_data"))
    parser.add_argument("--cache", type=Path, default=Path("runs/bench-input/cache"))
    parser.add_argument("--brats", type=Path, help="a folder of full-size BraTS patients (four modalities)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    loads_start = [round(x, 2) for x in os.getloadavg()]
    torch.set_num_threads(args.threads)
    default_workers = TrainingSection().num_workers
    workers = args.workers if args.workers is not None else sorted({default_workers, 0, 1, 2})
    if args.brats is None and not (args.data / "demo_summary.json").exists():
        build(args.data, seed=0)
    config = run_config(args.data, args.cache, args.size, args.brats)
    model = MTLModel(MTLConfig(backbone_config=config.model.backbone_config, tasks=config.model.tasks))
    data = build_training_data(config, model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    model.train()

    def loader(num_workers: int) -> Any:
        return make_loader(data.train, data, args.batch_size, shuffle=True, seed=0, num_workers=num_workers)

    throughput = {w: loader_images_per_s(loader(w), 12) for w in workers}

    def loader_per_cpu_second() -> float:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return images_per_cpu_second(loader(0), 24)
        finally:
            torch.set_num_threads(threads)

    per_cpu_rounds = [loader_per_cpu_second()]

    def step(batch: dict[str, Any]) -> None:
        out = model(pixel_values=batch["pixel_values"], labels=batch["labels"])
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # Two preloaded batches: the peer, and an A/A control (another batch, timed the same way) that
    # shows how far two identical measurements drift apart on this machine.
    batches = iter(loader(0))
    preloaded = {"preloaded": next(batches), "preloaded again (A/A control)": next(batches)}
    step(preloaded["preloaded"])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in preloaded} | {
        f"loader, {w} workers": [] for w in workers
    }
    for _ in range(args.rounds):
        for name, batch in preloaded.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step(batch)
            times[name].append((time.perf_counter() - start) / args.steps)
        for w in workers:
            iterator = iter(loader(w))
            next(iterator)  # worker start-up is a once-per-epoch cost, not a per-step one
            start = time.perf_counter()
            for batch in itertools.islice(iterator, args.steps):
                step(batch)
            times[f"loader, {w} workers"].append((time.perf_counter() - start) / args.steps)
        per_cpu_rounds.append(loader_per_cpu_second())
    per_cpu = statistics.median(per_cpu_rounds)
    base = statistics.median(times["preloaded"])
    train_ips = args.batch_size / base
    loads = [round(x, 2) for x in os.getloadavg()]
    print(
        f"\n{args.size}, batch {args.batch_size}, torch threads {args.threads}, default num_workers "
        f"{default_workers}, load average at the start {loads_start}, at the end {loads}\n"
    )
    print(
        "| loader | images/s | images/s per loader core (goal ≥ 300) | / training images/s (goal ≥ 5) |\n"
        "|---|---:|---:|---:|"
    )
    for w, ips in throughput.items():
        print(f"| {w} workers | {ips:.0f} | {ips / max(w, 1):.0f} | {ips / train_ips:.1f} |")
    spread = f"{min(per_cpu_rounds):.0f}-{max(per_cpu_rounds):.0f}"
    print(f"| 0 workers, per CPU second of the loading thread (median, {spread}) | | {per_cpu:.0f} | |")
    print("\n| training step fed by | median s | / preloaded (goal ≤ 1.05) | median of per-round ratios |")
    print("|---|---:|---:|---:|")
    for name, t in times.items():
        per_round = statistics.median(a / b for a, b in zip(t, times["preloaded"], strict=True))
        print(
            f"| {name} | {statistics.median(t):.3f} | {statistics.median(t) / base:.3f} | {per_round:.3f} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "size": args.size,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "default_num_workers": default_workers,
            "loadavg_start": loads_start,
            "loadavg_end": loads,
            "loader_images_per_s": throughput,
            "loader_images_per_cpu_second": per_cpu,
            "loader_images_per_cpu_second_rounds": per_cpu_rounds,
            "training_images_per_s": train_ips,
            "step_seconds": times,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
