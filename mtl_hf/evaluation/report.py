"""One call for everything reported about a model's test scores, and one for comparing two models.

:func:`evaluate_scores` gathers ROC AUC (per label and macro), its patient-level bootstrap interval,
DeLong's interval (clustered by patient when group ids are given), PR AUC and, optionally, accuracy,
sensitivity and specificity at a threshold chosen on validation scores. :func:`compare_scores` gives
the paired comparison of two models on the same test samples: DeLong's test (binary tasks) and the
paired bootstrap of the AUC difference. Both return typed reports whose ``to_dict()`` is what the
``mtl_roc_auc`` evaluate module returns, so the library and the metric can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bootstrap import (
    DEFAULT_RESAMPLES,
    BootstrapResult,
    PairedBootstrapResult,
    bootstrap_columns,
    paired_bootstrap_columns,
)
from .delong import DeLongInterval, DeLongTest, delong_interval, delong_test
from .inputs import BinaryColumns, check_task, group_codes, to_binary_columns
from .point_estimates import average_precision_per_column, roc_auc_per_column
from .score_layouts import DEFAULT_LAYOUT, score_layout
from .threshold import ThresholdMetrics, choose_threshold, threshold_metrics

_NAN = float("nan")


@dataclass(frozen=True)
class ROCAUCReport:
    """ROC analysis of one model's scores on a test set.

    Attributes:
        task: the scores' layout (:mod:`~mtl_hf.evaluation.score_layouts`): ``"binary"``,
            ``"multilabel"`` or ``"multiclass"``.
        roc_auc_per_label: ``(K,)`` AUC per label (per class, one-vs-rest, for multi-class).
        pr_auc_per_label: ``(K,)`` average precision per label.
        bootstrap: patient-level bootstrap result, ``None`` when ``n_resamples=0``.
        delong: DeLong interval per label (``None`` when switched off).
        threshold: metrics at the chosen threshold (one score per sample only), else ``None``.
        n_samples, n_groups: test samples and resampling units (patients).
        n_positive, n_negative: ``(K,)`` positives / negatives per label.
        clustered: whether group ids were given (bootstrap over groups, clustered DeLong).
        confidence_level: level of every interval.
    """

    task: str
    roc_auc_per_label: np.ndarray
    pr_auc_per_label: np.ndarray
    bootstrap: BootstrapResult | None
    delong: tuple[DeLongInterval, ...] | None
    threshold: ThresholdMetrics | None
    n_samples: int
    n_groups: int
    n_positive: np.ndarray
    n_negative: np.ndarray
    clustered: bool
    confidence_level: float

    @property
    def roc_auc(self) -> float:
        """Macro ROC AUC (the AUC itself for a binary task)."""
        return float(self.roc_auc_per_label.mean())

    @property
    def pr_auc(self) -> float:
        """Macro average precision."""
        return float(self.pr_auc_per_label.mean())

    @property
    def low(self) -> float:
        """Lower bootstrap bound of the macro ROC AUC (NaN without bootstrap)."""
        return self.bootstrap.low if self.bootstrap is not None else _NAN

    @property
    def high(self) -> float:
        """Upper bootstrap bound of the macro ROC AUC (NaN without bootstrap)."""
        return self.bootstrap.high if self.bootstrap is not None else _NAN

    def to_dict(self) -> dict[str, Any]:
        """Flat, JSON-friendly results; the keys the ``mtl_roc_auc`` evaluate module returns.

        Always: ``roc_auc``, ``roc_auc_low``, ``roc_auc_high`` (bootstrap percentile bounds, NaN when
        ``n_resamples=0``), ``pr_auc``, ``n_samples``, ``n_groups``, ``n_positive``, ``n_negative``,
        ``clustered``, ``confidence_level``, ``n_resamples``, ``n_skipped_resamples``.
        One score per sample (binary) with DeLong: ``roc_auc_se``, ``roc_auc_delong_low``,
        ``roc_auc_delong_high``.
        Multi-label / multi-class: ``roc_auc_per_label``, ``roc_auc_per_label_low``,
        ``roc_auc_per_label_high``, ``pr_auc_per_label`` and, with DeLong,
        ``roc_auc_per_label_delong_low`` / ``_high`` (lists, one entry per label or class;
        ``n_positive`` / ``n_negative`` are lists too).
        With a threshold: ``threshold``, ``accuracy``, ``balanced_accuracy``, ``sensitivity``,
        ``specificity``, ``ppv``, ``npv``.
        """
        single = score_layout(self.task).single_score
        out: dict[str, Any] = {
            "roc_auc": self.roc_auc,
            "roc_auc_low": self.low,
            "roc_auc_high": self.high,
            "pr_auc": self.pr_auc,
        }
        if self.delong is not None and single:
            out["roc_auc_se"] = self.delong[0].standard_error
            out["roc_auc_delong_low"] = self.delong[0].low
            out["roc_auc_delong_high"] = self.delong[0].high
        if not single:
            boot = self.bootstrap
            out["roc_auc_per_label"] = _floats(self.roc_auc_per_label)
            out["roc_auc_per_label_low"] = _floats(boot.per_column_low) if boot else [_NAN] * self.num_labels
            out["roc_auc_per_label_high"] = (
                _floats(boot.per_column_high) if boot else [_NAN] * self.num_labels
            )
            out["pr_auc_per_label"] = _floats(self.pr_auc_per_label)
            if self.delong is not None:
                out["roc_auc_per_label_delong_low"] = [d.low for d in self.delong]
                out["roc_auc_per_label_delong_high"] = [d.high for d in self.delong]
        out.update(
            n_samples=self.n_samples,
            n_groups=self.n_groups,
            n_positive=int(self.n_positive[0]) if single else [int(v) for v in self.n_positive],
            n_negative=int(self.n_negative[0]) if single else [int(v) for v in self.n_negative],
            clustered=self.clustered,
            confidence_level=self.confidence_level,
            n_resamples=self.bootstrap.n_resamples if self.bootstrap else 0,
            n_skipped_resamples=self.bootstrap.n_skipped if self.bootstrap else 0,
        )
        if self.threshold is not None:
            t = self.threshold
            out.update(
                threshold=t.threshold,
                accuracy=t.accuracy,
                balanced_accuracy=t.balanced_accuracy,
                sensitivity=t.sensitivity,
                specificity=t.specificity,
                ppv=t.ppv,
                npv=t.npv,
            )
        return out

    @property
    def num_labels(self) -> int:
        return int(self.roc_auc_per_label.shape[0])


@dataclass(frozen=True)
class PairedComparison:
    """Two models scored on the same test samples: is model A's ROC AUC different from model B's?

    Attributes:
        task: the task type.
        auc_a, auc_b: macro ROC AUCs.
        delong: DeLong's test of the difference (binary tasks; ``None`` otherwise or when off).
        bootstrap: paired patient-level bootstrap of the macro difference (``None`` when
            ``n_resamples=0``).
    """

    task: str
    auc_a: float
    auc_b: float
    delong: DeLongTest | None
    bootstrap: PairedBootstrapResult | None = field(default=None)

    @property
    def difference(self) -> float:
        """``auc_a - auc_b``."""
        return self.auc_a - self.auc_b

    def to_dict(self) -> dict[str, Any]:
        """Keys added to the evaluate module's output when ``predictions_b`` is given.

        ``roc_auc_b``, ``delta_roc_auc`` (A - B); with DeLong (binary): ``delta_delong_low``,
        ``delta_delong_high``, ``delta_delong_p_value``; with the bootstrap: ``delta_bootstrap_low``,
        ``delta_bootstrap_high``, ``delta_bootstrap_p_value``.
        """
        out: dict[str, Any] = {"roc_auc_b": self.auc_b, "delta_roc_auc": self.difference}
        if self.delong is not None:
            out.update(
                delta_delong_low=self.delong.low,
                delta_delong_high=self.delong.high,
                delta_delong_p_value=self.delong.p_value,
            )
        if self.bootstrap is not None:
            out.update(
                delta_bootstrap_low=self.bootstrap.low,
                delta_bootstrap_high=self.bootstrap.high,
                delta_bootstrap_p_value=self.bootstrap.p_value,
            )
        return out


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in values]


def _check_resamples(n_resamples: int) -> int:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 0:
        raise ValueError(
            f"n_resamples: must be a non-negative integer (0 skips the bootstrap), got {n_resamples!r}"
        )
    return int(n_resamples)


def _resolve_threshold(
    task: str,
    threshold: float | None,
    validation_references: Any,
    validation_predictions: Any,
    threshold_method: str,
) -> float | None:
    has_validation = validation_references is not None or validation_predictions is not None
    if threshold is None and not has_validation:
        return None
    if not score_layout(task).single_score:
        raise ValueError(f"threshold: operating-point metrics are for binary tasks only, not {task!r}")
    if threshold is not None and has_validation:
        raise ValueError(
            "threshold: give either a threshold or validation scores to choose it from, not both"
        )
    if threshold is not None:
        return float(threshold)
    if validation_references is None or validation_predictions is None:
        missing = "validation_references" if validation_references is None else "validation_predictions"
        raise ValueError(
            f"{missing}: needed together with the other validation argument to choose a threshold"
        )
    return choose_threshold(validation_references, validation_predictions, method=threshold_method)


def _delong_per_column(
    columns: BinaryColumns, groups: Any, confidence_level: float
) -> tuple[DeLongInterval, ...]:
    return tuple(
        delong_interval(labels.astype(np.int64), scores, groups, confidence_level)
        for labels, scores in zip(columns.labels, columns.scores, strict=True)
    )


def evaluate_scores(
    references: Any,
    predictions: Any,
    task: str = DEFAULT_LAYOUT,
    groups: Any = None,
    *,
    confidence_level: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    delong: bool = True,
    threshold: float | None = None,
    validation_references: Any = None,
    validation_predictions: Any = None,
    threshold_method: str = "youden",
) -> ROCAUCReport:
    """ROC AUC with patient-level bootstrap and DeLong intervals, PR AUC and operating-point metrics.

    Args:
        references: ground truth (see :func:`mtl_hf.evaluation.inputs.to_binary_columns`).
        predictions: scores; ``(n,)`` for binary, ``(n, K)`` for multi-label / multi-class.
        task: the scores' layout (:mod:`~mtl_hf.evaluation.score_layouts`): ``"binary"``,
            ``"multilabel"`` or ``"multiclass"``.
        groups: ``(n,)`` patient id per sample. When given, the bootstrap resamples patients and DeLong's
            variance is Obuchowski's clustered one; leave ``None`` only if samples are independent.
        confidence_level: level of all intervals (default 0.95).
        n_resamples: bootstrap resamples (default 2000; 0 skips the bootstrap).
        seed: bootstrap seed.
        delong: compute DeLong intervals (per label for multi-column tasks).
        threshold: fixed decision threshold for accuracy / sensitivity / specificity (binary only).
        validation_references, validation_predictions: validation split from which to choose the
            threshold with ``threshold_method`` (see :func:`choose_threshold`); exclusive with ``threshold``.
        threshold_method: ``"youden"`` (default), ``"closest_topleft"``.

    Example:
        >>> report = evaluate_scores([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], n_resamples=200)
        >>> round(report.roc_auc, 2)
        0.75
    """
    check_task(task)
    n_resamples = _check_resamples(n_resamples)
    if not 0.0 < float(confidence_level) < 1.0:
        raise ValueError(f"confidence_level: must lie strictly between 0 and 1, got {confidence_level!r}")
    columns = to_binary_columns(references, predictions, task)
    codes = group_codes(groups, columns.num_samples)
    chosen = _resolve_threshold(
        task, threshold, validation_references, validation_predictions, threshold_method
    )
    boot = (
        bootstrap_columns(
            columns, codes, n_resamples=n_resamples, confidence_level=confidence_level, seed=seed
        )
        if n_resamples
        else None
    )
    return ROCAUCReport(
        task=task,
        roc_auc_per_label=roc_auc_per_column(columns),
        pr_auc_per_label=average_precision_per_column(columns),
        bootstrap=boot,
        delong=_delong_per_column(columns, codes if groups is not None else None, confidence_level)
        if delong
        else None,
        threshold=threshold_metrics(references, predictions, chosen) if chosen is not None else None,
        n_samples=columns.num_samples,
        n_groups=int(codes.max()) + 1,
        n_positive=columns.labels.sum(axis=1),
        n_negative=(~columns.labels).sum(axis=1),
        clustered=groups is not None,
        confidence_level=float(confidence_level),
    )


def compare_scores(
    references: Any,
    predictions_a: Any,
    predictions_b: Any,
    task: str = DEFAULT_LAYOUT,
    groups: Any = None,
    *,
    confidence_level: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    delong: bool = True,
) -> PairedComparison:
    """Paired comparison of two models' ROC AUCs on the same test samples (A minus B).

    Args:
        references: ground truth shared by both models.
        predictions_a, predictions_b: the two models' scores, aligned sample by sample (see
            :func:`align_by_sample_id` to line up two prediction files).
        task, groups, confidence_level, n_resamples, seed: as in :func:`evaluate_scores`.
        delong: run DeLong's test (binary tasks only; ignored otherwise).
    """
    check_task(task)
    n_resamples = _check_resamples(n_resamples)
    columns_a = to_binary_columns(references, predictions_a, task, predictions_name="predictions_a")
    columns_b = to_binary_columns(references, predictions_b, task, predictions_name="predictions_b")
    codes = group_codes(groups, columns_a.num_samples)
    test = (
        delong_test(
            columns_a.labels[0].astype(np.int64),
            columns_a.scores[0],
            columns_b.scores[0],
            codes if groups is not None else None,
            confidence_level,
        )
        if delong and score_layout(task).single_score
        else None
    )
    boot = (
        paired_bootstrap_columns(
            columns_a, columns_b, codes, n_resamples=n_resamples, confidence_level=confidence_level, seed=seed
        )
        if n_resamples
        else None
    )
    return PairedComparison(
        task=task,
        auc_a=float(roc_auc_per_column(columns_a).mean()),
        auc_b=float(roc_auc_per_column(columns_b).mean()),
        delong=test,
        bootstrap=boot,
    )


def align_by_sample_id(ids_a: Any, ids_b: Any, *, name_a: str = "ids_a", name_b: str = "ids_b") -> np.ndarray:
    """Index array ``order`` such that ``ids_b[order]`` lines up with ``ids_a`` element by element.

    Two runs' ``test_predictions.csv`` files list the same test samples, maybe in another order; paired
    tests need them aligned. Raises ValueError if an id is duplicated or the two sets differ.
    """
    a = np.asarray(ids_a, dtype=object).astype(str)
    b = np.asarray(ids_b, dtype=object).astype(str)
    for ids, name in ((a, name_a), (b, name_b)):
        values, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"{name}: sample id {str(values[counts > 1][0])!r} occurs more than once")
    if a.shape != b.shape or set(a.tolist()) != set(b.tolist()):
        only_a = sorted(set(a.tolist()) - set(b.tolist()))[:3]
        only_b = sorted(set(b.tolist()) - set(a.tolist()))[:3]
        raise ValueError(
            f"{name_b}: the two runs were scored on different samples "
            f"(only in {name_a}: {only_a}, only in {name_b}: {only_b})"
        )
    position = {sample_id: i for i, sample_id in enumerate(b.tolist())}
    return np.array([position[sample_id] for sample_id in a.tolist()], dtype=np.int64)
