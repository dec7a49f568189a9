"""``mtl-hf demo``: the README's main job. Builds the offline demo data, then compares STL,
pretrain-then-fine-tune and MTL on it with :mod:`mtl_hf.experiments.compare`, and prints the table.

The demo data are real anatomy (the MNI152 brain template shipped in nilearn) and real B-mode
ultrasound frames (pydicom-data) with synthetic lesions and pathology patterns (see the data card
written next to them); the models are tiny ViTs at 64 px so the whole comparison runs in minutes on a
laptop CPU. ``configs/`` holds the paper-scale versions (ViT-S/16 from DINO at 224 px).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from ..safe_yaml import load_yaml

DATASETS = ("brats", "ultrasound")


def demo_run_config(dataset: str, data_dir: Path) -> dict[str, Any]:
    """The packaged demo training config of ``dataset``, pointed at ``data_dir``."""
    text = resources.files("mtl_hf.experiments").joinpath(f"configs/demo_{dataset}.yaml").read_text()
    config = load_yaml(text, f"mtl_hf/experiments/configs/demo_{dataset}.yaml")
    config["data"]["root"] = str(data_dir / dataset)
    return config


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
    parser.add_argument("--brats-patients", type=int, default=32, help="BraTS-like patients (default 32)")
    parser.add_argument(
        "--ultrasound-patients", type=int, default=50, help="ultrasound patients (default 50)"
    )
    args = parser.parse_args(argv)
    summary = build(Path(args.out), args.seed, args.brats_patients, args.ultrasound_patients)
    print(f"Demo data in {summary.out_dir} (data card: {summary.card}), built in {summary.seconds:.1f} s")
    return 0


def build(out: Path, seed: int, brats_patients: int = 32, ultrasound_patients: int = 50) -> Any:
    from ..data import build_demo_data

    return build_demo_data(
        out, seed=seed, brats_patients=brats_patients, ultrasound_patients=ultrasound_patients
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mtl-hf demo",
        description=(
            "Build the offline demo data (if missing) and compare single-task learning, pretrain-then-fine-tune "
            "and multi-task learning on it: ROC AUC with patient-level confidence intervals and paired tests. "
            "Run again to resume; finished runs are skipped."
        ),
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--data", default="demo_data", help="demo data folder (default demo_data)")
    parser.add_argument(
        "--dataset", choices=[*DATASETS, "both"], default="brats", help="which demo set (default brats)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default 0)")
    parser.add_argument("--epochs", type=int, help="override the epochs of the demo config")
    args, overrides = parser.parse_known_args(argv)

    from ..options import OptionsError, from_dict
    from .compare import CompareConfig, compare

    data_dir = Path(args.data)
    if not (data_dir / "demo_summary.json").exists():
        print(f"Building the demo data in {data_dir} ...")
        build(data_dir, seed=0)
    datasets = DATASETS if args.dataset == "both" else (args.dataset,)
    for dataset in datasets:
        base = demo_run_config(dataset, data_dir)
        if args.epochs is not None:
            base["training"]["epochs"] = args.epochs
        raw = {
            "output_dir": str(Path(args.out) / dataset),
            "grid": {"strategies": ["stl", "pretrain", "mtl"], "seeds": args.seeds},
        }
        from ..training.config import apply_overrides

        try:
            config = from_dict(CompareConfig, apply_overrides(raw, overrides))
            print(f"== {dataset}: STL vs pretrain -> fine-tune vs MTL ==")
            print(compare(config, base))
        except OptionsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"Tables, plots and runs in {config.output_dir}")
    return 0
