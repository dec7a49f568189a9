"""``mtl-hf predict`` through its command-line entry point."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from mtl_hf.cli import main as cli_main
from mtl_hf.inference.cli import main


def test_predict_command_writes_files(
    three_task_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "a.png")
    data = rng.integers(1, 1000, (64, 64, 4)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii.gz")
    out = tmp_path / "out"
    argv = [str(three_task_model), str(tmp_path / "a.png"), str(tmp_path / "v.nii.gz"), "-o", str(out)]
    assert main([*argv, "--task", "tumour", "--aggregation", "max", "--no-progress"]) == 0
    doc = json.loads((out / "predictions.json").read_text())
    assert list(doc["tasks"]) == ["tumour"] and len(doc["images"]) == 5
    assert doc["aggregation"]["method"] == "max"
    slices = [i["probabilities"]["tumour"] for i in doc["images"][1:]]
    assert doc["volumes"][0]["probabilities"]["tumour"] == pytest.approx(max(slices))
    assert (out / "volume_predictions.csv").exists()
    printed = capsys.readouterr().out
    assert "5 images/slices, 1 volumes" in printed and "v.nii.gz (4 slices): tumour=" in printed


def test_predict_command_reports_errors(
    three_task_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    argv = [str(three_task_model), str(tmp_path / "missing.png"), "-o", str(out), "--no-progress"]
    assert main(argv) == 1
    assert "missing.png: no such file" in capsys.readouterr().err
    assert "missing.png,no such file or folder" in (out / "errors.csv").read_text()
    # nothing could be run: one line through mtl-hf's error handling, no traceback
    assert (
        cli_main(["predict", str(tmp_path / "no_model"), str(tmp_path), "-o", str(out), "--no-progress"]) == 1
    )
    err = capsys.readouterr().err
    assert f"mtl-hf predict: error: ModelNotFoundError: {tmp_path / 'no_model'}: not a folder here" in err
    assert "Traceback" not in err
