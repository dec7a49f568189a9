"""The shipped 🤗 evaluate module, loaded offline by path, gives the library's numbers."""

from __future__ import annotations

import math
from pathlib import Path

import evaluate
import numpy as np
import pytest

import mtl_hf
from mtl_hf.evaluation import compare_scores, evaluate_scores, load_metric, metric_path


@pytest.fixture(scope="module")
def binary_metric():
    return load_metric("binary")


def _data(seed: int = 0, n: int = 90):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    patients = [f"p{i // 3:02d}" for i in range(n)]
    return y, rng.normal(size=n) + y, patients


def _assert_same(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got[key]), key
        elif isinstance(value, float):
            assert got[key] == pytest.approx(value, abs=1e-12), key
        else:
            assert got[key] == value, key


def test_metric_ships_inside_the_package() -> None:
    folder = metric_path()
    assert folder.is_absolute() and (folder / "mtl_roc_auc.py").is_file()
    assert Path(mtl_hf.__file__).parent in folder.parents
    assert (folder / "README.md").is_file()


def test_binary_compute_equals_the_library(binary_metric) -> None:
    y, s, patients = _data()
    got = binary_metric.compute(references=y, predictions=s, groups=patients, n_resamples=500, seed=3)
    expected = evaluate_scores(y, s, groups=patients, n_resamples=500, seed=3).to_dict()
    _assert_same(got, expected)
    assert got["clustered"] is True and got["n_groups"] == 30 and got["n_samples"] == 90
    assert got["roc_auc_low"] < got["roc_auc"] < got["roc_auc_high"]
    assert got["roc_auc_delong_low"] < got["roc_auc"] < got["roc_auc_delong_high"]
    assert {"roc_auc_se", "pr_auc", "n_positive", "n_negative", "n_skipped_resamples"} <= set(got)


def test_batches_accumulate_like_one_compute(binary_metric) -> None:
    y, s, patients = _data(1)
    for start in range(0, 90, 25):
        binary_metric.add_batch(references=y[start : start + 25], predictions=s[start : start + 25])
    batched = binary_metric.compute(groups=patients, n_resamples=300)
    whole = binary_metric.compute(references=y, predictions=s, groups=patients, n_resamples=300)
    _assert_same(batched, whole)


def test_paired_comparison_and_threshold_keys(binary_metric) -> None:
    y, s, _ = _data(2)
    other = s + np.random.default_rng(0).normal(size=90)
    got = binary_metric.compute(
        references=y,
        predictions=s,
        predictions_b=other,
        n_resamples=400,
        validation_references=y[::-1],
        validation_predictions=s[::-1],
    )
    comparison = compare_scores(y, s, other, n_resamples=400).to_dict()
    for key, value in comparison.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert {"threshold", "accuracy", "sensitivity", "specificity", "ppv", "npv"} <= set(got)
    itself = binary_metric.compute(references=y, predictions=s, predictions_b=s, n_resamples=100)
    assert itself["delta_roc_auc"] == 0.0
    assert itself["delta_delong_p_value"] == 1.0 and itself["delta_bootstrap_p_value"] == 1.0


def test_multilabel_and_multiclass_configurations() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, (60, 3))
    s = rng.normal(size=(60, 3)) + y
    got = load_metric("multilabel").compute(references=y, predictions=s, n_resamples=200)
    _assert_same(
        {k: v for k, v in got.items() if not isinstance(v, list)},
        {
            k: v
            for k, v in evaluate_scores(y, s, "multilabel", n_resamples=200).to_dict().items()
            if not isinstance(v, list)
        },
    )
    assert len(got["roc_auc_per_label"]) == 3 and len(got["roc_auc_per_label_delong_low"]) == 3
    classes = rng.integers(0, 3, 60)
    scores = rng.normal(size=(60, 3)) + np.eye(3)[classes]
    multiclass = load_metric("multiclass").compute(references=classes, predictions=scores, n_resamples=200)
    assert multiclass["roc_auc"] == pytest.approx(
        evaluate_scores(classes, scores, "multiclass", n_resamples=0).roc_auc
    )
    assert multiclass["n_positive"] == np.bincount(classes, minlength=3).tolist()


def test_loading_the_script_file_directly_works_too() -> None:
    metric = evaluate.load(str(metric_path() / "mtl_roc_auc.py"), "binary")
    out = metric.compute(references=[0, 0, 1, 1], predictions=[0.1, 0.4, 0.35, 0.8], n_resamples=50)
    assert out["roc_auc"] == 0.75


def test_metric_info_describes_itself(binary_metric) -> None:
    assert "DeLong" in binary_metric.citation and "Obuchowski" in binary_metric.citation
    assert "groups" in binary_metric.inputs_description
    assert set(binary_metric.features) == {"predictions", "references"}


def test_errors_name_the_argument(binary_metric) -> None:
    with pytest.raises(ValueError, match="references: only one class"):
        binary_metric.compute(references=[1, 1, 1], predictions=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="predictions: contains 1 non-finite"):
        binary_metric.compute(references=[0, 1, 1], predictions=[0.1, float("nan"), 0.3])
    with pytest.raises(ValueError, match="groups: has 2 ids but there are 3 samples"):
        binary_metric.compute(references=[0, 1, 1], predictions=[0.1, 0.5, 0.3], groups=["a", "b"])
    with pytest.raises(ValueError, match="task: unknown task 'regression'"):
        load_metric("regression")
