"""What a run says before and after it trains: split sizes, label counts, empty and tiny test splits,
the test metrics, and an output folder that cannot be written or a data folder that is not there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from mtl_hf.cli import main
from mtl_hf.run_folder import RunFolder, RunFolderError
from mtl_hf.train import train
from mtl_hf.training.config import RunConfig
from mtl_hf.training.report import EmptySplitError
from tests.training.synthetic import base_config, image_manifest_run


def image_run(tmp_path: Path, split: dict[str, float], **training: Any) -> RunConfig:
    """A run on 20 real PNG patients (2 images each), positives carry a bright square."""
    return image_manifest_run(tmp_path, split=split, epochs=1, strategy="stl", **training)


def test_split_sizes_label_counts_and_test_metrics_are_printed_and_a_small_test_split_is_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    torch.set_num_threads(1)
    config = image_run(tmp_path, {"train": 0.6, "validation": 0.2, "test": 0.2})
    train(config, None)
    printed = capsys.readouterr().out
    # 20 patients: 12 / 4 / 4, two images each, one negative and one positive per patient
    assert "train: 24 samples, 12 patients; label: negative 12, positive 12" in printed
    assert "validation: 8 samples, 4 patients; label: negative 4, positive 4" in printed
    assert "test: 8 samples, 4 patients; label: negative 4, positive 4" in printed
    warning = "the test split holds 4 patients (fewer than 10): its confidence intervals are unreliable"
    assert f"warning: {warning}" in printed and f"test: warning: {warning}" in printed
    run = RunFolder(config.output_dir)
    metrics = run.read_test_metrics()["tumour"]
    line = (
        f"test: tumour (n=8): roc_auc {metrics['roc_auc']:.3f} "
        f"[{metrics['roc_auc_low']:.3f}, {metrics['roc_auc_high']:.3f}]"
    )
    assert line in printed
    assert run.read_run_info()["warnings"] == [warning]  # what compare's results.md reports


def test_an_empty_test_or_validation_split_stops_before_training(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = image_run(tmp_path, {"train": 0.8, "validation": 0.2, "test": 0.0})
    with pytest.raises(EmptySplitError) as info:
        train(config, None)
    assert str(info.value).startswith("the test split is empty, so the run could not test a model (train: ")
    assert "test: 0 samples, 0 patients" in str(info.value)
    run = RunFolder(config.output_dir)
    assert not run.list_checkpoints() and not run.metrics_file.exists()


def test_an_output_dir_that_cannot_be_written_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = image_run(tmp_path, {"train": 0.6, "validation": 0.2, "test": 0.2})
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    config.output_dir = str(a_file)
    with pytest.raises(RunFolderError, match=f"{a_file}: output_dir is a file, not a folder"):
        train(config, None)
    config.output_dir = "/proc/mtl-hf-run"
    with pytest.raises(RunFolderError, match="/proc/mtl-hf-run: cannot be used as output_dir"):
        train(config, None)
    assert not (tmp_path / "cache").exists()  # refused before the data were touched
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps({**base_config(str(a_file)), "data": {"kind": "brats", "root": str(tmp_path)}})
    )
    assert main(["train", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mtl-hf train: error: RunFolderError: {a_file}: output_dir is a file")
    assert "Traceback" not in err


@pytest.mark.parametrize("kind", ["brats", "images"])
def test_a_missing_data_folder_is_named_before_the_model_or_the_output_folder_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = base_config(str(tmp_path / "run"), epochs=1, strategy="stl")
    config["model"] = {"backbone": "no-such-lab/no-such-vit", "tasks": config["model"]["tasks"]}  # a Hub id
    config["cache_dir"] = str(tmp_path / "cache")
    missing = tmp_path / "no_such_data"
    config["data"] = {"kind": kind, "root": str(missing)}
    if kind == "images":
        config["data"]["images"] = {"targets": {"label": {"kind": "binary"}}}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    assert main(["train", str(path)]) == 1
    err = capsys.readouterr().err
    assert err == f"mtl-hf train: error: DataError: {missing}: data folder not found (data.root)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]  # no output folder, no cache

    # a manifest source: the manifest is what must exist, named with its key
    config["data"] = {
        "kind": "images",
        "root": str(tmp_path),
        "images": {"manifest": "rows.csv", "targets": {"label": {"kind": "binary", "columns": ["y"]}}},
    }
    path.write_text(json.dumps(config))
    assert main(["train", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"DataError: {tmp_path / 'rows.csv'}: manifest not found (data.images.manifest)" in err
    assert not (tmp_path / "run").exists()


def test_per_label_test_metrics_are_printed_one_named_label_at_a_time() -> None:
    from mtl_hf.training.report import test_metrics_lines

    results = {
        "findings": {
            "n_samples": 30, "roc_auc": 0.75, "roc_auc_low": 0.6, "roc_auc_high": 0.9,
            "roc_auc_per_label": [0.8125, 0.6875], "roc_auc_per_label_low": [0.7, 0.5],
            "roc_auc_per_label_high": [0.9, 0.875], "pr_auc_per_label": [0.5, 0.25],
        },
        "grade": {"n_samples": 30, "roc_auc_per_label": [0.5, 0.625, 0.75]},  # no names given: indices
    }  # fmt: skip
    lines = test_metrics_lines(results, {"findings": ["oedema", "necrosis"], "grade": ["low"]})
    assert lines == [
        "findings (n=30): roc_auc 0.750 [0.600, 0.900]",
        "findings roc_auc per label: oedema 0.812 [0.700, 0.900], necrosis 0.688 [0.500, 0.875]",
        "findings pr_auc per label: oedema 0.500, necrosis 0.250",
        "grade (n=30): no interval computed",
        "grade roc_auc per label: 0 0.500, 1 0.625, 2 0.750",
    ]
