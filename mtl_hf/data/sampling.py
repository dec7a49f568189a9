"""What the training split keeps: a nested fraction of its patients, then optional undersampling.

* :func:`training_fraction` keeps the first ``ceil(fraction * n)`` patients of a seeded stratified
  order (:func:`mtl_hf.data.splits.stratified_order`) of the training patients. The order depends only
  on the seed and the patients, so for one seed the 5 % subset is inside the 10 % subset, which is
  inside the 25 % subset: learning curves compare nested training sets, not different draws.
* :func:`undersample` then drops samples of the larger classes at random (seeded) until each class of
  the stratification target has as many samples as the smallest one: the paper's "under sampled"
  setting. Samples without a label for that target are kept.

Validation and test are never subsampled: results stay comparable across settings.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import DataError
from .kinds import data_kind
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


def undersample(indices: Sequence[int], labels: Sequence[Any], kind: str, seed: int) -> list[int]:
    """Indices balanced by random undersampling of every class to the smallest class's size (sorted).

    The class of a sample is its data kind's :meth:`~mtl_hf.data.targets.TargetEncoder.class_key`
    (binary and multiclass: the label; multilabel: 1 when any label is positive). Samples without a
    label for the target are all kept.

    Raises:
        DataError: the target's kind has no classes (continuous).
    """
    encoder = data_kind(kind)
    by_class: dict[int, list[int]] = defaultdict(list)
    unlabelled: list[int] = []
    for index, label in zip(indices, labels, strict=True):
        if not encoder.is_labelled(label):
            unlabelled.append(index)
            continue
        key = encoder.class_key(label)
        if key is None:
            raise DataError("sampling.undersample", f"{kind} targets have no classes to balance")
        by_class[key].append(index)
    if len(by_class) < 2:
        return sorted(indices)
    smallest = min(len(v) for v in by_class.values())
    rng = np.random.default_rng(seed * 1000 + UNDERSAMPLE_STREAM)
    kept: list[int] = list(unlabelled)
    for cls in sorted(by_class):
        members = by_class[cls]
        chosen = rng.choice(len(members), size=smallest, replace=False)
        kept.extend(members[i] for i in chosen)
    return sorted(kept)
