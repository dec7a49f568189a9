"""``mtl-hf compare``'s results of every task: a regression task's metrics and paired differences, from two
real training runs, checked against scikit-learn on resamples rebuilt sample by sample."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from mtl_hf.evaluation import group_resamples
from mtl_hf.experiments.compare import Cell, CompareConfig, GridSection
from mtl_hf.experiments.task_results import DIFFERENCES_CSV, METRICS_CSV, task_results_section
from mtl_hf.options import from_dict
from mtl_hf.train import train
from mtl_hf.training.config import RunConfig
from tests.training.synthetic import base_config, collate, make_data


def collate_with_area(examples: list[dict[str, Any]]) -> dict[str, Any]:
    batch = collate(examples)
    batch["labels"]["area"] = torch.stack([e["mask"].mean() for e in examples])[:, None]
    return batch


def run(tmp_path: Path, strategy: str) -> Path:
    raw = base_config(str(tmp_path / strategy), strategy=strategy, epochs=2, monitor="area")
    raw["model"]["tasks"]["area"] = {"type": "regression", "target_mean": [0.03], "target_std": [0.03]}
    data = make_data()
    data.collate_fn = collate_with_area
    return train(from_dict(RunConfig, raw), data).output_dir


def predictions(folder: Path) -> dict[str, tuple[float, float, str]]:
    with (folder / "test_predictions.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["task"] == "area"]
    return {r["sample_id"]: (float(r["label"]), float(r["prediction"]), r["patient_id"]) for r in rows}


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {
        "r2": r2_score(y, p),
        "mae": mean_absolute_error(y, p),
        "rmse": math.sqrt(mean_squared_error(y, p)),
        "pearson": float(np.corrcoef(y, p)[0, 1]),
    }


def test_compare_tables_and_paired_differences_cover_a_regression_task(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    folders = {s: run(tmp_path, s) for s in ("mtl", "stl")}
    config = CompareConfig(output_dir=str(tmp_path / "cmp"), grid=GridSection(), bootstrap_resamples=300)
    (tmp_path / "cmp").mkdir()
    cells = [(Cell(s, {"type": "fixed"}, "all", 1.0, 0, s), folders[s]) for s in ("mtl", "stl")]
    markdown = task_results_section(config, cells, [("mtl", "stl")])
    assert markdown is not None and "| mtl vs stl |" in markdown and "rmse ↓" in markdown

    with (tmp_path / "cmp" / METRICS_CSV).open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["task"] == "area"]
    assert {(r["strategy"], r["metric"]) for r in rows} == {
        (s, m) for s in ("mtl", "stl") for m in ("r2", "mae", "rmse", "pearson")
    }
    for r in rows:  # each row is its run's test result, recomputed here from its predictions
        test = json.loads((folders[r["strategy"]] / "test_metrics.json").read_text())["area"]
        assert (float(r["value"]), float(r["lower"]), float(r["upper"])) == (
            test[r["metric"]],
            test[f"{r['metric']}_low"],
            test[f"{r['metric']}_high"],
        )
        pred = predictions(folders[r["strategy"]])
        y, p = (np.array([v[i] for v in pred.values()]) for i in (0, 1))
        assert float(r["value"]) == pytest.approx(metrics(y, p)[r["metric"]], rel=1e-4, abs=1e-7)
        assert (r["higher_is_better"] == "True") == (r["metric"] in ("r2", "pearson"))

    with (tmp_path / "cmp" / DIFFERENCES_CSV).open() as handle:
        differences = {r["metric"]: r for r in csv.DictReader(handle) if r["task"] == "area"}
    assert set(differences) == {"r2", "mae", "rmse", "pearson"}
    # the paired bootstrap, rebuilt: the same patients drawn for both runs, metrics from scikit-learn
    a, b = predictions(folders["mtl"]), predictions(folders["stl"])
    ids = list(a)
    patients = list(dict.fromkeys(a[i][2] for i in ids))
    rows_of = {q: [i for i in ids if a[i][2] == q] for q in patients}
    resampled: dict[str, list[float]] = {m: [] for m in differences}
    for block in group_resamples(len(patients), 300, seed=0):
        for counts in block:
            chosen = [i for g, q in enumerate(patients) for _ in range(counts[g]) for i in rows_of[q]]
            y = np.array([a[i][0] for i in chosen])
            in_a = metrics(y, np.array([a[i][1] for i in chosen]))
            in_b = metrics(y, np.array([b[i][1] for i in chosen]))
            for m in resampled:
                resampled[m].append(in_a[m] - in_b[m])
    for m, r in differences.items():
        assert float(r["difference"]) == pytest.approx(float(r["value_a"]) - float(r["value_b"]))
        values = np.array(resampled[m])
        low, high = np.quantile(values[np.isfinite(values)], [0.025, 0.975])
        assert (float(r["low"]), float(r["high"])) == (
            pytest.approx(low, rel=1e-3, abs=1e-6),
            pytest.approx(high, rel=1e-3, abs=1e-6),
        )
        assert int(r["n_test"]) == 12


def test_cross_validation_pools_a_regression_tasks_statistics(tmp_path: Path) -> None:
    from mtl_hf.experiments.folds import pool_folds
    from tests.training.synthetic import SquaresDataset

    torch.set_num_threads(1)
    folds = []
    for j in range(2):  # two folds testing different patients
        raw = base_config(str(tmp_path / f"fold{j}"), strategy="stl", epochs=1, monitor="area")
        raw["model"]["tasks"]["area"] = {"type": "regression", "target_mean": [0.03], "target_std": [0.03]}
        data = make_data()
        data.collate_fn = collate_with_area
        data.test = SquaresDataset(12, 2 + j, offset=200 + 100 * j)
        folds.append(train(from_dict(RunConfig, raw), data).output_dir)
    pooled = pool_folds({"stl": folds}, tmp_path / "cmp", n_resamples=200, confidence_level=0.95)["stl"]
    area = json.loads((pooled / "test_metrics.json").read_text())["area"]
    union = [
        *predictions(folds[0]).values(),
        *predictions(folds[1]).values(),
    ]  # sample ids repeat, patients do not
    y, p = (np.array([v[i] for v in union]) for i in (0, 1))
    assert area["n_samples"] == len(union) == 24 and area["n_groups"] == 6
    for name, value in metrics(y, p).items():
        assert area[name] == pytest.approx(value, rel=1e-4, abs=1e-7)
        assert area[f"{name}_low"] <= area[name] <= area[f"{name}_high"]
    assert [r["metric"] for r in area["metrics"]] == ["r2", "mae", "rmse", "pearson"]
    assert "tumour" in json.loads((pooled / "test_metrics.json").read_text())  # ROC AUC pooled as before
