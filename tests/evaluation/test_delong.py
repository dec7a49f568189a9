"""DeLong's variance, interval and paired test against the O(m*n) definition and a published example."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from mtl_hf.evaluation import delong_covariance, delong_interval, delong_test

from .reference_roc import delong_1988, normal_two_sided_p, obuchowski_1997


def _data(seed: int, n: int = 70, ties: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    a = rng.normal(size=n) + 1.0 * y
    b = 0.6 * a + rng.normal(size=n) * 0.8 + 0.3 * y  # correlated with a
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    return y, a, b


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fast_delong_covariance_equals_the_pairwise_definition(seed: int) -> None:
    y, a, b = _data(seed)
    estimate = delong_covariance(y, np.stack([a, b]))
    auc, covariance = delong_1988(y, np.stack([a, b]))
    np.testing.assert_allclose(estimate.auc, auc, atol=1e-12)
    np.testing.assert_allclose(estimate.covariance, covariance, rtol=1e-10, atol=1e-14)
    assert not estimate.clustered and estimate.num_clusters == len(y)


def test_hanley_mcneil_1982_published_example() -> None:
    # Hanley & McNeil (1982), Radiology 143:29-36, Table I: CT ratings (1 = definitely normal ...
    # 5 = definitely abnormal) of 58 normal and 51 abnormal patients. Published: AUC 0.893, SE 0.032.
    negatives = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    positives = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    y = np.r_[np.zeros(58, int), np.ones(51, int)]
    s = np.r_[negatives, positives].astype(float)
    interval = delong_interval(y, s)
    assert round(interval.auc, 3) == 0.893
    # The published SE comes from Hanley & McNeil's exponential approximation; recompute it from its
    # formula to confirm the data, then check DeLong's non-parametric SE is close to it.
    a = interval.auc
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se_hm = math.sqrt((a * (1 - a) + 50 * (q1 - a * a) + 57 * (q2 - a * a)) / (51 * 58))
    assert round(se_hm, 3) == 0.032
    assert interval.standard_error == pytest.approx(0.0307244, abs=1e-6)  # pairwise definition, below
    _, covariance = delong_1988(y, s)
    assert interval.standard_error == pytest.approx(math.sqrt(covariance[0, 0]), rel=1e-12)
    assert abs(interval.standard_error - 0.032) < 0.002
    z = norm.ppf(0.975)
    assert interval.low == pytest.approx(a - z * interval.standard_error)
    assert interval.high == pytest.approx(a + z * interval.standard_error)


def test_interval_is_clipped_to_the_unit_interval() -> None:
    y = np.r_[np.zeros(5, int), np.ones(5, int)]
    s = np.r_[np.arange(5), np.arange(4, 9)].astype(float)  # one tie, AUC close to 1
    interval = delong_interval(y, s)
    assert interval.high == 1.0 and interval.low < interval.auc < 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_delong_test_matches_reference(seed: int) -> None:
    y, a, b = _data(seed, n=90)
    test = delong_test(y, a, b)
    auc, cov = delong_1988(y, np.stack([a, b]))
    se = math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    z = (auc[0] - auc[1]) / se
    assert test.difference == pytest.approx(auc[0] - auc[1], abs=1e-12)
    assert test.standard_error == pytest.approx(se, rel=1e-10)
    assert test.z == pytest.approx(z, rel=1e-10)
    assert test.p_value == pytest.approx(normal_two_sided_p(z), rel=1e-9)
    half = norm.ppf(0.975) * se
    assert (test.low, test.high) == pytest.approx((test.difference - half, test.difference + half))


def test_model_against_itself_gives_zero_difference_and_p_one() -> None:
    y, a, _ = _data(5)
    test = delong_test(y, a, a.copy())
    assert test.difference == 0.0 and test.standard_error == 0.0
    assert test.p_value == 1.0 and test.low == 0.0 and test.high == 0.0


def test_a_clearly_better_model_is_significant() -> None:
    rng = np.random.default_rng(11)
    y = np.r_[np.zeros(150, int), np.ones(150, int)]
    noise = rng.normal(size=300)
    good, poor = noise + 2.0 * y, noise + 0.3 * y + rng.normal(size=300)
    test = delong_test(y, good, poor)
    assert test.difference > 0.2 and test.p_value < 1e-6 and test.low > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_clustered_variance_equals_obuchowski_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    clusters = np.repeat(np.arange(18), rng.integers(1, 6, 18))
    n = len(clusters)
    # Slice-level labels that vary within patients (tumour and tumour-free slices of one patient).
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    patient_effect = rng.normal(size=18)[clusters]
    s = np.round(patient_effect + 1.2 * y + rng.normal(size=n) * 0.7, 1)
    estimate = delong_covariance(y, s, groups=[f"patient-{c}" for c in clusters])
    auc, variance = obuchowski_1997(y, s, clusters)
    assert estimate.clustered and estimate.num_clusters == 18
    assert estimate.auc[0] == pytest.approx(auc, abs=1e-12)
    assert estimate.covariance[0, 0] == pytest.approx(variance, rel=1e-10)


def test_clustered_variance_with_one_sample_per_cluster_is_delongs() -> None:
    y, a, b = _data(7)
    plain = delong_covariance(y, np.stack([a, b]))
    clustered = delong_covariance(y, np.stack([a, b]), groups=np.arange(len(y))[::-1])
    np.testing.assert_allclose(clustered.covariance, plain.covariance, rtol=1e-10)


def test_duplicated_slices_widen_the_clustered_interval() -> None:
    y, a, _ = _data(8, n=60)
    copies = 4
    y4, a4 = np.repeat(y, copies), np.repeat(a, copies)
    groups = np.repeat(np.arange(60), copies)
    naive = delong_interval(y4, a4)
    clustered = delong_interval(y4, a4, groups=groups)
    original = delong_interval(y, a)
    # Copies add no information: the clustered SE stays the original's, the naive one shrinks.
    assert naive.standard_error < 0.6 * original.standard_error
    # Exact copies: per-cluster sums scale with the copy count, which cancels in Obuchowski's variance.
    assert clustered.standard_error == pytest.approx(original.standard_error, rel=1e-9)


def test_too_few_samples_give_nan_rather_than_a_fake_interval() -> None:
    interval = delong_interval([0, 1, 1], [0.2, 0.5, 0.9])
    assert math.isnan(interval.standard_error) and math.isnan(interval.low)


def test_delong_coverage_on_simulated_binormal_data() -> None:
    rng = np.random.default_rng(2024)
    true_auc = norm.cdf(1.0 / math.sqrt(2.0))  # positives N(1, 1), negatives N(0, 1)
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    hits = 0
    for _ in range(200):
        interval = delong_interval(y, rng.normal(size=80) + y)
        hits += interval.low <= true_auc <= interval.high
    assert 0.89 <= hits / 200 <= 0.99
