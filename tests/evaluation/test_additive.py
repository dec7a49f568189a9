"""Patient bootstrap of additive metrics (segmentation Dice) against resamples rebuilt image by image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_hf.evaluation import bootstrap_additive_metrics, group_resamples, paired_bootstrap_additive_metrics


def mean_and_pooled(sums: torch.Tensor) -> dict[str, torch.Tensor]:
    """Columns: per-image score, 1, overlap, predicted size, true size (the segmentation plugin's layout)."""
    score, count, overlap, predicted, actual = sums.unbind(-1)
    return {"mean": score / count, "pooled": 2 * overlap / (predicted + actual)}


def random_statistics(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    overlap = rng.integers(0, 50, n).astype(float)
    predicted = overlap + rng.integers(0, 30, n)
    actual = overlap + rng.integers(1, 30, n)
    dice = 2 * overlap / (predicted + actual)
    return np.stack([dice, np.ones(n), overlap, predicted, actual], axis=1)


def test_intervals_equal_resamples_rebuilt_patient_by_patient() -> None:
    stats = random_statistics(30, seed=1)
    patients = [f"p{i % 7}" for i in range(30)]  # 7 patients, interleaved
    result = bootstrap_additive_metrics(stats, mean_and_pooled, patients, n_resamples=500, seed=3)

    order = list(dict.fromkeys(patients))  # groups are numbered in order of first appearance
    rows_of = {p: [i for i, q in enumerate(patients) if q == p] for p in order}
    means, pooled = [], []
    for block in group_resamples(len(order), 500, seed=3):
        for counts in block:
            rows = [i for g, p in enumerate(order) for _ in range(counts[g]) for i in rows_of[p]]
            means.append(sum(stats[i, 0] for i in rows) / len(rows))
            overlap = sum(stats[i, 2] for i in rows)
            pooled.append(2 * overlap / sum(stats[i, 3] + stats[i, 4] for i in rows))
    assert len(means) == 500
    for name, values, full in (
        ("mean", means, stats[:, 0].mean()),
        ("pooled", pooled, 2 * stats[:, 2].sum() / (stats[:, 3].sum() + stats[:, 4].sum())),
    ):
        low, high = np.quantile(values, [0.025, 0.975])
        r = result[name]
        assert r.estimate == pytest.approx(full, rel=1e-12)
        assert (r.low, r.high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
        assert r.low < r.estimate < r.high and r.n_groups == 7 and r.n_samples == 30


def test_without_patients_every_sample_is_its_own_group_and_patients_widen_the_interval() -> None:
    stats = random_statistics(40, seed=2)
    alone = bootstrap_additive_metrics(stats, mean_and_pooled, None, n_resamples=400, seed=0)["mean"]
    explicit = bootstrap_additive_metrics(stats, mean_and_pooled, list(range(40)), n_resamples=400, seed=0)
    assert (alone.low, alone.high) == (explicit["mean"].low, explicit["mean"].high) and alone.n_groups == 40
    # 4 patients whose slices are alike: far fewer independent units, a wider interval
    clustered = stats[np.argsort(stats[:, 0])]
    patients = np.repeat(np.arange(4), 10)
    wide = bootstrap_additive_metrics(clustered, mean_and_pooled, patients, n_resamples=400, seed=0)["mean"]
    narrow = bootstrap_additive_metrics(clustered, mean_and_pooled, None, n_resamples=400, seed=0)["mean"]
    assert wide.high - wide.low > 2 * (narrow.high - narrow.low)


def test_bad_statistics_are_refused() -> None:
    with pytest.raises(ValueError, match="statistics: holds NaN or inf"):
        bootstrap_additive_metrics(np.array([[np.nan, 1.0]]), mean_and_pooled)
    with pytest.raises(
        ValueError, match=r"expected a non-empty \(samples, statistics\) array, got shape \(3,\)"
    ):
        bootstrap_additive_metrics(np.ones(3), mean_and_pooled)
    with pytest.raises(ValueError, match="groups: has 2 ids but there are 3 samples"):
        bootstrap_additive_metrics(random_statistics(3, 0), mean_and_pooled, ["a", "b"])
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_additive_metrics(random_statistics(3, 0), mean_and_pooled, n_resamples=0)


def test_paired_differences_equal_resamples_rebuilt_patient_by_patient() -> None:
    a, b = random_statistics(24, seed=4), random_statistics(24, seed=5)
    patients = [f"p{i // 3}" for i in range(24)]  # 8 patients of 3 slices
    result = paired_bootstrap_additive_metrics(a, b, mean_and_pooled, patients, n_resamples=400, seed=2)[
        "mean"
    ]
    differences = []
    for block in group_resamples(8, 400, seed=2):
        for counts in block:
            rows = [i for g in range(8) for _ in range(counts[g]) for i in range(3 * g, 3 * g + 3)]
            differences.append(np.mean(a[rows, 0]) - np.mean(b[rows, 0]))
    differences = np.array(differences)
    low, high = np.quantile(differences, [0.025, 0.975])
    p_value = min(1.0, 2 * min(np.mean(differences <= 0), np.mean(differences >= 0)))
    assert result.difference == pytest.approx(a[:, 0].mean() - b[:, 0].mean(), rel=1e-12)
    assert (result.value_a, result.value_b) == (pytest.approx(a[:, 0].mean()), pytest.approx(b[:, 0].mean()))
    assert (result.low, result.high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    assert result.p_value == pytest.approx(p_value) and result.n_groups == 8
    same = paired_bootstrap_additive_metrics(a, a, mean_and_pooled, patients, n_resamples=50)["pooled"]
    assert same.difference == same.low == same.high == 0.0 and same.p_value == 1.0
    with pytest.raises(ValueError, match=r"statistics_a \(24, 5\) and statistics_b \(23, 5\)"):
        paired_bootstrap_additive_metrics(a, b[:23], mean_and_pooled)
