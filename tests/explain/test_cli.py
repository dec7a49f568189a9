"""``mtl-hf explain`` through its entry point: image files, and a training run's data with BraTS masks."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from PIL import Image

from mtl_hf import MTLImageProcessor, MTLModel
from mtl_hf.cli import main as cli_main
from mtl_hf.explain.cli import main
from tests.conftest import tiny_backbone, tiny_config

TASKS = {"tumour": {"type": "binary_classification"}, "mim": {"type": "mim"}}


def save(folder: Path, tasks: dict) -> Path:
    MTLModel(tiny_config(tasks=tasks)).save_pretrained(folder)
    MTLImageProcessor(size=64).save_pretrained(folder)
    return folder


def test_explain_images(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = save(tmp_path / "mtl", TASKS)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(
        tmp_path / "x.png"
    )
    out = tmp_path / "out"
    argv = [str(model), "--images", str(tmp_path / "x.png"), "-o", str(out), "--no-progress", "--no-rollout"]
    assert main(argv) == 0
    assert (out / "attention" / "mtl" / "image_0.png").exists() and (out / "mim" / "image_0.png").exists()
    assert not (out / "attention_grid_rollout.png").exists()
    assert "3 figures" in capsys.readouterr().out  # the attention figure, the grid (mean), the MIM panel
    assert cli_main(["explain", str(model), "--images", str(tmp_path / "nope.png"), "-o", str(out)]) == 1
    assert (
        f"mtl-hf explain: error: DataError: {tmp_path / 'nope.png'}: no such file" in capsys.readouterr().err
    )


def write_brats(root: Path, patients: int = 8) -> None:
    """BraTS-2021-named FLAIR volumes (32x32x6) with a box tumour in slices 2-3 of every other patient."""
    rng = np.random.default_rng(0)
    for p in range(patients):
        case = root / f"BraTS2021_{p:05d}"
        case.mkdir(parents=True)
        flair = np.zeros((32, 32, 6), np.int16)
        flair[2:30, 2:30, :] = rng.integers(100, 400, (28, 28, 6))
        seg = np.zeros((32, 32, 6), np.uint8)
        if p % 2:
            seg[8:16, 10:20, 2:4] = 2
            flair[seg > 0] += 600
        nib.save(nib.Nifti1Image(flair, np.eye(4)), case / f"BraTS2021_{p:05d}_flair.nii.gz")
        nib.save(nib.Nifti1Image(seg, np.eye(4)), case / f"BraTS2021_{p:05d}_seg.nii.gz")


def test_explain_a_runs_test_split_with_lesion_masks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_brats(tmp_path / "brats")
    config = {
        "output_dir": str(tmp_path / "run"),
        "model": {"backbone_config": tiny_backbone(), "tasks": TASKS},
        "data": {
            "kind": "brats",
            "root": str(tmp_path / "brats"),
            "image_size": 64,
            "split": {"train": 0.5, "validation": 0.25, "test": 0.25},
        },
        "task_columns": {"tumour": "tumour"},
        "cache_dir": str(tmp_path / "cache"),
    }
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(config))
    save(tmp_path / "run" / "best_model", TASKS)
    save(tmp_path / "stl", {"tumour": {"type": "binary_classification"}})
    out = tmp_path / "out"
    argv = [str(tmp_path / "run"), str(tmp_path / "stl"), "--dataset", str(tmp_path / "run"), "-o", str(out)]
    assert main([*argv, "--max-images", "2", "--no-mim", "--n-resamples", "50", "--no-progress"]) == 0
    rows = list(csv.DictReader((out / "attention_localization.csv").read_text().splitlines()))
    assert {r["model"] for r in rows} == {"run", "stl", "chance"}
    # Test patients with a tumour have two lesion slices each; every row scores the same slices.
    assert len({(r["n_images"], r["n_patients"]) for r in rows}) == 1
    n_images, n_patients = int(rows[0]["n_images"]), int(rows[0]["n_patients"])
    assert n_images == 2 * n_patients and n_patients >= 1
    for r in rows:
        assert 0.0 <= float(r["ci_low"]) <= float(r["value"]) + 1e-9 <= float(r["ci_high"]) + 2e-9
    chance = {r["metric"]: float(r["value"]) for r in rows if r["model"] == "chance"}
    assert chance["attention_in_lesion"] == pytest.approx(8 * 10 / (32 * 32))  # lesion area share, resized
    assert "| run | mean |" in capsys.readouterr().out
    assert (out / "attention" / "stl" / "image_1.png").exists()
