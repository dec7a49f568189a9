"""Does the data pipeline keep up with training on this machine, without taking the model's cores?

The real path of ``mtl-hf train``: the cached demo BraTS slices (Arrow; the demo's 200 patients x 10
FLAIR slices, split by the packaged demo config, whose 40 training patients give 400 training slices,
cached at the model's size), the training transforms (decode, augment, normalise) and the collate,
through ``mtl_hf.training.inputs.make_loader`` (seeded, one-thread workers, each batch fetched and
transformed in one call) with the default ``training.num_workers`` and other counts. Measured:

1. loader throughput alone, after the workers' start-up (their first nine batches): images/s of wall
   time, and images per CPU second of the processes that load (each worker, or the training process
   with 0 workers);
2. the MTL training step (classification + SimMIM, fused AdamW) on batches already in memory,
   interleaved with the same step fed by the loader (and with the step on a second preloaded batch,
   an A/A control for the drift between identical measurements), so the loader-fed step includes
   waiting for data and the workers' competition for the cores.

The loader is made anew for each round, as training makes it for each epoch, and the first step of
each round is timed apart from the others: with workers, it carries the cost of the fork that started
them (the training process's pages written in that step are copied, since the workers share them:
about the whole heap of a model trained on the CPU, little of one trained on a GPU; the step's minor
page faults, printed, count them). That cost comes once per epoch; it is printed in seconds, and the
ratio over an epoch of a BraTS 2021 run (1,251 patients, the run's train share and slices per patient,
at this batch size) with it.

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
import math
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness.cases import SIZES
from mtl_hf import MTLConfig, MTLModel
from mtl_hf.data import DataConfig
from mtl_hf.experiments.demo import build, demo_run_config
from mtl_hf.options import from_dict
from mtl_hf.training.config import RunConfig, TrainingSection
from mtl_hf.training.inputs import build_training_data, make_loader

BRATS_2021_PATIENTS = 1251


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


def loader_throughput(loader: Any, batches: int, skip: int = 8) -> dict[str, float]:
    """Over ``batches`` batches after the first ``1 + skip`` (the workers' start-up: their first
    batch, then their first reads of the Arrow file and the copies of the pages they inherited and
    write): images/s of wall time, images per CPU second of the processes that load (the workers, or
    this one with none), and this process's CPU milliseconds per batch (with workers: receiving the
    batches)."""
    import psutil

    batches = min(batches, len(loader) - skip - 3)  # the workers exit with the epoch's last batch
    me = psutil.Process()
    before = {p.pid for p in me.children()}
    iterator = iter(loader)
    for _ in itertools.islice(iterator, 1 + skip):
        pass
    workers = [p for p in me.children() if p.pid not in before]  # this loader's workers

    def cpu(processes: list[Any]) -> float:
        return sum(t.user + t.system for t in (p.cpu_times() for p in processes))

    start, own, loading = time.perf_counter(), time.process_time(), cpu(workers)
    n = 0
    for batch in itertools.islice(iterator, batches):
        n += len(batch["pixel_values"])
    wall, own = time.perf_counter() - start, time.process_time() - own
    loading = cpu(workers) - loading if workers else own
    return {
        "images_per_s": n / wall,
        "images_per_loading_cpu_second": n / loading,
        "own_cpu_ms_per_batch": 1000 * own / batches,
    }


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

    throughput = {w: loader_throughput(loader(w), 96) for w in workers}

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
    names = [*preloaded, *(f"loader, {w} workers" for w in workers)]
    times: dict[str, list[float]] = {name: [] for name in names}  # per round: mean of the later steps
    first: dict[str, list[float]] = {name: [] for name in names}  # per round: the first step
    faults: dict[str, list[int]] = {name: [] for name in names}  # per round: minor page faults, first step

    def timed_steps(name: str, feed: Any) -> None:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        step(next(feed))
        first[name].append(time.perf_counter() - start)
        faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        start = time.perf_counter()
        for batch in itertools.islice(feed, args.steps):
            step(batch)
        times[name].append((time.perf_counter() - start) / args.steps)

    for _ in range(args.rounds):
        for name, batch in preloaded.items():
            timed_steps(name, itertools.repeat(batch))
        for w in workers:
            iterator = iter(loader(w))
            next(iterator)  # the workers' start-up (their first batch): once per epoch, before training
            timed_steps(f"loader, {w} workers", iterator)
        per_cpu_rounds.append(loader_per_cpu_second())
    per_cpu = statistics.median(per_cpu_rounds)
    base = statistics.median(times["preloaded"])
    train_ips = args.batch_size / base
    summary = data.summary or {}
    slices_per_patient = summary["sizes"]["train"] / summary["patients"]["train"]
    train_share = from_dict(DataConfig, config.data, "data").split.train
    epoch_steps = math.ceil(round(BRATS_2021_PATIENTS * train_share) * slices_per_patient / args.batch_size)
    loads = [round(x, 2) for x in os.getloadavg()]
    print(
        f"\n{args.size}, batch {args.batch_size}, torch threads {args.threads}, default num_workers "
        f"{default_workers}, load average at the start {loads_start}, at the end {loads}\n"
    )
    print(
        "| loader, alone | images/s (wall) | images per CPU second of the loading processes (goal ≥ 300) "
        "| this process's CPU ms per batch | images/s / training images/s (goal ≥ 5) |\n"
        "|---|---:|---:|---:|---:|"
    )
    for w, t in throughput.items():
        print(
            f"| {w} workers | {t['images_per_s']:.0f} | {t['images_per_loading_cpu_second']:.0f} "
            f"| {t['own_cpu_ms_per_batch']:.1f} | {t['images_per_s'] / train_ips:.1f} |"
        )
    spread = f"{min(per_cpu_rounds):.0f}-{max(per_cpu_rounds):.0f}"
    print(
        f"| 0 workers, between the rounds of training steps (median of {len(per_cpu_rounds)}, {spread}) "
        f"| | {per_cpu:.0f} | | |"
    )
    print(
        f"\n{args.rounds} rounds of 1 + {args.steps} steps; an epoch of BraTS 2021 here: {epoch_steps} steps "
        f"({slices_per_patient:.1f} slices per patient, train share {train_share})\n"
    )
    print(
        "| training step fed by | median s | / preloaded (goal ≤ 1.05) | median of per-round ratios "
        "| first step of the epoch, s more than a preloaded step | its minor page faults "
        "| over a BraTS 2021 epoch / preloaded |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    epoch_ratio: dict[str, float] = {}
    first_extra: dict[str, float] = {}
    for name, t in times.items():
        per_round = statistics.median(a / b for a, b in zip(t, times["preloaded"], strict=True))
        first_extra[name] = statistics.median(first[name]) - base
        epoch_ratio[name] = (epoch_steps * statistics.median(t) + first_extra[name]) / (epoch_steps * base)
        print(
            f"| {name} | {statistics.median(t):.3f} | {statistics.median(t) / base:.3f} | {per_round:.3f} "
            f"| {first_extra[name]:.2f} | {statistics.median(faults[name]):,.0f} | {epoch_ratio[name]:.4f} |"
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
            "loader_alone": throughput,
            "loader_images_per_cpu_second": per_cpu,
            "loader_images_per_cpu_second_rounds": per_cpu_rounds,
            "training_images_per_s": train_ips,
            "step_seconds": times,
            "first_step_seconds": first,
            "first_step_extra_seconds": first_extra,
            "first_step_minor_page_faults": faults,
            "brats_2021_epoch_steps": epoch_steps,
            "brats_2021_epoch_ratio": epoch_ratio,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
