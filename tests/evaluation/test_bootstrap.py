"""Patient-level bootstrap: exact resampled AUCs, seeding, group resampling, skipped resamples, coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from mtl_hf.evaluation import (
    bootstrap_roc_auc,
    compare_scores,
    group_resamples,
    paired_bootstrap_roc_auc,
    weighted_roc_auc,
)


def _binary(seed: int, n: int = 80, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    return y, np.round(rng.normal(size=n) + shift * y, 1)


def test_weighted_auc_equals_sklearn_with_sample_weights_and_with_repeated_rows() -> None:
    y, s = _binary(0)
    rng = np.random.default_rng(1)
    weights = rng.integers(0, 4, size=(5, len(y)))
    got = weighted_roc_auc(y, s, weights)
    for row, value in zip(weights, got, strict=True):
        assert value == pytest.approx(roc_auc_score(y, s, sample_weight=row), abs=1e-12)
        repeated = np.repeat(np.arange(len(y)), row)
        assert value == pytest.approx(roc_auc_score(y[repeated], s[repeated]), abs=1e-12)


def test_weighted_auc_is_nan_when_a_class_gets_no_weight() -> None:
    got = weighted_roc_auc([0, 1, 1], [0.1, 0.5, 0.7], [[0, 1, 1], [1, 1, 0]])
    assert math.isnan(got[0]) and got[1] == 1.0


def test_group_resamples_draw_each_row_as_a_full_resample() -> None:
    blocks = list(group_resamples(num_groups=7, n_resamples=150, seed=3))
    counts = np.concatenate(blocks)
    assert counts.shape == (150, 7)
    assert (counts.sum(axis=1) == 7).all()
    again = np.concatenate(list(group_resamples(7, 150, 3)))
    np.testing.assert_array_equal(counts, again)


def test_bootstrap_distribution_is_the_auc_of_explicitly_resampled_patients() -> None:
    """Rebuild every resample by hand (draw patients, concatenate their slices) and recompute with sklearn."""
    rng = np.random.default_rng(4)
    patients = np.repeat(np.arange(12), rng.integers(1, 5, 12))
    y = rng.integers(0, 2, len(patients))
    y[:2] = [0, 1]
    s = rng.normal(size=len(patients)) + y
    result = bootstrap_roc_auc(y, s, groups=patients, n_resamples=60, seed=9)
    expected = []
    for counts in group_resamples(12, 60, 9):
        for row in counts:
            idx = np.concatenate([np.flatnonzero(patients == g) for g in range(12) for _ in range(row[g])])
            if len(np.unique(y[idx])) == 2:
                expected.append(roc_auc_score(y[idx], s[idx]))
    np.testing.assert_allclose(result.distribution[:, 0], expected, atol=1e-12)
    assert result.n_skipped == 60 - len(expected)
    lo, hi = np.quantile(expected, [0.025, 0.975])
    assert (result.low, result.high) == pytest.approx((lo, hi), abs=1e-12)


def test_both_exact_scorers_agree_including_degenerate_resamples() -> None:
    """The rank-based and the group-pair-table evaluations of a resample are the same number."""
    from mtl_hf.evaluation.bootstrap import _GroupPairColumn, _RankedColumn

    rng = np.random.default_rng(8)
    patients = np.repeat(np.arange(9), rng.integers(1, 8, 9))
    # Positives only in patients 0 and 1: about (7/9)^9 = 10 % of resamples have none.
    y = (patients <= 1) & (rng.random(len(patients)) < 0.7)
    y[0], y[-1] = True, False
    s = np.round(rng.normal(size=len(patients)) + y, 1)
    counts = np.concatenate(list(group_resamples(9, 300, 0)))
    ranked = _RankedColumn(y, s, patients).auc(counts)
    pairs = _GroupPairColumn(y, s, patients, 9).auc(counts)
    np.testing.assert_allclose(pairs, ranked, atol=1e-12)  # NaN in the same places too
    assert np.isnan(ranked).any()


def test_same_seed_same_interval_other_seed_other_interval() -> None:
    y, s = _binary(2)
    first = bootstrap_roc_auc(y, s, n_resamples=1000, seed=5)
    second = bootstrap_roc_auc(y, s, n_resamples=1000, seed=5)
    third = bootstrap_roc_auc(y, s, n_resamples=1000, seed=6)
    assert (first.low, first.high) == (second.low, second.high)
    assert (first.low, first.high) != (third.low, third.high)


def test_interval_contains_the_point_estimate() -> None:
    for seed in range(5):
        y, s = _binary(seed, n=120)
        result = bootstrap_roc_auc(y, s, n_resamples=1000, seed=seed)
        assert result.low < result.estimate < result.high
        assert result.estimate == pytest.approx(roc_auc_score(y, s))
        assert result.n_groups == 120 and result.n_skipped == 0


def test_one_sample_per_group_equals_the_sample_bootstrap() -> None:
    y, s = _binary(3)
    naive = bootstrap_roc_auc(y, s, n_resamples=500, seed=1)
    grouped = bootstrap_roc_auc(
        y, s, groups=[f"patient-{i:03d}" for i in range(len(y))], n_resamples=500, seed=1
    )
    assert (grouped.low, grouped.high) == (naive.low, naive.high)
    np.testing.assert_array_equal(grouped.distribution, naive.distribution)


def test_duplicated_slices_per_patient_widen_the_group_interval() -> None:
    y, s = _binary(4, n=60)
    copies = 5
    y5, s5 = np.repeat(y, copies), np.repeat(s, copies)
    patients = np.repeat(np.arange(60), copies)
    naive = bootstrap_roc_auc(y5, s5, n_resamples=1000, seed=0)
    grouped = bootstrap_roc_auc(y5, s5, groups=patients, n_resamples=1000, seed=0)
    original = bootstrap_roc_auc(y, s, n_resamples=1000, seed=0)
    assert grouped.n_groups == 60
    assert grouped.high - grouped.low > 1.8 * (naive.high - naive.low)
    # Resampling whole patients of exact copies is resampling the original samples: same stream, same AUCs.
    np.testing.assert_allclose(grouped.distribution, original.distribution, atol=1e-12)


def test_degenerate_resamples_are_skipped_and_counted() -> None:
    # 2 of 8 patients are positive: a resample misses both of them with probability (6/8)^8 = 10 %.
    patients = np.repeat(np.arange(8), 3)
    y = np.repeat([1, 1, 0, 0, 0, 0, 0, 0], 3)
    s = np.random.default_rng(0).normal(size=24) + y
    result = bootstrap_roc_auc(y, s, groups=patients, n_resamples=2000, seed=0)
    assert 0.06 < result.n_skipped / 2000 < 0.14
    assert result.distribution.shape[0] == 2000 - result.n_skipped


def test_multilabel_bootstrap_gives_per_label_and_macro_intervals() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, (100, 3))
    s = rng.normal(size=(100, 3)) + y
    result = bootstrap_roc_auc(y, s, "multilabel", n_resamples=400, seed=0)
    assert result.per_column_low.shape == (3,)
    assert (result.per_column_low < result.per_column_estimate).all()
    assert (result.per_column_estimate < result.per_column_high).all()
    assert result.estimate == pytest.approx(roc_auc_score(y, s, average="macro"))
    macro = result.distribution.mean(axis=1)
    assert (result.low, result.high) == pytest.approx(tuple(np.quantile(macro, [0.025, 0.975])))


def test_paired_bootstrap_of_a_model_against_itself() -> None:
    y, s = _binary(6)
    result = paired_bootstrap_roc_auc(y, s, s.copy(), n_resamples=500, seed=0)
    assert result.difference == 0.0 and result.low == 0.0 and result.high == 0.0 and result.p_value == 1.0


def test_paired_bootstrap_is_paired_and_agrees_with_delong() -> None:
    rng = np.random.default_rng(7)
    y = np.r_[np.zeros(120, int), np.ones(120, int)]
    shared = rng.normal(size=240)
    a = shared + 1.0 * y
    b = shared + 0.6 * y + 0.5 * rng.normal(size=240)
    paired = paired_bootstrap_roc_auc(y, a, b, n_resamples=2000, seed=0)
    a_alone = bootstrap_roc_auc(y, a, n_resamples=2000, seed=0)
    b_alone = bootstrap_roc_auc(y, b, n_resamples=2000, seed=0)
    # Same resamples for both models: the differences are exactly the per-model AUC differences.
    np.testing.assert_allclose(paired.distribution, a_alone.distribution[:, 0] - b_alone.distribution[:, 0])
    # Sharing noise makes the difference far less variable than either AUC alone.
    assert paired.high - paired.low < 0.8 * (a_alone.high - a_alone.low)
    comparison = compare_scores(y, a, b, n_resamples=2000, seed=0)
    assert comparison.bootstrap is not None and comparison.delong is not None
    assert comparison.bootstrap.p_value == paired.p_value
    assert paired.p_value < 0.05 and comparison.delong.p_value < 0.05
    assert paired.low > 0 and comparison.delong.low > 0
    ratio = (paired.high - paired.low) / (comparison.delong.high - comparison.delong.low)
    assert 0.8 < ratio < 1.25


def test_bootstrap_coverage_on_simulated_data_independent_and_clustered() -> None:
    rng = np.random.default_rng(123)
    true_auc = norm.cdf(1.0 / math.sqrt(2.0))
    y = np.r_[np.ones(40, int), np.zeros(40, int)]
    hits = 0
    for rep in range(150):
        result = bootstrap_roc_auc(y, rng.normal(size=80) + y, n_resamples=300, seed=rep)
        hits += result.low <= true_auc <= result.high
    assert 0.88 <= hits / 150 <= 0.99

    # Patients with 6 slices each and a strong patient effect: resampling slices under-covers badly.
    patient_sd, slice_sd, shift, n_patients, slices = 1.0, 0.5, 1.5, 40, 6
    true_auc = norm.cdf(shift / math.sqrt(2 * (patient_sd**2 + slice_sd**2)))
    patients = np.repeat(np.arange(n_patients), slices)
    y = np.repeat(np.r_[np.ones(20, int), np.zeros(20, int)], slices)
    grouped_hits = naive_hits = 0
    for rep in range(120):
        s = (
            shift * y
            + patient_sd * rng.normal(size=n_patients)[patients]
            + slice_sd * rng.normal(size=len(y))
        )
        grouped = bootstrap_roc_auc(y, s, groups=patients, n_resamples=300, seed=rep)
        naive = bootstrap_roc_auc(y, s, n_resamples=300, seed=rep)
        grouped_hits += grouped.low <= true_auc <= grouped.high
        naive_hits += naive.low <= true_auc <= naive.high
    assert grouped_hits / 120 >= 0.85
    assert naive_hits / 120 <= grouped_hits / 120 - 0.15


def test_all_resamples_degenerate_is_an_error() -> None:
    # Two patients, one per class: a resample is degenerate when it draws the same patient twice.
    seed = next(seed for seed in range(100) if (next(group_resamples(2, 1, seed)) == [[2, 0]]).all())
    with pytest.raises(ValueError, match="groups: all 1 bootstrap resamples held a single class"):
        bootstrap_roc_auc([0, 1], [0.1, 0.9], groups=["a", "b"], n_resamples=1, seed=seed)
