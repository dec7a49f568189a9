"""Operating point: threshold chosen on validation scores by Youden's J, applied to test scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtl_hf.evaluation import choose_threshold, evaluate_scores, threshold_metrics


def _brute_force(y: np.ndarray, s: np.ndarray, criterion) -> float:
    """Try every observed score as a threshold (positive if score >= t); ties go to the highest t."""
    best_t, best = None, -math.inf
    for t in sorted(set(s.tolist()), reverse=True):
        pred = s >= t
        sens = (pred & (y == 1)).sum() / (y == 1).sum()
        spec = (~pred & (y == 0)).sum() / (y == 0).sum()
        value = criterion(sens, spec)
        if value > best + 1e-15:
            best_t, best = t, value
    return float(best_t)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_youden_and_closest_topleft_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 90)
    s = np.round(rng.normal(size=90) + y, 1)
    assert choose_threshold(y, s) == _brute_force(y, s, lambda se, sp: se + sp - 1)
    assert choose_threshold(y, s, "closest_topleft") == _brute_force(
        y, s, lambda se, sp: -((1 - se) ** 2 + (1 - sp) ** 2)
    )


def test_sensitivity_and_specificity_targets() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.5, 0.7, 0.9])
    # Highest threshold keeping sensitivity >= 0.75: 0.5 (catches 0.5, 0.7, 0.9).
    assert choose_threshold(y, s, "sensitivity", target=0.75) == 0.5
    # Lowest threshold keeping specificity >= 0.75: 0.4 (negatives 0.1, 0.2, 0.3 stay below).
    assert choose_threshold(y, s, "specificity", target=0.75) == 0.4
    with pytest.raises(ValueError, match="target: method 'sensitivity' needs a target"):
        choose_threshold(y, s, "sensitivity")
    with pytest.raises(ValueError, match="method: unknown threshold method"):
        choose_threshold(y, s, "f1")


def test_threshold_metrics_by_hand() -> None:
    y = [0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.5, 0.7, 0.4, 0.5, 0.8, 0.9]
    m = threshold_metrics(y, s, 0.5)  # predicted positive: 0.5, 0.7 | 0.5, 0.8, 0.9
    assert (m.true_positives, m.false_positives, m.true_negatives, m.false_negatives) == (3, 2, 1, 1)
    assert m.accuracy == pytest.approx(4 / 7)
    assert m.sensitivity == pytest.approx(3 / 4)
    assert m.specificity == pytest.approx(1 / 3)
    assert m.ppv == pytest.approx(3 / 5) and m.npv == pytest.approx(1 / 2)
    assert m.balanced_accuracy == pytest.approx((3 / 4 + 1 / 3) / 2)


def test_threshold_chosen_on_validation_is_applied_to_test() -> None:
    rng = np.random.default_rng(3)
    y_val, y_test = rng.integers(0, 2, 80), rng.integers(0, 2, 60)
    s_val, s_test = rng.normal(size=80) + y_val, rng.normal(size=60) + y_test
    report = evaluate_scores(
        y_test, s_test, n_resamples=0, validation_references=y_val, validation_predictions=s_val
    )
    expected_t = choose_threshold(y_val, s_val)
    assert report.threshold is not None and report.threshold.threshold == expected_t
    assert report.threshold == threshold_metrics(y_test, s_test, expected_t)
    out = report.to_dict()
    assert out["threshold"] == expected_t and out["sensitivity"] == report.threshold.sensitivity
