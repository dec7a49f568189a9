"""The shipped BraTS multi-task config (tumour presence, sub-region multi-label, tumour-area regression
and SimMIM) trains on tiny demo data with ``mtl-hf train``'s loop, and every supervised task's test
metrics reach ``test_metrics.json`` each with a patient-bootstrap interval that has width: the value
strictly inside (lower, upper)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from mtl_hf import MTLConfig
from mtl_hf.data import DataConfig, build_demo_data
from mtl_hf.options import from_dict
from mtl_hf.train import train
from mtl_hf.training.config import RunConfig, load_config

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "brats-multitask.yaml"


def test_the_shipped_config_validates() -> None:
    config = load_config(CONFIG)
    data = from_dict(DataConfig, config.data, "data")
    assert data.brats.targets == ["tumour", "subregions", "tumour_area"]
    model = MTLConfig(backbone_config=config.model.backbone_config, tasks=config.model.tasks)
    assert model.task_names == ["tumour", "subregions", "tumour_area", "mim"]
    assert set(config.task_columns) == {"tumour", "subregions", "tumour_area"}


def test_three_tasks_and_simmim_train_and_report_every_metric(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    demo = tmp_path / "demo"
    # 20 patients of 6 slices: 8 test patients, so that a bootstrap resample of them is rarely the
    # test split itself (with 2, every interval touched its estimate)
    build_demo_data(demo, seed=0, brats_patients=20, brats_slices=6, ultrasound_patients=4)
    raw = yaml.safe_load(CONFIG.read_text())
    raw["output_dir"] = str(tmp_path / "run")
    raw["cache_dir"] = str(tmp_path / "cache")
    raw["data"]["root"] = str(demo / "brats")
    raw["data"]["image_size"] = 32
    raw["data"]["split"] = {"train": 0.4, "validation": 0.2, "test": 0.4}
    # a 1-pixel threshold makes the slices that graze a tumour positive: presence is not a trivial
    # healthy-versus-tumour patient split (which a perfect ROC AUC of 1, at its interval's top, would be)
    raw["data"]["brats"]["min_tumour_pixels"] = 1
    raw["model"]["backbone_config"].update(
        {"hidden_size": 32, "num_hidden_layers": 2, "intermediate_size": 64, "image_size": 32}
    )
    raw["training"].update({"epochs": 1, "batch_size": 16, "log_every_steps": 1, "bootstrap_resamples": 200})
    result = train(from_dict(RunConfig, raw))
    assert result.state.finished
    out = Path(raw["output_dir"])

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert {"loss/tumour", "loss/subregions", "loss/tumour_area", "loss/mim"} <= set(train_rows[0])

    test = json.loads((out / "test_metrics.json").read_text())
    reported = {(task, r["metric"]): r for task, entry in test.items() for r in entry.get("metrics", [])}
    assert set(reported) == {
        ("tumour", "roc_auc"),
        ("subregions", "roc_auc"),
        *(("tumour_area", m) for m in ("r2", "mae", "rmse", "pearson")),
    }
    for (task, metric), row in reported.items():
        assert row["n_samples"] == test[task]["n_samples"] > 0 and row["n_groups"] == 8, (task, metric)
        within = row["lower"] <= row["value"] <= row["upper"] and row["lower"] < row["upper"]
        assert within, (task, metric, row)  # an AUC of 1.0 is its interval's upper end
        if metric != "roc_auc":  # the entry's own keys carry the same numbers
            assert (
                test[task][f"{metric}_low"] == row["lower"] and test[task][f"{metric}_high"] == row["upper"]
            )
    assert test["tumour"]["roc_auc_low"] == reported["tumour", "roc_auc"]["lower"]
    assert "mim" not in test
