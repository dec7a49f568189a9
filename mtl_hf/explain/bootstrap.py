"""Percentile bootstrap of a mean, resampling clusters (patients) rather than single images.

Slices of one patient are not independent: resampling slices would give intervals that are too
narrow. With ``groups`` (patient ids), each resample draws as many patients as there are, with
replacement, and takes the mean over all their images (Field & Welsh 2007, the cluster bootstrap).
Without groups each image is its own cluster (the ordinary percentile bootstrap, Efron & Tibshirani
1993). Non-finite values (e.g. an ROC AUC undefined for an image) are left out first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


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


def bootstrap_mean(
    values: Sequence[float] | np.ndarray,
    groups: Sequence[Any] | np.ndarray | None = None,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 100,
) -> MeanWithCI:
    """The mean of ``values`` with a cluster percentile bootstrap interval over ``groups``."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    v = np.asarray(values, dtype=np.float64)
    g = np.arange(len(v)) if groups is None else np.asarray(groups, dtype=object)
    if g.shape != v.shape:
        raise ValueError(f"values ({v.shape[0]}) and groups ({g.shape[0]}) differ in length")
    finite = np.isfinite(v)
    v, g = v[finite], g[finite]
    if v.size == 0:
        return MeanWithCI(float("nan"), float("nan"), float("nan"), 0, 0)
    _, inverse = np.unique(g.astype(str), return_inverse=True)
    sums = np.bincount(inverse, weights=v)
    counts = np.bincount(inverse).astype(np.float64)
    n_groups = sums.shape[0]
    rng = np.random.default_rng(seed)
    stats = []
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        idx = rng.integers(0, n_groups, size=(size, n_groups))
        stats.append(sums[idx].sum(axis=1) / counts[idx].sum(axis=1))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(np.concatenate(stats), [alpha, 1.0 - alpha])
    return MeanWithCI(float(v.mean()), float(low), float(high), int(v.size), int(n_groups))
