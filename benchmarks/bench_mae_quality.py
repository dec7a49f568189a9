"""SimMIM or MAE as the auxiliary task of MTL: test ROC AUC, reconstruction error and training time.

On the offline BraTS-like demo data (``mtl-hf make-demo-data``: 200 patients x 10 FLAIR slices) with the
packaged tiny demo config (a 4-layer, 64-wide ViT at 64 px; patients split 40 / 40 / 120, i.e. 400
training, 400 validation and 1,200 test slices), three ordinary training runs go through
``mtl_hf.experiments.compare``:

* ``stl``: tumour classification alone;
* ``mtl_simmim``: classification + the ``mim`` head (SimMIM, 16-px blocks, ratio 0.6), as packaged;
* ``mtl_mae``: classification + the ``mae`` head (75 % of patches hidden from the encoder; decoder
  32 wide, 2 blocks, so that it stays light next to this 64-wide encoder).

Reported: each run's test ROC AUC with its patient-level bootstrap interval, the paired difference
MAE − SimMIM (DeLong and paired bootstrap, same test slices), the wall time of each run (which
includes evaluation and the machine's other load), the training-step time of the three demo models
measured apart (interleaved, process CPU time, the demo batch of 32), and the
reconstruction error of both best models on the test slices, each scored on the *same* masks of both
kinds (SimMIM's blocks at 0.6 and MAE's random patches at 0.75): mean squared error over masked pixels
in normalised intensity units, next to two trivial references (predicting 0, i.e. the normalisation
mean, and predicting each image's mean visible intensity).

    OMP_NUM_THREADS=1 python benchmarks/bench_mae_quality.py --out runs/bench-mae

(10-20 min on one core when last timed, on an earlier demo build of 32 patients x 20 slices with a
120-slice test set; the training steps are as many now, the evaluation covers 1,600 slices instead.)

One seed and the demo's default epochs keep it bounded: read differences within the intervals as
noise. Finished runs are reused when the command is run again.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader
from transformers import AutoModel

from mtl_hf import MTLConfig, MTLModel
from mtl_hf.evaluation import align_by_sample_id, compare_scores
from mtl_hf.experiments.compare import CompareConfig, compare
from mtl_hf.experiments.demo import build, demo_run_config
from mtl_hf.masking import random_block_mask, random_patch_mask
from mtl_hf.options import from_dict
from mtl_hf.run_folder import RunFolder
from mtl_hf.training.config import RunConfig
from mtl_hf.training.inputs import build_training_data

MAE_TASK = {"type": "mae", "mask_ratio": 0.75, "decoder_dim": 32, "decoder_depth": 2, "decoder_heads": 2}


def variants(data_dir: Path, cache_dir: Path) -> dict[str, tuple[dict[str, Any], str]]:
    """``{name: (base training config, strategy)}`` of the three runs."""
    simmim = demo_run_config("brats", data_dir)
    simmim["cache_dir"] = str(cache_dir)
    mae = copy.deepcopy(simmim)
    tasks = mae["model"]["tasks"]
    del tasks["mim"]
    tasks["mae"] = dict(MAE_TASK)
    weights = mae["model"]["weighting"].get("weights", {})
    if "mim" in weights:
        weights["mae"] = weights.pop("mim")
    return {"stl": (simmim, "stl"), "mtl_simmim": (simmim, "mtl"), "mtl_mae": (mae, "mtl")}


def run_variant(name: str, base: dict[str, Any], strategy: str, out: Path) -> tuple[Path, float]:
    """Train (or reuse) one run through ``compare``; return its run folder and wall seconds."""
    config = from_dict(
        CompareConfig,
        {"output_dir": str(out / name), "grid": {"strategies": [strategy], "seeds": [0]}},
    )
    timing_file = out / name / "wall_seconds.json"
    start = time.perf_counter()
    compare(config, base)
    seconds = time.perf_counter() - start
    folder = next((out / name / "runs").iterdir())
    if timing_file.exists():  # reused: keep the time of the run that trained
        seconds = json.loads(timing_file.read_text())["seconds"]
    else:
        timing_file.write_text(json.dumps({"seconds": seconds}))
    return folder, seconds


@torch.no_grad()
def reconstruction_errors(runs: dict[str, Path], seed: int = 1234) -> dict[str, dict[str, float]]:
    """MSE over masked pixels of each MTL model's best checkpoint on the test slices, for both mask
    kinds (the same masks for every model), and of the two trivial references."""
    models = {n: AutoModel.from_pretrained(RunFolder(folder).best_model).eval() for n, folder in runs.items()}
    config_text = RunFolder(next(iter(runs.values()))).read_config_text() or ""
    config = from_dict(RunConfig, yaml.safe_load(config_text))
    first = next(iter(models.values()))
    data = build_training_data(config, first)
    assert data.test is not None
    loader = DataLoader(data.test, batch_size=64, shuffle=False, collate_fn=data.collate_fn)
    patch = first.patch_size
    mim_spec = demo_run_config("brats", Path("."))["model"]["tasks"]["mim"]
    generator = torch.Generator().manual_seed(seed)
    sums: dict[tuple[str, str], float] = {}
    counts: dict[str, float] = {}
    for batch in loader:
        x = batch["pixel_values"]
        grid = first.grid_size(x)
        masks = {
            "simmim_blocks_0.6": random_block_mask(
                len(x), grid, patch, mim_spec["mask_patch_size"], mim_spec["mask_ratio"], generator=generator
            ),
            "mae_random_0.75": random_patch_mask(len(x), grid, 0.75, generator=generator),
        }
        for kind, mask in masks.items():
            m = mask.reshape(-1, *grid).repeat_interleave(patch, 1).repeat_interleave(patch, 2).unsqueeze(1)
            m = m.float()
            counts[kind] = counts.get(kind, 0.0) + float(m.sum()) * x.shape[1]
            predictions = {}
            for name, model in models.items():
                task = next(t for t in model.config.task_names if model.head(t).view != "clean")
                out = model(pixel_values=x, bool_masked_pos=mask, tasks=[task])
                predictions[name] = out.reconstructions[task]
            visible_mean = ((1 - m) * x).sum(dim=(2, 3), keepdim=True) / (1 - m).sum(dim=(2, 3), keepdim=True)
            predictions["reference: 0 (normalisation mean)"] = torch.zeros_like(x)
            predictions["reference: mean visible intensity"] = visible_mean.expand_as(x)
            for name, r in predictions.items():
                key = (name, kind)
                sums[key] = sums.get(key, 0.0) + float(((r - x).square() * m).sum())
    table: dict[str, dict[str, float]] = {}
    for (name, kind), total in sums.items():
        table.setdefault(name, {})[kind] = total / counts[kind]
    return table


def step_times(bases: dict[str, tuple[dict[str, Any], str]], rounds: int = 15) -> dict[str, float]:
    """Median process-CPU seconds of one training step (forward, backward, fused AdamW) of each demo
    model on the same random batch, the three interleaved in random order, 3 warm-up rounds."""
    models, optimizers = {}, {}
    batch = None
    for name, (base, strategy) in bases.items():
        section = base["model"]
        tasks = section["tasks"]
        if strategy == "stl":
            tasks = {t: spec for t, spec in tasks.items() if spec["type"] == "binary_classification"}
        config = MTLConfig(backbone_config=section["backbone_config"], tasks=tasks)
        models[name] = MTLModel(config).train()
        optimizers[name] = torch.optim.AdamW(models[name].parameters(), lr=1e-4, fused=True)
        if batch is None:
            size, channels = config.backbone_config.image_size, config.backbone_config.num_channels
            batch_size = base["training"]["batch_size"]
            batch = torch.randn(batch_size, channels, size, size), torch.randint(0, 2, (batch_size,))
    assert batch is not None
    times: dict[str, list[float]] = {n: [] for n in models}
    shuffler = random.Random(0)
    for r in range(3 + rounds):
        order = list(models)
        shuffler.shuffle(order)
        for name in order:
            start = time.process_time()
            out = models[name](pixel_values=batch[0], labels={"tumour": batch[1]})
            out.loss.backward()
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
            if r >= 3:
                times[name].append(time.process_time() - start)
    return {n: statistics.median(t) for n, t in times.items()}


def test_auc(folder: Path, task: str = "tumour") -> dict[str, float]:
    metrics = (RunFolder(folder).read_test_metrics() or {})[task]
    return {k: metrics[k] for k in ("roc_auc", "roc_auc_low", "roc_auc_high")}


def paired(folder_a: Path, folder_b: Path, task: str = "tumour") -> dict[str, float]:
    """MAE − SimMIM on the same test slices: ΔAUC, DeLong interval and p, paired bootstrap p."""
    a = RunFolder(folder_a).read_test_predictions()[task]
    b = RunFolder(folder_b).read_test_predictions()[task]
    order = align_by_sample_id(a["ids"], b["ids"])
    if not np.array_equal(a["labels"], b["labels"][order]):
        raise ValueError(f"{folder_a} and {folder_b} disagree on test labels")
    result = compare_scores(
        a["labels"], a["probs"], b["probs"][order], "binary", a["patients"], n_resamples=2000
    )
    return {
        "delta_auc": result.difference,
        "delong_low": result.delong.low if result.delong else float("nan"),
        "delong_high": result.delong.high if result.delong else float("nan"),
        "delong_p": result.delong.p_value if result.delong else float("nan"),
        "bootstrap_p": result.bootstrap.p_value,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-mae"), help="output folder")
    parser.add_argument(
        "--data", type=Path, help="demo data folder (default: OUT/demo_data, built if missing)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    data_dir = args.data or args.out / "demo_data"
    if not (data_dir / "demo_summary.json").exists():
        print(f"building the demo data in {data_dir} ...")
        build(data_dir, seed=0)
    folders: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    bases = variants(data_dir, args.out / "cache")
    for name, (base, strategy) in bases.items():
        folders[name], seconds[name] = run_variant(name, base, strategy, args.out)
    steps = step_times(bases)
    aucs = {name: test_auc(folder) for name, folder in folders.items()}
    difference = paired(folders["mtl_mae"], folders["mtl_simmim"])
    errors = reconstruction_errors({n: folders[n] for n in ("mtl_simmim", "mtl_mae")})
    loads = [round(x, 2) for x in os.getloadavg()]
    result = {
        "threads": args.threads,
        "loadavg_end": loads,
        "mae_task": MAE_TASK,
        "test_roc_auc": aucs,
        "mae_minus_simmim": difference,
        "wall_seconds": seconds,
        "step_cpu_seconds": steps,
        "reconstruction_mse_masked_pixels": errors,
    }
    print(f"\nTest ROC AUC (tumour), 1 seed, torch threads {args.threads}, load average {loads}:\n")
    print(
        "| run | ROC AUC | 95 % bootstrap CI | run wall time, s | training step, CPU ms | step / stl |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    for name, auc in aucs.items():
        print(
            f"| {name} | {auc['roc_auc']:.3f} | [{auc['roc_auc_low']:.3f}, {auc['roc_auc_high']:.3f}] | "
            f"{seconds[name]:.0f} | {1e3 * steps[name]:.0f} | {steps[name] / steps['stl']:.2f} |"
        )
    d = difference
    print(
        f"\nMAE − SimMIM: ΔAUC {d['delta_auc']:+.3f}, DeLong 95 % CI [{d['delong_low']:+.3f}, "
        f"{d['delong_high']:+.3f}], p {d['delong_p']:.3f}; paired bootstrap p {d['bootstrap_p']:.3f}\n"
    )
    kinds = sorted({k for row in errors.values() for k in row})
    print("Reconstruction MSE over masked test pixels (normalised units), same masks for every row:\n")
    print("| model | " + " | ".join(kinds) + " |\n|---|" + "---:|" * len(kinds))
    for name, row in errors.items():
        print(f"| {name} | " + " | ".join(f"{row[k]:.4f}" for k in kinds) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=float) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
