"""Per-volume intensity normalisation over brain voxels: percentile clip, then min-max or z-score.

MRI intensities have no absolute scale: the same tissue differs between scanners, sessions and even
patients. Normalising each volume with statistics of its own brain voxels (background excluded, so
the amount of air around the head does not matter) makes slices of different patients comparable.
Clipping to percentiles first keeps a few hot voxels from squeezing the rest of the range.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

NormalizationMethod = Literal["minmax", "zscore", "none"]


def normalize_volume(
    volume: np.ndarray,
    brain: np.ndarray,
    method: NormalizationMethod = "minmax",
    percentiles: Sequence[float] = (0.5, 99.5),
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Normalise ``volume`` with statistics of its voxels inside ``brain``; background becomes 0.

    Args:
        volume: Intensities, any shape and numeric dtype.
        brain: Boolean mask of the same shape; statistics use only these voxels.
        method: ``"minmax"``: clip to the percentiles, then map them to [0, 1]. ``"zscore"``: clip, then
            subtract the mean and divide by the standard deviation of the clipped brain voxels.
            ``"none"``: only cast to float32 (the percentiles are ignored).
        percentiles: Lower and upper percentile (0-100) of the brain voxels to clip to.
        out: Optional float32 array of ``volume``'s shape to write into (any memory layout: the caller
            chooses one that suits what comes next, e.g. slice-contiguous), saving a copy.

    Returns:
        A float32 array of ``volume``'s shape (``out`` if given). A volume with an empty or constant
        brain gives zeros (min-max, z-score), since it has no contrast to keep.
    """
    if volume.shape != brain.shape:
        raise ValueError(f"volume shape {volume.shape} differs from brain mask shape {brain.shape}")
    if method not in ("minmax", "zscore", "none"):
        raise ValueError(f"method must be 'minmax', 'zscore' or 'none', got {method!r}")
    if out is None:
        out = np.empty(volume.shape, dtype=np.float32)
    elif out.shape != volume.shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {volume.shape}, got {out.dtype} {out.shape}")
    np.copyto(out, volume, casting="unsafe")
    if method == "none":
        return out
    values = out[brain]
    if values.size == 0:
        out[...] = 0.0
        return out
    lo, hi = np.percentile(values, [percentiles[0], percentiles[1]])
    np.clip(out, lo, hi, out=out)
    if method == "minmax":
        if hi <= lo:
            out[...] = 0.0
            return out
        out -= np.float32(lo)
        out *= np.float32(1.0 / (hi - lo))
    else:
        clipped = np.clip(values, lo, hi).astype(np.float64)
        mean, std = clipped.mean(), clipped.std()
        if std <= 0:
            out[...] = 0.0
            return out
        out -= np.float32(mean)
        out *= np.float32(1.0 / std)
    out[~brain] = 0.0
    return out
