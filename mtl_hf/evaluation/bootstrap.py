"""Percentile bootstrap of ROC AUC over patients (groups), for one model or the paired difference of two.

Slices of one patient are not independent draws, so a bootstrap that resamples slices understates the
uncertainty. Here the resampling unit is the *group* (patient): each resample draws as many groups as
there are, with replacement, and keeps every sample of each drawn group (a group drawn twice counts
twice). Without group ids each sample is its own group, and the very same code path becomes the
ordinary sample bootstrap, drawing from the same random stream.

A resample in which some column has only positives or only negatives has no ROC AUC; it is skipped and
counted (``n_skipped``), and the interval comes from the remaining ones.

Implementation: a resample is a vector of per-group multiplicities, so the resampled AUC is the
weighted Mann-Whitney statistic of the original samples. Two exact evaluations of it are used, whichever
is cheaper: with many groups, each column is sorted once and weights are accumulated per tied score level;
with few groups and many samples (patients with many slices), the column is reduced once to a table of
pair scores between groups and each resample costs a small quadratic form. Either way a whole block of
resamples is evaluated with array operations, much faster than calling ``sklearn.metrics.roc_auc_score``
per resample, with the same numbers (the tests check both against scikit-learn).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .inputs import BinaryColumns, group_codes, to_binary_columns
from .point_estimates import roc_auc_per_column
from .score_layouts import DEFAULT_LAYOUT

DEFAULT_RESAMPLES = 2000
# Resamples drawn per block. Part of the random-stream design: the same seed, data and number of
# resamples always give the same resamples, whatever the data size.
_BLOCK = 64


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile bootstrap interval of the (macro) ROC AUC.

    Attributes:
        estimate: macro ROC AUC on the full data (the AUC itself for a binary task).
        low, high: percentile interval of the macro AUC.
        per_column_estimate, per_column_low, per_column_high: ``(K,)`` the same per label / class.
        confidence_level: e.g. 0.95.
        n_resamples: resamples drawn.
        n_skipped: resamples skipped because a column held a single class.
        n_groups: number of resampling units (patients, or samples without group ids).
        seed: seed of the random stream.
        distribution: ``(n_resamples - n_skipped, K)`` per-column AUCs of the kept resamples.
    """

    estimate: float
    low: float
    high: float
    per_column_estimate: np.ndarray
    per_column_low: np.ndarray
    per_column_high: np.ndarray
    confidence_level: float
    n_resamples: int
    n_skipped: int
    n_groups: int
    seed: int
    distribution: np.ndarray = field(repr=False, compare=False)


@dataclass(frozen=True)
class PairedBootstrapResult:
    """Paired bootstrap of the difference of two models' (macro) ROC AUCs on the same samples.

    Both models are scored on the same resamples, so the interval accounts for their correlation.

    Attributes:
        auc_a, auc_b: macro AUCs on the full data.
        difference: ``auc_a - auc_b``.
        low, high: percentile interval of the difference.
        p_value: two-sided p-value of ``H0: difference == 0`` from inverting the percentile interval:
            twice the smaller of the shares of resampled differences ``<= 0`` and ``>= 0`` (capped at 1).
        confidence_level, n_resamples, n_skipped, n_groups, seed: as in :class:`BootstrapResult`.
        distribution: ``(n_resamples - n_skipped,)`` resampled differences.
    """

    auc_a: float
    auc_b: float
    difference: float
    low: float
    high: float
    p_value: float
    confidence_level: float
    n_resamples: int
    n_skipped: int
    n_groups: int
    seed: int
    distribution: np.ndarray = field(repr=False, compare=False)


class _RankedColumn:
    """One binary column sorted by score once, ready to score many weightings of its samples."""

    def __init__(self, labels: np.ndarray, scores: np.ndarray, codes: np.ndarray) -> None:
        order = np.argsort(scores, kind="stable")
        sorted_scores = scores[order]
        self.codes = codes[order]
        self.positive = labels[order]
        self.starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])

    def auc(self, group_weights: np.ndarray) -> np.ndarray:
        """``(B,)`` weighted AUC for ``(B, G)`` group weights; NaN where a class has zero weight."""
        weights = group_weights[:, self.codes].astype(np.float64)
        positive = np.where(self.positive, weights, 0.0)
        negative = weights - positive
        pos_level = np.add.reduceat(positive, self.starts, axis=1)
        neg_level = np.add.reduceat(negative, self.starts, axis=1)
        neg_below = np.cumsum(neg_level, axis=1) - neg_level
        numerator = (pos_level * (neg_below + 0.5 * neg_level)).sum(axis=1)
        denominator = pos_level.sum(axis=1) * neg_level.sum(axis=1)
        return _ratio(numerator, denominator)


class _GroupPairColumn:
    """One binary column reduced to a ``(G, G)`` table of pair scores between groups.

    ``pairs[g, h]`` sums psi (1, 1/2 on ties, 0) over positives of group ``g`` and negatives of group
    ``h``. A resample drawing group ``g`` ``c_g`` times then has AUC ``c^T pairs c / ((c.P) (c.N))``,
    with ``P`` / ``N`` the positives / negatives per group: a few small matrix products per block,
    independent of the number of slices. Used when there are few groups (patients) and many samples.
    """

    def __init__(self, labels: np.ndarray, scores: np.ndarray, codes: np.ndarray, num_groups: int) -> None:
        pos_scores, pos_codes = scores[labels], codes[labels]
        neg_scores, neg_codes = scores[~labels], codes[~labels]
        order = np.lexsort((neg_scores, neg_codes))  # by group, then score
        neg_scores, neg_codes = neg_scores[order], neg_codes[order]
        bounds = np.searchsorted(neg_codes, np.arange(num_groups + 1))
        self.pairs = np.zeros((num_groups, num_groups))
        for h in range(num_groups):
            negatives = neg_scores[bounds[h] : bounds[h + 1]]
            if negatives.size:
                # (#negatives below + #negatives at or below) / 2 = below + ties / 2, per positive.
                twice = np.searchsorted(negatives, pos_scores, "left") + np.searchsorted(
                    negatives, pos_scores, "right"
                )
                self.pairs[:, h] = np.bincount(pos_codes, weights=0.5 * twice, minlength=num_groups)
        self.num_positive = np.bincount(pos_codes, minlength=num_groups).astype(np.float64)
        self.num_negative = np.bincount(neg_codes, minlength=num_groups).astype(np.float64)

    def auc(self, group_weights: np.ndarray) -> np.ndarray:
        """``(B,)`` AUC for ``(B, G)`` group multiplicities; NaN where a class has zero weight."""
        c = group_weights.astype(np.float64)
        numerator = ((c @ self.pairs) * c).sum(axis=1)
        denominator = (c @ self.num_positive) * (c @ self.num_negative)
        return _ratio(numerator, denominator)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _column_scorer(
    labels: np.ndarray, scores: np.ndarray, codes: np.ndarray, num_groups: int
) -> _RankedColumn | _GroupPairColumn:
    """The cheaper exact scorer: per-group pair table when ``G^2`` is small next to ``n``, else ranks."""
    if num_groups * num_groups <= 8 * labels.shape[0]:
        return _GroupPairColumn(labels, scores, codes, num_groups)
    return _RankedColumn(labels, scores, codes)


def weighted_roc_auc(labels: Any, scores: Any, weights: Any) -> np.ndarray:
    """ROC AUC of one binary column under each row of sample weights.

    Equal to ``sklearn.metrics.roc_auc_score(labels, scores, sample_weight=w)`` for each row ``w``
    (and, for integer weights, to the AUC of the data with each sample repeated ``w`` times).

    Args:
        labels: ``(n,)`` 0/1.
        scores: ``(n,)`` scores.
        weights: ``(n,)`` or ``(B, n)`` non-negative weights.

    Returns:
        ``(B,)`` AUCs (NaN for a row giving zero total weight to a class).
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if y.ndim != 1 or s.shape != y.shape or w.shape[1] != y.shape[0]:
        raise ValueError(
            f"weights: expected shape (B, {y.shape[0]}) matching labels and scores, got {w.shape}"
        )
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights: must be finite and non-negative")
    # Each sample is its own group here, so group weights are the sample weights.
    return _RankedColumn(y, s, np.arange(y.shape[0])).auc(w)


def group_resamples(num_groups: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Yield blocks of ``(b, num_groups)`` multiplicities, one row per bootstrap resample.

    Each row counts how often each group was drawn when drawing ``num_groups`` groups uniformly with
    replacement. The stream depends only on ``(num_groups, n_resamples, seed)``.
    """
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_resamples:
        size = min(_BLOCK, n_resamples - done)
        draws = rng.integers(0, num_groups, size=(size, num_groups))
        flat = draws + num_groups * np.arange(size)[:, None]
        yield np.bincount(flat.ravel(), minlength=size * num_groups).reshape(size, num_groups)
        done += size


def percentile_interval(
    values: np.ndarray, confidence_level: float, axis: int | None = None
) -> tuple[Any, Any]:
    """The ``(low, high)`` percentile interval of bootstrap ``values`` (along ``axis``)."""
    alpha = 1.0 - float(confidence_level)
    low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0], axis=axis)
    return low, high


def bootstrap_p_value(differences: np.ndarray) -> float:
    """Two-sided p-value of ``difference == 0`` from inverting the percentile interval of the
    bootstrap ``differences``: twice the share of resamples on the far side of 0."""
    tail = min(float(np.mean(differences <= 0.0)), float(np.mean(differences >= 0.0)))
    return min(1.0, 2.0 * tail)


def _check_bootstrap_args(n_resamples: int, confidence_level: float) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples: must be a positive integer, got {n_resamples!r}")
    if not 0.0 < float(confidence_level) < 1.0:
        raise ValueError(f"confidence_level: must lie strictly between 0 and 1, got {confidence_level!r}")


def _resampled_aucs(
    columns: list[BinaryColumns], codes: np.ndarray, n_resamples: int, seed: int
) -> tuple[list[np.ndarray], int]:
    """Per-model ``(n_kept, K)`` AUCs on shared resamples, and the number skipped."""
    num_groups = int(codes.max()) + 1
    ranked = [
        [_column_scorer(y, s, codes, num_groups) for y, s in zip(c.labels, c.scores, strict=True)]
        for c in columns
    ]
    blocks: list[list[np.ndarray]] = [[] for _ in columns]
    skipped = 0
    for counts in group_resamples(num_groups, n_resamples, seed):
        per_model = [np.stack([col.auc(counts) for col in model], axis=1) for model in ranked]
        # Degeneracy depends on labels only, which both models share: skip the same resamples.
        keep = ~np.isnan(per_model[0]).any(axis=1)
        skipped += int((~keep).sum())
        for store, aucs in zip(blocks, per_model, strict=True):
            store.append(aucs[keep])
    kept = [np.concatenate(store, axis=0) for store in blocks]
    if kept[0].shape[0] == 0:
        raise ValueError(
            f"groups: all {n_resamples} bootstrap resamples held a single class in some column; there are "
            f"too few groups ({num_groups}) with both classes to bootstrap ROC AUC"
        )
    return kept, skipped


def _columns_and_codes(
    references: Any, predictions: Any, task: str, groups: Any
) -> tuple[BinaryColumns, np.ndarray]:
    columns = to_binary_columns(references, predictions, task)
    return columns, group_codes(groups, columns.num_samples)


def bootstrap_columns(
    columns: BinaryColumns,
    codes: np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """:func:`bootstrap_roc_auc` on already validated columns and group codes."""
    _check_bootstrap_args(n_resamples, confidence_level)
    (dist,), skipped = _resampled_aucs([columns], codes, n_resamples, seed)
    per_column = roc_auc_per_column(columns)
    macro_low, macro_high = percentile_interval(dist.mean(axis=1), confidence_level)
    column_low, column_high = percentile_interval(dist, confidence_level, axis=0)
    return BootstrapResult(
        estimate=float(per_column.mean()),
        low=float(macro_low),
        high=float(macro_high),
        per_column_estimate=per_column,
        per_column_low=column_low,
        per_column_high=column_high,
        confidence_level=float(confidence_level),
        n_resamples=int(n_resamples),
        n_skipped=skipped,
        n_groups=int(codes.max()) + 1,
        seed=int(seed),
        distribution=dist,
    )


def bootstrap_roc_auc(
    references: Any,
    predictions: Any,
    task: str = DEFAULT_LAYOUT,
    groups: Any = None,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Percentile bootstrap confidence interval of ROC AUC, resampling patients when ``groups`` is given.

    Args:
        references, predictions, task: as in :func:`mtl_hf.evaluation.inputs.to_binary_columns`.
        groups: ``(n,)`` patient (group) id per sample; ``None`` resamples samples.
        n_resamples: number of resamples (default 2000).
        confidence_level: e.g. 0.95 for the 2.5 and 97.5 percentiles.
        seed: seed of the random stream; the same seed gives the same interval.

    Example:
        >>> result = bootstrap_roc_auc([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.7],
        ...                            groups=["a", "a", "b", "b", "c", "c"], n_resamples=1000)
        >>> result.n_groups
        3
    """
    columns, codes = _columns_and_codes(references, predictions, task, groups)
    return bootstrap_columns(
        columns, codes, n_resamples=n_resamples, confidence_level=confidence_level, seed=seed
    )


def paired_bootstrap_columns(
    columns_a: BinaryColumns,
    columns_b: BinaryColumns,
    codes: np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> PairedBootstrapResult:
    """:func:`paired_bootstrap_roc_auc` on already validated columns and group codes."""
    _check_bootstrap_args(n_resamples, confidence_level)
    if not np.array_equal(columns_a.labels, columns_b.labels):
        raise ValueError("predictions_b: must be scored against the same references as predictions")
    (dist_a, dist_b), skipped = _resampled_aucs([columns_a, columns_b], codes, n_resamples, seed)
    differences = dist_a.mean(axis=1) - dist_b.mean(axis=1)
    low, high = percentile_interval(differences, confidence_level)
    auc_a = float(roc_auc_per_column(columns_a).mean())
    auc_b = float(roc_auc_per_column(columns_b).mean())
    return PairedBootstrapResult(
        auc_a=auc_a,
        auc_b=auc_b,
        difference=auc_a - auc_b,
        low=float(low),
        high=float(high),
        p_value=bootstrap_p_value(differences),
        confidence_level=float(confidence_level),
        n_resamples=int(n_resamples),
        n_skipped=skipped,
        n_groups=int(codes.max()) + 1,
        seed=int(seed),
        distribution=differences,
    )


def paired_bootstrap_roc_auc(
    references: Any,
    predictions_a: Any,
    predictions_b: Any,
    task: str = DEFAULT_LAYOUT,
    groups: Any = None,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> PairedBootstrapResult:
    """Paired (patient-level) bootstrap of ``AUC_a - AUC_b`` for two models on the same test samples.

    Args:
        references: ground truth shared by both models.
        predictions_a, predictions_b: the two models' scores, aligned sample by sample.
        task, groups, n_resamples, confidence_level, seed: as in :func:`bootstrap_roc_auc`.
    """
    columns_a = to_binary_columns(references, predictions_a, task, predictions_name="predictions_a")
    columns_b = to_binary_columns(references, predictions_b, task, predictions_name="predictions_b")
    codes = group_codes(groups, columns_a.num_samples)
    return paired_bootstrap_columns(
        columns_a, columns_b, codes, n_resamples=n_resamples, confidence_level=confidence_level, seed=seed
    )
