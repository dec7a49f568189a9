"""``mtl-hf demo``: the README's main job. Builds the offline demo data, then runs the low-data study
with :mod:`mtl_hf.experiments.compare`: STL, pretrain-then-fine-tune and MTL at 10 %, 30 % and 100 % of
the training patients, three seeds each, all tested on the same patients; prints the tables and what
they show, and writes ``results.md``, ``results.csv`` and the low-data figure.

The demo data are real anatomy (the MNI152 brain template shipped in nilearn) and real B-mode
ultrasound frames (pydicom-data) with synthetic lesions and pathology patterns (see the data card
written next to them): they show what the software does, not how the strategies compare on real
patients. The models are tiny ViTs at 64 px, trained two runs at a time (one process per core, one
torch thread each), so the 27 runs fit in minutes on a 2-core CPU. ``configs/`` holds the paper-scale
versions (ViT-S/16 from DINO at 224 px). What each part cost is written to ``demo_timing.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from ..safe_yaml import load_yaml

DATASETS = ("brats", "ultrasound")
TIMING_FILE = "demo_timing.json"


def _packaged(name: str) -> dict[str, Any]:
    text = resources.files("mtl_hf.experiments").joinpath(f"configs/{name}").read_text()
    return dict(load_yaml(text, f"mtl_hf/experiments/configs/{name}"))


def demo_run_config(dataset: str, data_dir: Path) -> dict[str, Any]:
    """The packaged demo training config of ``dataset``, pointed at ``data_dir``."""
    config = _packaged(f"demo_{dataset}.yaml")
    config["data"]["root"] = str(data_dir / dataset)
    return config


def demo_compare_config(output_dir: Path) -> dict[str, Any]:
    """The packaged grid of the demo (``configs/demo_grid.yaml``) as a compare config writing to ``output_dir``."""
    return {**_packaged("demo_grid.yaml"), "output_dir": str(output_dir)}


def make_demo_data_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mtl-hf make-demo-data",
        description=(
            "Write the offline demo data: a BraTS-layout NIfTI set on the real MNI152 brain with synthetic "
            "tumours, and a muscle-ultrasound image set on real B-mode frames with synthetic pathology "
            "patterns, plus a data card. Deterministic for a given seed. Needs `pip install mtl-hf[demo]`."
        ),
    )
    parser.add_argument("out", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything drawn (default 0)")
    parser.add_argument("--brats-patients", type=int, default=200, help="BraTS-like patients (default 200)")
    parser.add_argument(
        "--ultrasound-patients", type=int, default=50, help="ultrasound patients (default 50)"
    )
    parser.add_argument("--workers", type=int, default=_default_workers(),
                        help="processes drawing patients (default: 2, or 1 on a 1-core machine)")  # fmt: skip
    args = parser.parse_args(argv)
    summary = build(
        Path(args.out), args.seed, args.brats_patients, args.ultrasound_patients, workers=args.workers
    )
    print(f"Demo data in {summary.out_dir} (data card: {summary.card}), built in {summary.seconds:.1f} s")
    return 0


def build(
    out: Path, seed: int, brats_patients: int = 200, ultrasound_patients: int = 50, *, workers: int = 1
) -> Any:
    from ..data import build_demo_data

    return build_demo_data(
        out,
        seed=seed,
        brats_patients=brats_patients,
        ultrasound_patients=ultrasound_patients,
        workers=workers,
    )


def _default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _clock() -> dict[str, Any]:
    """Wall time and CPU seconds of this process and of its finished child processes, and the load."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "started": time.time(),
        "wall": time.perf_counter(),
        "cpu_self": me.ru_utime + me.ru_stime,
        "cpu_children": children.ru_utime + children.ru_stime,
        "load": os.getloadavg()[0],
    }


def _elapsed(start: dict[str, Any]) -> dict[str, Any]:
    now = _clock()
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start["started"])),
        "wall_seconds": round(now["wall"] - start["wall"], 2),
        "cpu_seconds_main_process": round(now["cpu_self"] - start["cpu_self"], 2),
        "cpu_seconds_workers": round(now["cpu_children"] - start["cpu_children"], 2),
        "load_average_at_start": round(start["load"], 2),
        "load_average_at_end": round(now["load"], 2),
    }


def _read_timing(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _needs_build(data_dir: Path) -> bool:
    """No demo data there, or data drawn with other sizes than the demo's (an older build)."""
    summary = data_dir / "demo_summary.json"
    if not summary.exists():
        return True
    try:
        record = json.loads(summary.read_text())
    except (OSError, json.JSONDecodeError):
        return True
    return len(record.get("brats_patients", [])) != 200


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mtl-hf demo",
        description=(
            "Build the offline demo data (if missing) and run the low-data study on it: single-task learning, "
            "pretrain-then-fine-tune and multi-task learning at 10/30/100 %% of the training patients with "
            "three seeds; test ROC AUC with patient-level intervals, paired tests, a figure and a summary in "
            "words. Run again to resume; finished runs are skipped."
        ),
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--data", default="demo_data", help="demo data folder (default demo_data)")
    parser.add_argument(
        "--dataset", choices=[*DATASETS, "both"], default="brats", help="which demo set (default brats)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (default 0 1 2)")
    parser.add_argument("--epochs", type=int, help="override the epochs of the demo config")
    parser.add_argument("--workers", type=int, default=_default_workers(),
                        help="runs trained at the same time, one process and one torch thread each "
                             "(default: 2, or 1 on a 1-core machine)")  # fmt: skip
    args, overrides = parser.parse_known_args(argv)

    from ..options import from_dict
    from ..training.config import apply_overrides
    from .compare import CompareConfig, compare

    out, data_dir = Path(args.out), Path(args.data)
    # What each part cost when it did its work: a part found done (data present, runs finished) keeps
    # the record of the call that did it.
    timing = _read_timing(out / TIMING_FILE)
    timing.update(
        cpu_count=os.cpu_count(), cpu=platform.processor() or platform.machine(), workers=args.workers
    )
    parts: dict[str, Any] = timing.setdefault("parts", {})
    if _needs_build(data_dir):
        print(f"Building the demo data in {data_dir} ...")
        clock = _clock()
        build(data_dir, seed=0, workers=args.workers)
        parts["data"] = _elapsed(clock)
    datasets = DATASETS if args.dataset == "both" else (args.dataset,)
    for dataset in datasets:
        base = demo_run_config(dataset, data_dir)
        if args.epochs is not None:
            base["training"]["epochs"] = args.epochs
        raw = demo_compare_config(out / dataset)
        if args.seeds is not None:
            raw["grid"]["seeds"] = args.seeds
        config = from_dict(CompareConfig, apply_overrides(raw, overrides))
        print(f"== {dataset}: STL vs pretrain -> fine-tune vs MTL, low-data study ==")
        clock = _clock()
        print(compare(config, base, workers=args.workers))
        info = json.loads((Path(config.output_dir) / "compare_info.json").read_text())
        trained = sum(r["finished_at"] >= clock["started"] for r in info["timing"]["runs"])
        if trained or dataset not in parts:
            parts[dataset] = {**_elapsed(clock), "runs_trained": trained}
        print(f"Tables, figure and runs in {config.output_dir}")
    timing["total"] = {
        key: round(sum(part[key] for part in parts.values()), 2)
        for key in ("wall_seconds", "cpu_seconds_main_process", "cpu_seconds_workers")
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / TIMING_FILE).write_text(json.dumps(timing, indent=2) + "\n")
    total = timing["total"]
    print(
        f"The demo took {total['wall_seconds'] / 60:.1f} min "
        f"({total['cpu_seconds_main_process'] + total['cpu_seconds_workers']:.0f} CPU seconds) on "
        f"{os.cpu_count()} cores; what each part cost: {out / TIMING_FILE}"
    )
    return 0
