"""The shipped BraTS multi-task config (tumour presence, sub-region multi-label, tumour-area regression
and SimMIM) trains on tiny demo data with ``mtl-hf train``'s loop, and every supervised task's test
metric and its patient-bootstrap interval reach ``test_metrics.json``."""

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
    build_demo_data(demo, seed=0, brats_patients=8, brats_slices=12, ultrasound_patients=4)
    raw = yaml.safe_load(CONFIG.read_text())
    raw["output_dir"] = str(tmp_path / "run")
    raw["cache_dir"] = str(tmp_path / "cache")
    raw["data"]["root"] = str(demo / "brats")
    raw["data"]["image_size"] = 32
    raw["data"]["split"] = {"train": 0.5, "validation": 0.25, "test": 0.25}
    # 8 patients: with a 1-pixel threshold every sub-region shows in each split (ROC AUC needs both classes)
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
    for task, metric in (("tumour", "roc_auc"), ("subregions", "roc_auc"), ("tumour_area", "rmse")):
        entry = test[task]
        assert entry["n_samples"] > 0, task
        value, low, high = entry[metric], entry[f"{metric}_low"], entry[f"{metric}_high"]
        assert low - 1e-9 <= value <= high + 1e-9, (task, metric)  # a bootstrap bound may equal the value
    for metric in ("r2", "mae", "pearson"):
        assert metric in test["tumour_area"]
    assert "mim" not in test
