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

from .bootstrap import DEFAULT_RESAMPLES, _check_bootstrap_args, group_resamples
from .inputs import group_codes

SumsToMetrics = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]


@dataclass(frozen=True)
class MetricInterval:
    """A metric on the whole set with its percentile bootstrap interval.

    Attributes:
        estimate: the metric on every sample.
        low, high: percentile interval over resamples (resamples where the metric is NaN are skipped).
        confidence_level: e.g. 0.95.
        n_resamples: resamples drawn.
        n_groups: resampling units (patients, or samples without ids).
        n_samples: samples evaluated.
        seed: seed of the random stream.
    """

    estimate: float
    low: float
    high: float
    confidence_level: float
    n_resamples: int
    n_groups: int
    n_samples: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    stats = np.asarray(statistics, dtype=np.float64)
    if stats.ndim != 2 or stats.shape[0] == 0:
        raise ValueError(
            f"statistics: expected a non-empty (samples, statistics) array, got shape {stats.shape}"
        )
    if not np.isfinite(stats).all():
        raise ValueError("statistics: holds NaN or inf")
    codes = group_codes(groups, stats.shape[0])
    num_groups = int(codes.max()) + 1
    group_sums = np.zeros((num_groups, stats.shape[1]))
    np.add.at(group_sums, codes, stats)

    def metrics(sums: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v.double().numpy() for k, v in metrics_from_sums(torch.from_numpy(sums)).items()}

    estimates = metrics(stats.sum(axis=0))
    blocks = [
        metrics(multiplicities @ group_sums)
        for multiplicities in group_resamples(num_groups, n_resamples, seed)
    ]
    alpha = 1.0 - float(confidence_level)
    out = {}
    for name, estimate in estimates.items():
        values = np.concatenate([block[name] for block in blocks])
        values = values[np.isfinite(values)]
        low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0]) if values.size else (np.nan, np.nan)
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
