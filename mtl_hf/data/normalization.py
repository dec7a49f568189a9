"""Per-volume intensity normalisation over brain voxels: percentile clip, then min-max or z-score.

The functions live in :mod:`mtl_hf.intensity`, shared with the image processor and ``predict``; this
module keeps the data layer's names.
"""

from __future__ import annotations

from ..intensity import NormalizationMethod, normalize_volume

__all__ = ["NormalizationMethod", "normalize_volume"]
