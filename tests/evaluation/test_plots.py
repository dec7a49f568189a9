"""Figures: valid PNG files, and the arrays they plot equal the aggregates / ROC curves they come from
(the low-data figure: tests/evaluation/test_low_data.py)."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score, roc_curve

from mtl_hf.evaluation import (
    ResultRow,
    aggregate_over_seeds,
    plot_auc_intervals,
    plot_roc_curves,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 300


def _row(strategy: str, sampling: str, fraction: float, seed: int, auc: float) -> ResultRow:
    return ResultRow(
        strategy=strategy,
        weighting="fixed" if strategy == "mtl" else "none",
        sampling=sampling,
        train_fraction=fraction,
        seed=seed,
        task="tumour",
        roc_auc=auc,
        low=auc - 0.03,
        high=auc + 0.02,
    )


def _study() -> list[ResultRow]:
    rows = []
    for fraction, base in ((0.1, 0.60), (0.5, 0.66), (1.0, 0.70)):
        for seed in (0, 1):
            rows.append(_row("stl", "all", fraction, seed, base + 0.01 * seed))
            rows.append(_row("mtl", "all", fraction, seed, base + 0.04 + 0.01 * seed))
    rows += [_row(s, "undersample", 1.0, 0, 0.69 if s == "stl" else 0.71) for s in ("stl", "mtl")]
    return rows


def test_auc_intervals_plot(tmp_path) -> None:
    aggregates = aggregate_over_seeds(_study())
    data = plot_auc_intervals(aggregates, tmp_path / "auc.png")
    _assert_png(data.path)
    assert data.x_labels == ("All data", "Under sampled")
    assert list(data.series) == ["STL", "MTL"]
    stl, mtl = data.series["STL"], data.series["MTL"]
    np.testing.assert_allclose(stl["auc"], [0.705, 0.69])  # mean of 0.70 and 0.71; single seed 0.69
    np.testing.assert_allclose(stl["low"], [0.675, 0.66])
    np.testing.assert_allclose(mtl["high"], [0.765, 0.73])
    assert (stl["x"] < mtl["x"]).all() and (np.diff(stl["x"]) == 1).all()


def test_weighting_labels_appear_when_one_strategy_has_several(tmp_path) -> None:
    rows = _study() + [
        dataclasses.replace(r, weighting="uncertainty") for r in _study() if r.strategy == "mtl"
    ]
    data = plot_auc_intervals(aggregate_over_seeds(rows), tmp_path / "auc.png")
    assert list(data.series) == ["STL (none)", "MTL (fixed)", "MTL (uncertainty)"]


def test_roc_curves_plot(tmp_path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    curves = {"STL": (y, rng.normal(size=100) + 0.5 * y), "MTL": (y, rng.normal(size=100) + 1.5 * y)}
    data = plot_roc_curves(curves, tmp_path / "roc.png")
    _assert_png(data.path)
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        np.testing.assert_array_equal(data.series[name]["fpr"], fpr)
        np.testing.assert_array_equal(data.series[name]["tpr"], tpr)
        assert data.series[name]["auc"][0] == pytest.approx(roc_auc_score(labels, scores))


def test_plot_errors_name_the_argument(tmp_path) -> None:
    rows = _study() + [dataclasses.replace(r, task="muscle") for r in _study()]
    with pytest.raises(ValueError, match="task: several tasks in the results"):
        plot_auc_intervals(aggregate_over_seeds(rows), tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"curves\['A'\]\[0\]: only one class"):
        plot_roc_curves({"A": ([1, 1], [0.2, 0.3])}, tmp_path / "x.png")


def test_plotting_leaves_pyplot_alone(tmp_path) -> None:
    plot_roc_curves({"A": ([0, 1, 1], [0.2, 0.3, 0.9])}, tmp_path / "roc.png")
    assert "matplotlib.pyplot" not in sys.modules or sys.modules["matplotlib.pyplot"].get_fignums() == []
