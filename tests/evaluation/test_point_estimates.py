"""ROC AUC and PR AUC point estimates against scikit-learn on random inputs (with ties)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from mtl_hf.evaluation import evaluate_scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 157)
    s = np.round(rng.normal(size=157) + 0.8 * y, 1)  # rounding creates ties
    report = evaluate_scores(y, s, n_resamples=0, delong=False)
    assert report.roc_auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert report.pr_auc == pytest.approx(average_precision_score(y, s), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_multilabel_per_label_and_macro_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, (120, 4))
    s = np.round(rng.normal(size=(120, 4)) + y * rng.uniform(0, 1.5, 4), 1)
    report = evaluate_scores(y, s, "multilabel", n_resamples=0, delong=False)
    np.testing.assert_allclose(report.roc_auc_per_label, roc_auc_score(y, s, average=None), atol=1e-12)
    assert report.roc_auc == pytest.approx(roc_auc_score(y, s, average="macro"), abs=1e-12)
    np.testing.assert_allclose(
        report.pr_auc_per_label, average_precision_score(y, s, average=None), atol=1e-12
    )
    assert report.pr_auc == pytest.approx(average_precision_score(y, s, average="macro"), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_multiclass_ovr_macro_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, 150)
    logits = rng.normal(size=(150, 4)) + 1.2 * np.eye(4)[y]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    report = evaluate_scores(y, probabilities, "multiclass", n_resamples=0, delong=False)
    expected = roc_auc_score(y, probabilities, multi_class="ovr", average="macro")
    assert report.roc_auc == pytest.approx(expected, abs=1e-12)
    per_class = roc_auc_score(np.eye(4)[y], probabilities, average=None)
    np.testing.assert_allclose(report.roc_auc_per_label, per_class, atol=1e-12)
    # Logits rank exactly like their softmax within each column, so OvR AUCs agree.
    from_logits = evaluate_scores(y, logits, "multiclass", n_resamples=0, delong=False)
    assert from_logits.roc_auc == pytest.approx(
        np.mean([roc_auc_score(y == c, logits[:, c]) for c in range(4)]), abs=1e-12
    )
    assert report.pr_auc == pytest.approx(
        average_precision_score(np.eye(4)[y], probabilities, average="macro"), abs=1e-12
    )


def test_hand_computed_auc() -> None:
    # Pairs (positive, negative): (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4): 3 of 4.
    assert evaluate_scores([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], n_resamples=0).roc_auc == 0.75
    # A tie between a positive and a negative counts one half: (0.5 vs 0.5) -> 0.5; (0.9 > 0.5) -> 1.
    assert evaluate_scores([0, 1, 1], [0.5, 0.5, 0.9], n_resamples=0).roc_auc == 0.75
