"""Volume-level scores from per-slice probabilities.

A volume (or cine loop) is positive when some slices are: the lesion occupies a few slices of a brain
volume, so the mean over all slices would dilute it. The default, ``topk_mean``, averages the ``k``
highest slice probabilities per output: as sensitive as ``max`` to a lesion spanning a few slices but
less driven by one noisy slice. ``max`` and ``mean`` are available too.

The rule applies to each output column on its own; for a multi-class task the volume-level values are
therefore per-class scores and need not sum to one.
"""

from __future__ import annotations

import numpy as np

from .choices import AGGREGATIONS, Aggregation


def aggregate_slices(
    probabilities: np.ndarray, method: Aggregation = "topk_mean", top_k: int = 3
) -> np.ndarray:
    """``(K,)`` volume scores from ``(S, K)`` slice probabilities (``S >= 1`` slices, ``K`` outputs).

    ``topk_mean`` uses ``min(top_k, S)`` slices.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(
            f"expected (slices, outputs) probabilities with at least one slice, got shape {p.shape}"
        )
    if method == "max":
        return p.max(axis=0)
    if method == "mean":
        return p.mean(axis=0)
    if method == "topk_mean":
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        k = min(top_k, p.shape[0])
        return np.sort(p, axis=0)[-k:].mean(axis=0)
    raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {method!r}")
