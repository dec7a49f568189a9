"""Percentile bootstrap of a mean, resampling clusters (patients) rather than single images.

Slices of one patient are not independent: resampling slices would give intervals that are too
narrow. With ``groups`` (patient ids), each resample draws as many patients as there are, with
replacement, and takes the mean over all their images (Field & Welsh 2007, the cluster bootstrap).
Without groups each image is its own cluster (the ordinary percentile bootstrap, Efron & Tibshirani
1993). Non-finite values (e.g. an ROC AUC undefined for an image) are left out first. The resampling
is :func:`mtl_hf.evaluation.bootstrap_additive_metrics` (a mean is a ratio of sums), so patients are
drawn from the same random stream as every other interval of the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..evaluation.additive import bootstrap_additive_metrics
from .errors import ExplainError


@dataclass(frozen=True)
class MeanWithCI:
    """A mean and its percentile bootstrap interval.

    Attributes:
        mean: The mean over the finite values.
        low, high: Bounds of the ``confidence`` interval (NaN when there are no values).
        n: Number of finite values.
        n_groups: Number of clusters they came from.
    """

    mean: float
    low: float
    high: float
    n: int
    n_groups: int


def check_bootstrap_options(n_resamples: int, confidence: float) -> None:
    """Raise :class:`~mtl_hf.explain.errors.ExplainError` unless ``n_resamples >= 1`` and ``confidence``
    is in (0, 1)."""
    if not 0.0 < confidence < 1.0:
        raise ExplainError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ExplainError(f"n_resamples must be at least 1, got {n_resamples}")


def bootstrap_mean(
    values: Sequence[float] | np.ndarray,
    groups: Sequence[Any] | np.ndarray | None = None,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> MeanWithCI:
    """The mean of ``values`` with a cluster percentile bootstrap interval over ``groups``."""
    check_bootstrap_options(n_resamples, confidence)
    v = np.asarray(values, dtype=np.float64)
    g = np.arange(len(v)) if groups is None else np.asarray(groups, dtype=object)
    if g.shape != v.shape:
        raise ValueError(f"values ({v.shape[0]}) and groups ({g.shape[0]}) differ in length")
    finite = np.isfinite(v)
    v, g = v[finite], g[finite]
    if v.size == 0:
        return MeanWithCI(float("nan"), float("nan"), float("nan"), 0, 0)
    # A mean is a ratio of sums: the cluster bootstrap of additive statistics does the resampling.
    intervals = bootstrap_additive_metrics(
        np.stack([v, np.ones_like(v)], axis=1),
        lambda sums: {"mean": sums[..., 0] / sums[..., 1]},
        g.astype(str),
        n_resamples=n_resamples,
        confidence_level=confidence,
        seed=seed,
    )
    ci = intervals["mean"]
    return MeanWithCI(float(v.mean()), ci.low, ci.high, int(v.size), ci.n_groups)
