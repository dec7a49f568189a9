"""onnxruntime against PyTorch for CPU inference of the exported graph, in the same process.

One randomly initialised model (DINO ViT-S/16 at 224 px by default: a binary and a 3-class head) is
exported with :func:`mtl_hf.export.export_onnx`; then each round runs, in a fresh random order (seeded),
PyTorch's eval forward (``model(pixel_values, tasks=...)`` under ``torch.inference_mode``), a second
identical PyTorch call (the A/A control: its ratio is the noise floor) and onnxruntime's session on the
same batch. Both runtimes get the same number of threads (``--threads``: ``torch.set_num_threads`` and
onnxruntime's ``intra_op_num_threads``). With one thread the clock is the process's CPU time (other jobs
on a shared machine barely move it), otherwise wall-clock time. Reported: images/s of each (median
round), and the median over rounds of the per-round throughput ratio onnxruntime / PyTorch; the
largest absolute difference between the two runtimes' logits is printed as a check.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_onnx --threads 1 --batch-size 8 --rounds 10
    OMP_NUM_THREADS=1 python -m benchmarks.bench_onnx --small --threads 1          # tiny ViT, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.harness.cases import SIZES
from benchmarks.harness.report import machine_info
from benchmarks.interleaved import time_interleaved
from mtl_hf import MTLConfig, MTLImageProcessor, MTLModel
from mtl_hf.export import OnnxModel, export_onnx

TASKS = {
    "tumour": {"type": "binary_classification"},
    "grade": {"type": "multiclass_classification", "num_classes": 3},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="the small ViT (192 wide, 6 layers, 112 px)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    machine = machine_info(torch.device("cpu"), args.threads)
    torch.manual_seed(0)
    size = "small" if args.small else "vits16"
    backbone = {"model_type": "vit", **SIZES[size]}
    model = MTLModel(MTLConfig(backbone_config=backbone, tasks=TASKS)).eval()
    processor = MTLImageProcessor(size=backbone["image_size"])
    tasks = list(TASKS)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        export_onnx(model, Path(tmp) / "onnx", image_processor=processor)
        export_s = time.perf_counter() - start
        session = OnnxModel(Path(tmp) / "onnx", threads=args.threads)
        pixel_values = torch.randn(args.batch_size, 3, backbone["image_size"], backbone["image_size"])
        x = pixel_values.numpy()

        def run_torch() -> None:
            with torch.inference_mode():
                model(pixel_values, tasks=tasks)

        cases = {"pytorch": run_torch, "pytorch (A/A)": run_torch, "onnxruntime": lambda: session(x)}
        times = time_interleaved(cases, rounds=args.rounds, warmup=args.warmup, threads=args.threads)
        with torch.inference_mode():
            reference = model(pixel_values, tasks=tasks).logits
        got = session(x)
        max_diff = max(float(np.abs(got[f"logits.{t}"] - reference[t].numpy()).max()) for t in tasks)

    def ratio(a: str, b: str) -> float:
        # throughput of a over throughput of b, per round
        return statistics.median(tb / ta for ta, tb in zip(times[a], times[b], strict=True))

    images_per_s = {name: args.batch_size / statistics.median(t) for name, t in times.items()}
    result: dict[str, Any] = {
        "machine": {**machine, "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "settings": {
            "size": size,
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "clock": "cpu" if args.threads == 1 else "wall",
        },
        "export_s": round(export_s, 2),
        "images_per_s": {k: round(v, 3) for k, v in images_per_s.items()},
        "ratios": {
            "onnxruntime / pytorch (img/s)": round(ratio("onnxruntime", "pytorch"), 4),
            "pytorch (A/A) / pytorch (img/s)": round(ratio("pytorch (A/A)", "pytorch"), 4),
        },
        "max_abs_logit_difference": max_diff,
    }
    print(
        f"{size}, batch {args.batch_size}, {args.threads} thread(s), {args.rounds} rounds ({result['settings']['clock']} clock)"
    )
    for name, value in images_per_s.items():
        print(f"  {name:<16} {value:8.2f} img/s")
    for name, value in result["ratios"].items():
        print(f"  {name:<34} {value:.3f}x")
    print(f"  max |logits onnxruntime - pytorch| = {max_diff:.2e}; export took {export_s:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
