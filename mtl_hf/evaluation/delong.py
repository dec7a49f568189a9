"""DeLong's variance of ROC AUC, its confidence interval and the test of two correlated AUCs.

The AUC of a score is the Mann-Whitney statistic ``mean over (positive, negative) pairs of psi``, with
``psi = 1`` when the positive scores higher, ``1/2`` on ties and ``0`` otherwise. DeLong, DeLong &
Clarke-Pearson (1988) estimate its variance from *structural components*: each positive's placement
``V10`` (the fraction of negatives it outscores) and each negative's ``V01`` (the fraction of positives
that outscore it). Sun & Xu (2014) get all placements from three midrank computations, so the cost is
``O(n log n)`` instead of DeLong's ``O(n_pos * n_neg)`` pairs.

When samples come in clusters (several slices of one patient), they are not independent and DeLong's
variance is too small. With group ids we use Obuchowski's (1997) clustered form: structural
components are summed per cluster before taking their spread. With one sample per cluster it reduces
exactly to DeLong's.

References:
    E. R. DeLong, D. M. DeLong, D. L. Clarke-Pearson. Comparing the areas under two or more correlated
    receiver operating characteristic curves: a nonparametric approach. Biometrics 44(3), 1988.
    X. Sun, W. Xu. Fast implementation of DeLong's algorithm for comparing the areas under correlated
    receiver operating characteristic curves. IEEE Signal Processing Letters 21(11), 2014.
    N. A. Obuchowski. Nonparametric analysis of clustered ROC curve data. Biometrics 53(2), 1997.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm, rankdata

from .inputs import group_codes


@dataclass(frozen=True)
class DeLongEstimate:
    """AUCs of ``k`` scores on one set of samples and DeLong's covariance of those AUCs.

    Attributes:
        auc: ``(k,)`` ROC AUC of each score.
        covariance: ``(k, k)`` estimated covariance of the AUCs (NaN when it cannot be estimated:
            fewer than two positives or negatives, or fewer than two clusters holding either).
        clustered: whether Obuchowski's clustered form was used (group ids were given).
        num_positive, num_negative: sample counts.
        num_clusters: number of clusters (equals the sample count without group ids).
    """

    auc: np.ndarray
    covariance: np.ndarray
    clustered: bool
    num_positive: int
    num_negative: int
    num_clusters: int

    @property
    def standard_error(self) -> np.ndarray:
        """``(k,)`` standard error of each AUC."""
        return np.sqrt(np.diag(self.covariance))


@dataclass(frozen=True)
class DeLongInterval:
    """DeLong (normal-approximation) confidence interval of one AUC, clipped to ``[0, 1]``."""

    auc: float
    standard_error: float
    low: float
    high: float
    confidence_level: float
    clustered: bool


@dataclass(frozen=True)
class DeLongTest:
    """DeLong's test of ``H0: AUC_a == AUC_b`` for two scores on the same samples.

    Attributes:
        auc_a, auc_b: the two AUCs.
        difference: ``auc_a - auc_b``.
        standard_error: standard error of the difference (uses the covariance of the two AUCs).
        z: ``difference / standard_error``.
        p_value: two-sided p-value. When the difference has zero variance (e.g. a score compared with
            itself) it is 1 for a zero difference and 0 otherwise.
        low, high: confidence interval of the difference.
        confidence_level: e.g. 0.95.
        clustered: whether Obuchowski's clustered form was used.
    """

    auc_a: float
    auc_b: float
    difference: float
    standard_error: float
    z: float
    p_value: float
    low: float
    high: float
    confidence_level: float
    clustered: bool


def _check_confidence_level(confidence_level: float) -> float:
    if not 0.0 < float(confidence_level) < 1.0:
        raise ValueError(f"confidence_level: must lie strictly between 0 and 1, got {confidence_level!r}")
    return float(confidence_level)


def _check_binary(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if y.ndim != 1:
        raise ValueError(f"labels: expected a 1-D array of 0/1, got shape {y.shape}")
    if s.ndim != 2 or s.shape[1] != y.shape[0]:
        raise ValueError(f"scores: expected shape (k, {y.shape[0]}) or ({y.shape[0]},), got {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores: contains NaN or inf")
    if not np.isin(y, [0, 1]).all():
        raise ValueError("labels: must be 0 or 1")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("labels: only one class is present; ROC AUC is undefined")
    return y, s


def delong_covariance(labels: Any, scores: Any, groups: Any = None) -> DeLongEstimate:
    """AUCs and their DeLong covariance for ``k`` scores of the same samples (fast DeLong).

    Args:
        labels: ``(n,)`` 0/1 (or bool) ground truth.
        scores: ``(n,)`` or ``(k, n)`` scores; higher means more likely positive.
        groups: optional ``(n,)`` cluster id per sample (e.g. patient id). When given, the clustered
            variance of Obuchowski (1997) is used.

    Returns:
        A :class:`DeLongEstimate`.
    """
    y, s = _check_binary(labels, scores)
    positives, negatives = s[:, y], s[:, ~y]
    m, n = positives.shape[1], negatives.shape[1]
    # Midranks (Sun & Xu 2014): within positives, within negatives, and over both together.
    rank_pos = rankdata(positives, axis=1)
    rank_neg = rankdata(negatives, axis=1)
    rank_all = rankdata(np.concatenate([positives, negatives], axis=1), axis=1)
    v10 = (rank_all[:, :m] - rank_pos) / n  # placement of each positive among the negatives
    v01 = 1.0 - (rank_all[:, m:] - rank_neg) / m  # share of positives above each negative
    auc = v10.mean(axis=1)
    k = s.shape[0]
    nan = np.full((k, k), np.nan)
    if groups is None:
        if m < 2 or n < 2:
            covariance = nan
        else:
            s10 = np.atleast_2d(np.cov(v10))
            s01 = np.atleast_2d(np.cov(v01))
            covariance = s10 / m + s01 / n
        return DeLongEstimate(auc, covariance, False, m, n, m + n)

    codes = group_codes(groups, y.shape[0])
    num_clusters = int(codes.max()) + 1
    codes_pos, codes_neg = codes[y], codes[~y]
    # Per-cluster sums of the structural components and per-cluster counts (Obuchowski 1997).
    v10_sum = np.zeros((k, num_clusters))
    v01_sum = np.zeros((k, num_clusters))
    for r in range(k):
        v10_sum[r] = np.bincount(codes_pos, weights=v10[r], minlength=num_clusters)
        v01_sum[r] = np.bincount(codes_neg, weights=v01[r], minlength=num_clusters)
    m_c = np.bincount(codes_pos, minlength=num_clusters).astype(np.float64)
    n_c = np.bincount(codes_neg, minlength=num_clusters).astype(np.float64)
    i10, i01 = int((m_c > 0).sum()), int((n_c > 0).sum())
    if i10 < 2 or i01 < 2:
        return DeLongEstimate(auc, nan, True, m, n, num_clusters)
    d10 = v10_sum - auc[:, None] * m_c[None, :]
    d01 = v01_sum - auc[:, None] * n_c[None, :]
    s10 = i10 / ((i10 - 1) * m) * (d10 @ d10.T)
    s01 = i01 / ((i01 - 1) * n) * (d01 @ d01.T)
    s11 = num_clusters / (num_clusters - 1) * (d10 @ d01.T)
    covariance = s10 / m + s01 / n + (s11 + s11.T) / (m * n)
    return DeLongEstimate(auc, covariance, True, m, n, num_clusters)


def delong_interval(
    labels: Any, scores: Any, groups: Any = None, confidence_level: float = 0.95
) -> DeLongInterval:
    """DeLong confidence interval of the AUC of one score: ``AUC +/- z * SE``, clipped to ``[0, 1]``.

    With ``groups`` the standard error is Obuchowski's clustered one. The interval is NaN when the
    variance cannot be estimated (fewer than two positives or negatives, or clusters holding them).
    """
    level = _check_confidence_level(confidence_level)
    estimate = delong_covariance(labels, np.asarray(scores, dtype=np.float64).reshape(1, -1), groups)
    auc = float(estimate.auc[0])
    se = float(estimate.standard_error[0])
    z = float(norm.ppf(0.5 + level / 2.0))
    low, high = max(0.0, auc - z * se), min(1.0, auc + z * se)
    if math.isnan(se):
        low = high = math.nan
    return DeLongInterval(auc, se, low, high, level, estimate.clustered)


def delong_test(
    labels: Any,
    scores_a: Any,
    scores_b: Any,
    groups: Any = None,
    confidence_level: float = 0.95,
) -> DeLongTest:
    """DeLong's test for two correlated ROC AUCs (two models scored on the same test samples).

    Args:
        labels: ``(n,)`` 0/1 ground truth.
        scores_a, scores_b: ``(n,)`` scores of the two models, aligned sample by sample.
        groups: optional cluster ids (patients) for Obuchowski's clustered covariance.
        confidence_level: level of the interval of the difference.
    """
    level = _check_confidence_level(confidence_level)
    a = np.asarray(scores_a, dtype=np.float64).reshape(-1)
    b = np.asarray(scores_b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"scores_b: has {b.shape[0]} samples but scores_a has {a.shape[0]}")
    estimate = delong_covariance(labels, np.stack([a, b]), groups)
    cov = estimate.covariance
    difference = float(estimate.auc[0] - estimate.auc[1])
    variance = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    z_crit = float(norm.ppf(0.5 + level / 2.0))
    if math.isnan(variance):
        se = z = p = low = high = math.nan
    else:
        se = math.sqrt(max(variance, 0.0))
        # Rounding can leave a tiny positive variance for identical scores: treat it as zero.
        if se <= 1e-12:
            se = 0.0
            if abs(difference) <= 1e-12:
                z, p = 0.0, 1.0
            else:
                z, p = math.copysign(math.inf, difference), 0.0
        else:
            z = difference / se
            p = float(2.0 * norm.sf(abs(z)))
        low, high = difference - z_crit * se, difference + z_crit * se
    return DeLongTest(
        auc_a=float(estimate.auc[0]),
        auc_b=float(estimate.auc[1]),
        difference=difference,
        standard_error=se,
        z=z,
        p_value=p,
        low=low,
        high=high,
        confidence_level=level,
        clustered=estimate.clustered,
    )
