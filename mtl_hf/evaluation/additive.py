"""Patient-level bootstrap intervals for metrics that are functions of summed per-sample statistics.

Segmentation scores such as the mean per-image Dice and the pooled Dice are ratios of sums over images
(a head's :meth:`~mtl_hf.heads.TaskHead.metric_statistics` and
:meth:`~mtl_hf.heads.TaskHead.metrics_from_sums`). A bootstrap resample over patients is then just a
weighted sum of each patient's summed statistics, the weights being how often the patient was drawn, so
thousands of resamples cost one matrix product. Patients are drawn from the same random stream as the
ROC AUC bootstrap (:func:`~mtl_hf.evaluation.group_resamples`), and without patient ids every sample is
its own group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from .bootstrap import (
    DEFAULT_RESAMPLES,
    _check_bootstrap_args,
    bootstrap_p_value,
    group_resamples,
    percentile_interval,
)
from .inputs import group_codes

SumsToMetrics = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]


@dataclass(frozen=True)
class Resampling:
    """How a bootstrap interval was drawn.

    Attributes:
        confidence_level: e.g. 0.95.
        n_resamples: resamples drawn.
        n_groups: resampling units (patients, or samples without ids).
        n_samples: samples evaluated.
        seed: seed of the random stream.
    """

    confidence_level: float
    n_resamples: int
    n_groups: int
    n_samples: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MetricInterval(Resampling):
    """A metric on the whole set with its percentile bootstrap interval (and :class:`Resampling`).

    Attributes:
        estimate: the metric on every sample.
        low, high: percentile interval over resamples (resamples where the metric is NaN are skipped).
    """

    estimate: float
    low: float
    high: float


def bootstrap_additive_metrics(
    statistics: Any,
    metrics_from_sums: SumsToMetrics,
    groups: Sequence[Any] | np.ndarray | None = None,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, MetricInterval]:
    """Estimate and patient-bootstrap interval of every metric ``metrics_from_sums`` returns.

    Args:
        statistics: ``(N, S)`` additive per-sample statistics.
        metrics_from_sums: maps ``(..., S)`` sums to ``{name: tensor of shape (...)}``.
        groups: one patient id per sample, or ``None`` (each sample its own group).
        n_resamples, confidence_level, seed: as for :func:`~mtl_hf.evaluation.bootstrap_roc_auc`.

    Raises:
        ValueError: ``statistics`` is not a non-empty 2-D finite array, or the other arguments are bad.
    """
    _check_bootstrap_args(n_resamples, confidence_level)
    stats = _checked(statistics, "statistics")
    codes = group_codes(groups, stats.shape[0])
    num_groups = int(codes.max()) + 1
    group_sums = _sum_by_group(stats, codes, num_groups)
    metrics = _on_arrays(metrics_from_sums)
    estimates = metrics(stats.sum(axis=0))
    blocks = [
        metrics(multiplicities @ group_sums)
        for multiplicities in group_resamples(num_groups, n_resamples, seed)
    ]
    out = {}
    for name, estimate in estimates.items():
        values = np.concatenate([block[name] for block in blocks])
        values = values[np.isfinite(values)]
        low, high = percentile_interval(values, confidence_level) if values.size else (np.nan, np.nan)
        out[name] = MetricInterval(
            estimate=float(estimate),
            low=float(low),
            high=float(high),
            confidence_level=float(confidence_level),
            n_resamples=int(n_resamples),
            n_groups=num_groups,
            n_samples=int(stats.shape[0]),
            seed=int(seed),
        )
    return out


@dataclass(frozen=True)
class PairedMetricInterval(Resampling):
    """Difference of a metric between two models on the same samples, with its paired bootstrap
    interval (and :class:`Resampling`).

    Attributes:
        value_a, value_b: the metric of each model on every sample.
        difference: ``value_a - value_b``.
        low, high: percentile interval of the difference over resamples of patients (both models
            resampled alike; resamples where it is NaN are skipped).
        p_value: two-sided p-value of ``difference == 0`` from inverting the percentile interval, as
            for the paired ROC AUC bootstrap.
    """

    value_a: float
    value_b: float
    difference: float
    low: float
    high: float
    p_value: float


def paired_bootstrap_additive_metrics(
    statistics_a: Any,
    statistics_b: Any,
    metrics_from_sums: SumsToMetrics,
    groups: Sequence[Any] | np.ndarray | None = None,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> dict[str, PairedMetricInterval]:
    """Paired patient bootstrap of ``metric(A) - metric(B)`` for two models' statistics of the same
    samples (row ``i`` of both is sample ``i``); the resamples are those of
    :func:`bootstrap_additive_metrics` with the same ``seed``.

    Raises:
        ValueError: the two arrays differ in shape, or as :func:`bootstrap_additive_metrics`.
    """
    _check_bootstrap_args(n_resamples, confidence_level)
    a, b = _checked(statistics_a, "statistics_a"), _checked(statistics_b, "statistics_b")
    if a.shape != b.shape:
        raise ValueError(f"statistics_a {a.shape} and statistics_b {b.shape}: must describe the same samples")
    codes = group_codes(groups, a.shape[0])
    num_groups = int(codes.max()) + 1
    sums_a, sums_b = _sum_by_group(a, codes, num_groups), _sum_by_group(b, codes, num_groups)
    metrics = _on_arrays(metrics_from_sums)
    full_a, full_b = metrics(a.sum(axis=0)), metrics(b.sum(axis=0))
    blocks = []
    for multiplicities in group_resamples(num_groups, n_resamples, seed):
        resampled_a, resampled_b = metrics(multiplicities @ sums_a), metrics(multiplicities @ sums_b)
        blocks.append({k: resampled_a[k] - resampled_b[k] for k in resampled_a})
    out = {}
    for name in full_a:
        differences = np.concatenate([block[name] for block in blocks])
        differences = differences[np.isfinite(differences)]
        if differences.size:
            low, high = percentile_interval(differences, confidence_level)
            p_value = bootstrap_p_value(differences)
        else:
            low, high, p_value = np.nan, np.nan, 1.0
        out[name] = PairedMetricInterval(
            value_a=float(full_a[name]),
            value_b=float(full_b[name]),
            difference=float(full_a[name] - full_b[name]),
            low=float(low),
            high=float(high),
            p_value=p_value,
            confidence_level=float(confidence_level),
            n_resamples=int(n_resamples),
            n_groups=num_groups,
            n_samples=int(a.shape[0]),
            seed=int(seed),
        )
    return out


def _sum_by_group(stats: np.ndarray, codes: np.ndarray, num_groups: int) -> np.ndarray:
    """``(G, S)``: the statistics of each group's samples, summed."""
    sums = np.zeros((num_groups, stats.shape[1]))
    np.add.at(sums, codes, stats)
    return sums


def _on_arrays(metrics_from_sums: SumsToMetrics) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """``metrics_from_sums`` (torch in, torch out) on numpy arrays of any leading shape."""

    def metrics(sums: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v.double().numpy() for k, v in metrics_from_sums(torch.from_numpy(sums)).items()}

    return metrics


def _checked(statistics: Any, name: str) -> np.ndarray:
    stats = np.asarray(statistics, dtype=np.float64)
    if stats.ndim != 2 or stats.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty (samples, statistics) array, got shape {stats.shape}")
    if not np.isfinite(stats).all():
        raise ValueError(f"{name}: holds NaN or inf")
    return stats
