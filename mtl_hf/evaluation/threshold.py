"""Operating points: choose a decision threshold on validation scores, then measure it on test scores.

ROC AUC needs no threshold, but a clinician reads sensitivity and specificity at one. Choosing that
threshold on the test set itself would overstate both, so :func:`choose_threshold` is meant for the
validation split and :func:`threshold_metrics` for the test split. A sample is called positive when its
score is at or above the threshold (the convention of ``sklearn.metrics.roc_curve``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.metrics import confusion_matrix, roc_curve

from .inputs import to_binary_columns
from .score_layouts import DEFAULT_LAYOUT

ThresholdMethod = Literal["youden", "closest_topleft", "sensitivity", "specificity"]
THRESHOLD_METHODS: tuple[str, ...] = ("youden", "closest_topleft", "sensitivity", "specificity")


@dataclass(frozen=True)
class ThresholdMetrics:
    """Confusion-matrix metrics of binary scores at one threshold.

    ``sensitivity`` (recall, true-positive rate), ``specificity`` (true-negative rate), ``ppv``
    (precision) and ``npv`` are NaN when their denominator is zero.
    """

    threshold: float
    accuracy: float
    balanced_accuracy: float
    sensitivity: float
    specificity: float
    ppv: float
    npv: float
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int


def choose_threshold(
    references: Any,
    predictions: Any,
    method: str = "youden",
    target: float | None = None,
) -> float:
    """Pick a decision threshold on (validation) scores.

    Args:
        references: ``(n,)`` 0/1 ground truth.
        predictions: ``(n,)`` positive-class scores.
        method: ``"youden"`` (default) maximises Youden's J = sensitivity + specificity - 1;
            ``"closest_topleft"`` minimises the distance of the ROC point to (0, 1);
            ``"sensitivity"`` is the highest threshold whose sensitivity is at least ``target``;
            ``"specificity"`` is the lowest threshold whose specificity is at least ``target``.
        target: required for ``"sensitivity"`` and ``"specificity"``, in ``(0, 1]``.

    Returns:
        The threshold, one of the observed scores. Ties in the criterion go to the highest threshold.
    """
    columns = to_binary_columns(references, predictions, DEFAULT_LAYOUT)
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"method: unknown threshold method {method!r}; expected one of {THRESHOLD_METHODS}")
    goal = 0.0
    if method in ("sensitivity", "specificity"):
        if target is None or not 0.0 < float(target) <= 1.0:
            raise ValueError(f"target: method {method!r} needs a target in (0, 1], got {target!r}")
        goal = float(target) - 1e-12  # tolerate rounding in tpr / fpr
    elif target is not None:
        raise ValueError(f"target: only used by methods 'sensitivity' and 'specificity', not {method!r}")
    fpr, tpr, thresholds = roc_curve(columns.labels[0], columns.scores[0], drop_intermediate=False)
    # roc_curve's first point (threshold +inf) calls nothing positive; it is not a usable threshold.
    fpr, tpr, thresholds = fpr[1:], tpr[1:], thresholds[1:]
    if method == "youden":
        index = int(np.argmax(tpr - fpr))
    elif method == "closest_topleft":
        index = int(np.argmin((1.0 - tpr) ** 2 + fpr**2))
    else:
        rate = tpr if method == "sensitivity" else 1.0 - fpr
        reached = np.flatnonzero(rate >= goal)
        if reached.size == 0:
            raise ValueError(f"target: no threshold reaches {method} {target} on these scores")
        index = int(reached[0] if method == "sensitivity" else reached[-1])
    return float(thresholds[index])


def threshold_metrics(references: Any, predictions: Any, threshold: float) -> ThresholdMetrics:
    """Accuracy, sensitivity, specificity, PPV and NPV of ``predictions >= threshold``."""
    threshold = float(threshold)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold: must be a finite number, got {threshold!r}")
    columns = to_binary_columns(references, predictions, DEFAULT_LAYOUT)
    labels, scores = columns.labels[0], columns.scores[0]
    predicted = scores >= threshold
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(labels, predicted, labels=[False, True]).ravel())

    def ratio(num: int, den: int) -> float:
        return num / den if den else float("nan")

    sensitivity, specificity = ratio(tp, tp + fn), ratio(tn, tn + fp)
    return ThresholdMetrics(
        threshold=threshold,
        accuracy=ratio(tp + tn, tp + tn + fp + fn),
        balanced_accuracy=(sensitivity + specificity) / 2.0,
        sensitivity=sensitivity,
        specificity=specificity,
        ppv=ratio(tp, tp + fp),
        npv=ratio(tn, tn + fn),
        true_positives=tp,
        false_positives=fp,
        true_negatives=tn,
        false_negatives=fn,
    )
