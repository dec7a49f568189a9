"""The ``regression`` head: standardised losses, predictions in the target's units, metrics from additive
statistics checked against scikit-learn / scipy, patient-bootstrap intervals against resamples rebuilt
sample by sample, model selection on a lower-is-better metric, and a short training run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from transformers import AutoModel

from mtl_hf import MTLConfig, MTLModel
from mtl_hf.evaluation import bootstrap_additive_metrics, group_resamples
from mtl_hf.heads import HEADS, BackboneFeatures, BackboneSpec, RegressionHead
from mtl_hf.options import from_dict
from mtl_hf.train import train
from mtl_hf.training.config import RunConfig
from mtl_hf.training.metrics_log import read_metrics
from mtl_hf.training.selection import ModelSelection
from mtl_hf.training.state import TrainerState
from mtl_hf.training.strategies import Phase
from tests.conftest import tiny_backbone
from tests.training.synthetic import SquaresDataset, base_config, collate, make_data

SPEC = BackboneSpec(hidden_size=8, patch_size=4, num_channels=1, num_hidden_layers=1, image_size=(8, 8))


def make_head(**options: Any) -> RegressionHead:
    head = HEADS.get("regression")("area", HEADS.get("regression").parse_options("area", options), SPEC)
    assert isinstance(head, RegressionHead)
    return head


def features(batch: int, seed: int = 0) -> BackboneFeatures:
    g = torch.Generator().manual_seed(seed)
    return BackboneFeatures(
        last_hidden_state=torch.randn(batch, 5, 8, generator=g),
        num_prefix_tokens=1,
        grid_size=(2, 2),
        pixel_values=torch.zeros(batch, 1, 8, 8),
    )


@pytest.mark.parametrize("loss", ["mse", "l1", "smooth_l1"])
def test_loss_is_on_the_standardised_target_and_predictions_are_in_its_units(loss: str) -> None:
    head = make_head(
        num_outputs=2, loss=loss, target_mean=[10.0, -2.0], target_std=[4.0, 0.5], smooth_l1_beta=0.7
    )
    feats = features(6)
    labels = torch.tensor([[12.0, -2.5], [9.0, -1.0], [7.0, -2.0], [15.0, -3.0], [10.0, -2.2], [11.0, -1.9]])
    out = head(feats, labels)
    raw = head.classifier(feats.cls_token)  # the linear layer's standardised outputs
    mean, std = torch.tensor([10.0, -2.0]), torch.tensor([4.0, 0.5])
    torch.testing.assert_close(out.logits, raw * std + mean)
    z = (labels - mean) / std
    by_hand = {
        "mse": ((raw - z) ** 2).mean(),
        "l1": (raw - z).abs().mean(),
        "smooth_l1": torch.where(
            (raw - z).abs() < 0.7, 0.5 * (raw - z) ** 2 / 0.7, (raw - z).abs() - 0.35
        ).mean(),
    }[loss]
    torch.testing.assert_close(out.loss, by_hand)


def test_a_missing_value_adds_nothing_to_the_loss() -> None:
    head = make_head(num_outputs=2)
    feats = features(3)
    labels = torch.tensor([[1.0, float("nan")], [0.5, 2.0], [float("nan"), -1.0]])
    raw = head.classifier(feats.cls_token)
    present = ~labels.isnan()
    torch.testing.assert_close(head(feats, labels).loss, F.mse_loss(raw[present], labels[present]))


def test_labels_are_checked_naming_the_task() -> None:
    head = make_head(num_outputs=2)
    with pytest.raises(ValueError, match=r"task 'area' \(regression\): expected shape \(B, 2\), got \(3,\)"):
        head.check_labels(torch.zeros(3), 3)
    with pytest.raises(ValueError, match="expected float values, got dtype torch.int64"):
        head.check_labels(torch.zeros(3, 2, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="contain inf"):
        head.check_labels(torch.tensor([[1.0, math.inf]]), 1)
    assert make_head().check_labels(torch.ones(4), 4).shape == (4, 1)
    with pytest.raises(ValueError, match="target_std must be positive"):
        make_head(target_std=[0.0])


def reference(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {
        "r2": r2_score(y, pred),
        "mae": mean_absolute_error(y, pred),
        "rmse": math.sqrt(mean_squared_error(y, pred)),
        "pearson": float(pearsonr(y, pred).statistic),
    }


def test_metrics_equal_scikit_learn_and_scipy_and_shards_add_up() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(50.0, 10.0, size=(40, 2))
    pred = y + rng.normal(0.0, 4.0, size=y.shape) + np.array([1.0, -3.0])
    y[[3, 17], 1] = np.nan  # two samples lack the second output
    head = make_head(num_outputs=2, output_names=["area", "volume"])
    stats = head.metric_statistics(torch.from_numpy(pred), torch.from_numpy(y))
    assert stats.shape == (40, 16) and stats.dtype == torch.float64
    metrics = head.metrics_from_sums(stats.sum(0))
    halves = head.metrics_from_sums(stats[:13].sum(0) + stats[13:].sum(0))  # two processes' shards
    for k, output in enumerate(["area", "volume"]):
        keep = ~np.isnan(y[:, k])
        for name, value in reference(y[keep, k], pred[keep, k]).items():
            assert float(metrics[f"{name}_{output}"]) == pytest.approx(value, rel=1e-9)
            assert float(halves[f"{name}_{output}"]) == pytest.approx(value, rel=1e-9)
    for name in ("r2", "mae", "rmse", "pearson"):
        mean = (metrics[f"{name}_area"] + metrics[f"{name}_volume"]) / 2
        assert float(metrics[name]) == pytest.approx(float(mean), rel=1e-12)
    # a constant target has no R² nor r; no sample has no metric at all
    flat = make_head().metrics_from_sums(
        make_head().metric_statistics(torch.tensor([1.0, 2.0]), torch.ones(2)).sum(0)
    )
    assert math.isnan(flat["r2"]) and math.isnan(flat["pearson"]) and float(flat["mae"]) == pytest.approx(0.5)
    assert all(math.isnan(v) for v in make_head().metrics_from_sums(torch.zeros(8)).values())


def test_patient_bootstrap_intervals_equal_resamples_rebuilt_sample_by_sample() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(0.3, 0.1, size=36)
    pred = 0.7 * y + rng.normal(0.1, 0.05, size=36)
    patients = [f"p{i % 9}" for i in range(36)]
    head = make_head()
    stats = head.metric_statistics(torch.from_numpy(pred), torch.from_numpy(y)).numpy()
    result = bootstrap_additive_metrics(stats, head.metrics_from_sums, patients, n_resamples=300, seed=5)

    order = list(dict.fromkeys(patients))
    rows_of = {p: [i for i, q in enumerate(patients) if q == p] for p in order}
    resampled: dict[str, list[float]] = {name: [] for name in ("r2", "mae", "rmse", "pearson")}
    for block in group_resamples(len(order), 300, seed=5):
        for counts in block:
            rows = [i for g, p in enumerate(order) for _ in range(counts[g]) for i in rows_of[p]]
            for name, value in reference(y[rows], pred[rows]).items():
                resampled[name].append(value)
    for name, values in resampled.items():
        low, high = np.quantile(values, [0.025, 0.975])
        r = result[name]
        assert r.estimate == pytest.approx(reference(y, pred)[name], rel=1e-9)
        assert (r.low, r.high) == (pytest.approx(low, rel=1e-7), pytest.approx(high, rel=1e-7))
        assert r.n_groups == 9


def test_training_targets_set_the_standardisation_unless_given() -> None:
    head = make_head(num_outputs=2)
    targets = np.array([[1.0, 5.0], [3.0, np.nan], [5.0, 5.0]])
    assert head.fit_training_targets(targets) == {
        "target_mean": [3.0, 5.0],
        "target_std": [pytest.approx(math.sqrt(8 / 3)), 1.0],
    }
    torch.testing.assert_close(head.standardisation(torch.device("cpu"))[0], torch.tensor([3.0, 5.0]))
    given = make_head(target_mean=[2.0], target_std=[1.5])
    assert given.fit_training_targets(np.array([[0.0], [10.0]])) == {}
    with pytest.raises(ValueError, match="no value in the training split for output"):
        make_head().fit_training_targets(np.array([[np.nan]]))


def test_selection_on_rmse_keeps_the_lowest(tmp_path: Path) -> None:
    model = MTLModel(
        MTLConfig(
            backbone_config=tiny_backbone(image_size=16, patch_size=8, num_channels=1),
            tasks={"area": {"type": "regression"}, "tumour": {"type": "binary_classification"}},
        )
    )
    selection = ModelSelection.for_model(model, "area")
    assert (selection.metric, selection.higher_is_better) == ("rmse", False)
    state, phase = TrainerState(), Phase("joint", ("area", "tumour"), epochs=3, selects_model=True)
    scores = []
    for rmse in (0.5, 0.7, 0.3):
        best = selection.improved({"rmse/area": rmse}, phase, state)
        if best is not None:
            state.best_metric = best
        scores.append(best)
    assert scores == [0.5, None, 0.3] and state.evals_without_improvement == 0
    config = MTLConfig(
        backbone_config=model.config.backbone_config.to_dict(),
        tasks={"area": {"type": "regression", "selection_metric": "r2"}},
    )
    r2 = ModelSelection.for_model(MTLModel(config), "area")
    assert (r2.metric, r2.higher_is_better) == ("r2", True)


def collate_with_area(examples: list[dict[str, Any]]) -> dict[str, Any]:
    """The synthetic squares with the lesion's area fraction as a continuous target."""
    batch = collate(examples)
    batch["labels"]["area"] = torch.stack([e["mask"].mean() for e in examples])[:, None]
    return batch


def test_a_short_run_trains_regression_beside_a_classifier_and_reports_it(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    raw = base_config(str(tmp_path / "run"), strategy="mtl", epochs=3, monitor="area")
    raw["model"]["tasks"]["area"] = {"type": "regression", "target_mean": [0.03], "target_std": [0.03]}
    data = make_data()
    data.collate_fn = collate_with_area
    out = train(from_dict(RunConfig, raw), data).output_dir

    val = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "val" and "rmse/area" in r]
    selection = json.loads((out / "best_model" / "selection.json").read_text())
    assert selection["metric"] == "rmse" and selection["higher_is_better"] is False
    assert selection["value"] == pytest.approx(min(r["rmse/area"] for r in val))
    test = json.loads((out / "test_metrics.json").read_text())["area"]
    for name in ("r2", "mae", "rmse", "pearson"):
        assert test[f"{name}_low"] <= test[name] <= test[f"{name}_high"]
    rows = {r["metric"]: r for r in test["metrics"]}  # the results format every task shares
    assert [(m, rows[m]["higher_is_better"], rows[m]["model_index"]) for m in rows] == [
        ("r2", True, "R²"), ("mae", False, None), ("rmse", False, "RMSE"), ("pearson", True, None),
    ]  # fmt: skip
    assert all(
        (r["value"], r["lower"], r["upper"]) == (test[m], test[f"{m}_low"], test[f"{m}_high"])
        for m, r in rows.items()
    )
    with (out / "test_results.csv").open() as handle:
        csv_rows = [r for r in csv.DictReader(handle) if r["task"] == "area"]
    assert [(r["metric"], float(r["value"])) for r in csv_rows] == [(m, pytest.approx(test[m])) for m in rows]
    with (out / "test_predictions.csv").open() as handle:
        written = [r for r in csv.DictReader(handle) if r["task"] == "area"]
    assert len(written) == 12 and {r["output"] for r in written} == {"area"}
    # the test metrics are those of the saved statistics, which are those of the saved model's predictions
    model = AutoModel.from_pretrained(out / "best_model")
    assert model.config.tasks["area"]["target_mean"] == [0.03]
    test_set = SquaresDataset(12, 2, offset=200)
    batch = collate_with_area([test_set[i] for i in range(12)])
    with torch.no_grad():
        predictions = model(pixel_values=batch["pixel_values"], tasks=["area"]).logits["area"]
    y = batch["labels"]["area"][:, 0].double().numpy()
    expected = reference(y, predictions[:, 0].double().numpy())
    for name, value in expected.items():
        assert test[name] == pytest.approx(value, rel=1e-4, abs=1e-6)
    by_sample = sorted(written, key=lambda r: int(r["sample_id"]))  # the loader keeps the split's order
    np.testing.assert_allclose(
        [float(r["prediction"]) for r in by_sample], predictions[:, 0].numpy(), rtol=1e-4
    )
    np.testing.assert_allclose([float(r["label"]) for r in by_sample], y, rtol=1e-6)


def test_a_continuous_manifest_column_trains_with_the_training_splits_standardisation(tmp_path: Path) -> None:
    from mtl_hf.data import DataConfig, prepare_datasets
    from tests.data.files import write_csv, write_png

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    records = []
    for i in range(60):
        area = rng.uniform(0.0, 0.5)
        image = (rng.normal(60, 10, (32, 32)) + 300 * area).clip(0, 255).astype(np.uint8)
        write_png(tmp_path / "images" / f"{i}.png", image)
        cell = "" if i % 7 == 3 else f"{area:.4f}"  # some samples have no area
        records.append(
            {
                "path": f"{i}.png",
                "patient_id": f"P{i // 3:02d}",
                "tumour": str(int(area > 0.25)),
                "area": cell,
            }
        )
    write_csv(tmp_path / "images" / "manifest.csv", records)
    data = {
        "kind": "images", "root": str(tmp_path / "images"), "image_size": 32,
        "images": {"manifest": "manifest.csv", "targets": {"tumour": {"kind": "binary", "columns": ["tumour"]},
                                                           "area": {"kind": "continuous", "columns": ["area"]}}},
    }  # fmt: skip
    raw = {
        "output_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"), "data": data,
        "model": {"backbone_config": tiny_backbone(image_size=32, patch_size=8, num_channels=1),
                  "tasks": {"tumour": {"type": "binary_classification"}, "area": {"type": "regression"}}},
        "task_columns": {"tumour": "tumour", "area": "area"},
        "training": {"strategy": "mtl", "epochs": 1, "batch_size": 16, "monitor": "area", "bootstrap_resamples": 100},
    }  # fmt: skip
    out = train(from_dict(RunConfig, raw)).output_dir

    prepared = prepare_datasets(from_dict(DataConfig, data, "data"), cache_dir=tmp_path / "cache")
    train_areas = np.array(
        [np.nan if v is None else v[0] for v in prepared.datasets["train"]["area"]], dtype=float
    )
    saved = AutoModel.from_pretrained(out / "best_model").config.tasks["area"]
    assert saved["target_mean"] == [pytest.approx(np.nanmean(train_areas), rel=1e-5)]
    assert saved["target_std"] == [pytest.approx(np.nanstd(train_areas), rel=1e-5)]
    assert np.isnan(train_areas).any()  # the missing areas were left out of both
    test_areas = np.array(
        [np.nan if v is None else v[0] for v in prepared.datasets["test"]["area"]], dtype=float
    )
    area = json.loads((out / "test_metrics.json").read_text())["area"]
    assert area["n_samples"] == int(np.isfinite(test_areas).sum()) < len(test_areas)  # labelled samples only
    with (out / "test_predictions.csv").open() as handle:
        written = [r for r in csv.DictReader(handle) if r["task"] == "area"]
    assert len(written) == area["n_samples"]
