"""What the training split keeps: a nested fraction of its patients, then optional undersampling.

* :func:`training_fraction` keeps the first ``ceil(fraction * n)`` patients of a seeded stratified
  order (:func:`mtl_hf.data.splits.stratified_order`) of the training patients. The order depends only
  on the seed and the patients, so for one seed the 5 % subset is inside the 10 % subset, which is
  inside the 25 % subset: learning curves compare nested training sets, not different draws.
* :func:`undersample` then drops samples of the larger classes at random (seeded) until each class of
  the stratification target has as many samples as the smallest one: the paper's "under sampled"
  setting.

Validation and test are never subsampled: results stay comparable across settings.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .splits import stratified_order

# Streams of the seed, so the split, the fraction and undersampling draw independent numbers.
FRACTION_STREAM = 1
UNDERSAMPLE_STREAM = 2


def training_fraction(strata: Mapping[str, str], fraction: float, seed: int) -> set[str]:
    """The training patients kept for ``fraction`` (nested across fractions for one seed)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    order = stratified_order(strata, seed * 1000 + FRACTION_STREAM)
    keep = max(1, math.ceil(fraction * len(order) - 1e-9)) if order else 0
    return set(order[:keep])


def class_key(label: Any, kind: str) -> int:
    """The class a sample counts as when balancing: binary and multiclass their label; multilabel 1
    when any label is positive (pathology vs healthy)."""
    if kind == "multilabel":
        return int(len(label) > 0)
    return int(label)


def undersample(indices: Sequence[int], labels: Sequence[Any], kind: str, seed: int) -> list[int]:
    """Indices balanced by random undersampling of every class to the smallest class's size (sorted)."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for index, label in zip(indices, labels, strict=True):
        by_class[class_key(label, kind)].append(index)
    if len(by_class) < 2:
        return sorted(indices)
    smallest = min(len(v) for v in by_class.values())
    rng = np.random.default_rng(seed * 1000 + UNDERSAMPLE_STREAM)
    kept: list[int] = []
    for cls in sorted(by_class):
        members = by_class[cls]
        chosen = rng.choice(len(members), size=smallest, replace=False)
        kept.extend(members[i] for i in chosen)
    return sorted(kept)
