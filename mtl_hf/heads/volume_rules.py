"""Volume-level predictions from per-slice ones: the rules a head's
:meth:`~mtl_hf.heads.TaskHead.aggregate_volume` applies.

Class probabilities: a volume (or cine loop) is positive when some slices are: the lesion occupies a
few slices of a brain volume, so the mean over all slices would dilute it. The default for them,
``topk_mean``, averages the ``k`` highest slice probabilities per output: as sensitive as ``max`` to a
lesion spanning a few slices but less driven by one noisy slice. ``max`` and ``mean`` are available too
(``predict``'s ``--aggregation``, :data:`~mtl_hf.inference.choices.AGGREGATIONS`). Real values (a
regression's) follow their head's own rule instead: ``mean`` over the slices by default, or ``sum`` (a
per-slice area summed into a volume) or ``max``.

Every rule applies to each output column on its own; for a multi-class task the volume-level values are
therefore per-class scores and need not sum to one.
"""

from __future__ import annotations

import numpy as np

VOLUME_RULES: tuple[str, ...] = ("topk_mean", "max", "mean", "sum")
"""Every rule :func:`aggregate_slices` applies: the user's choices for probabilities
(:data:`~mtl_hf.inference.choices.AGGREGATIONS`, kept free of numpy for ``--help``) and ``sum``, which
only a head picks."""


def aggregate_slices(probabilities: np.ndarray, method: str = "topk_mean", top_k: int = 3) -> np.ndarray:
    """``(K,)`` volume values from ``(S, K)`` slice predictions (``S >= 1`` slices, ``K`` outputs) by the
    rule ``method`` (:data:`VOLUME_RULES`).

    ``topk_mean`` uses ``min(top_k, S)`` slices.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(
            f"expected (slices, outputs) predictions with at least one slice, got shape {p.shape}"
        )
    if method == "max":
        return p.max(axis=0)
    if method == "mean":
        return p.mean(axis=0)
    if method == "sum":
        return p.sum(axis=0)
    if method == "topk_mean":
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        k = min(top_k, p.shape[0])
        return np.sort(p, axis=0)[-k:].mean(axis=0)
    raise ValueError(f"aggregation must be one of {', '.join(VOLUME_RULES)}, got {method!r}")
