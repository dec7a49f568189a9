"""The values ``predict``'s options take, kept free of heavy imports so ``mtl-hf predict --help`` lists
them without loading numpy or torch."""

from __future__ import annotations

from typing import Literal

Aggregation = Literal["topk_mean", "max", "mean"]
AGGREGATIONS: tuple[str, ...] = ("topk_mean", "max", "mean")
"""Volume-level scores from slice probabilities (:mod:`mtl_hf.heads.volume_rules`)."""

Intensity = Literal["brain", "volume", "slice"]
INTENSITIES: tuple[str, ...] = ("brain", "volume", "slice")
"""Intensity scalings of a NIfTI volume (:mod:`.readers`)."""

__all__ = ["AGGREGATIONS", "INTENSITIES", "Aggregation", "Intensity"]
