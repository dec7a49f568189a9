"""Checked inputs for ROC analysis: scores and labels as one-vs-rest binary columns, plus group ids.

Every statistic in :mod:`mtl_hf.evaluation` works on *binary columns*: one ``(labels, scores)`` pair per
label. A binary task has one column, a multi-label task one per label, a multi-class task one per class
(one-vs-rest). Macro averages are plain means over columns, which is what scikit-learn's
``roc_auc_score(average="macro")`` computes for multi-label and one-vs-rest multi-class inputs.

Validation happens here, once, with errors that name the offending argument: mismatched lengths,
non-finite scores, labels outside their range, a column with a single class (ROC AUC is undefined
there), group ids that do not line up with the samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .score_layouts import DEFAULT_LAYOUT, score_layout


@dataclass(frozen=True)
class BinaryColumns:
    """Scores and 0/1 labels as ``K`` binary columns over ``n`` samples.

    Attributes:
        task: the layout the columns come from (``"binary"``, ``"multilabel"`` or ``"multiclass"``).
        labels: ``(K, n)`` bool; ``labels[k, i]`` is True when sample ``i`` is positive for column ``k``.
        scores: ``(K, n)`` float64; higher means more likely positive.
    """

    task: str
    labels: np.ndarray
    scores: np.ndarray

    @property
    def num_columns(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[1])


def check_task(task: str) -> str:
    """Return ``task`` if it is a known score layout, else raise a ValueError listing the valid ones."""
    score_layout(task)
    return task


def _as_float_array(values: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected numbers, could not convert ({exc})") from exc
    if array.size == 0:
        raise ValueError(f"{name}: is empty")
    bad = ~np.isfinite(array)
    if bad.any():
        first = np.argwhere(bad)[0]
        where = int(first[0]) if first.size == 1 else tuple(int(i) for i in first)
        raise ValueError(
            f"{name}: contains {int(bad.sum())} non-finite value(s) (NaN or inf), the first at index {where}"
        )
    return array


def _as_label_array(values: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise ValueError(f"{name}: expected integer labels, could not convert ({exc})") from exc
    if array.size == 0:
        raise ValueError(f"{name}: is empty")
    if array.dtype == bool:
        return array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name}: expected integer labels, got dtype {array.dtype}")
    as_float = array.astype(np.float64)
    if not np.isfinite(as_float).all() or not np.array_equal(as_float, np.round(as_float)):
        raise ValueError(f"{name}: expected integer labels, found non-integer or non-finite values")
    return as_float.astype(np.int64)


def to_binary_columns(
    references: Any,
    predictions: Any,
    task: str = DEFAULT_LAYOUT,
    *,
    references_name: str = "references",
    predictions_name: str = "predictions",
) -> BinaryColumns:
    """Validate ``references`` and ``predictions`` and return them as one-vs-rest binary columns.

    Args:
        references: Ground truth. ``binary``: ``(n,)`` 0/1. ``multilabel``: ``(n, K)`` 0/1.
            ``multiclass``: ``(n,)`` class indices in ``[0, K)``.
        predictions: Scores (probabilities or logits; only their order matters for ROC AUC).
            ``binary``: ``(n,)`` score of the positive class. ``multilabel`` and ``multiclass``: ``(n, K)``.
        task: the layout of both (:mod:`mtl_hf.evaluation.score_layouts`): ``"binary"``,
            ``"multilabel"`` or ``"multiclass"``.
        references_name, predictions_name: Argument names used in error messages.

    Raises:
        ValueError: naming the argument, for empty inputs, mismatched lengths or widths, NaN or inf
            scores, labels outside ``{0, 1}`` (or outside ``[0, K)`` for multi-class) and any column
            whose labels hold a single class.
    """
    layout = score_layout(task)
    scores = _as_float_array(predictions, predictions_name)
    labels = _as_label_array(references, references_name)
    label_columns, score_columns = layout.columns(labels, scores, references_name, predictions_name)
    label_columns = np.ascontiguousarray(label_columns, dtype=bool)
    for k, column in enumerate(label_columns):
        positives = int(column.sum())
        if positives == 0 or positives == column.size:
            where = "" if layout.single_score else f" for {layout.column_noun} {k}"
            present = 1 if positives else 0
            raise ValueError(
                f"{references_name}: only one class ({present}) is present{where}; ROC AUC is undefined "
                "without both positive and negative samples"
            )
    return BinaryColumns(task=task, labels=label_columns, scores=np.ascontiguousarray(score_columns))


def group_codes(
    groups: Sequence[Any] | np.ndarray | None, num_samples: int, name: str = "groups"
) -> np.ndarray:
    """Integer code per sample for its group (patient), numbered in order of first appearance.

    ``None`` means every sample is its own group (codes ``0..n-1``), so a bootstrap over groups is
    then exactly a bootstrap over samples drawn from the same random stream.

    Raises:
        ValueError: if ``groups`` does not hold one id per sample, or holds a missing id (None / NaN).
    """
    if groups is None:
        return np.arange(num_samples, dtype=np.int64)
    array = np.asarray(groups, dtype=object)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected one group id per sample (1-D), got shape {array.shape}")
    if array.shape[0] != num_samples:
        raise ValueError(f"{name}: has {array.shape[0]} ids but there are {num_samples} samples")
    for i, value in enumerate(array):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            raise ValueError(f"{name}: missing group id at index {i}")
    keys = array.astype(str)
    _, first_index, inverse = np.unique(keys, return_index=True, return_inverse=True)
    # np.unique numbers groups in sorted order; renumber them in order of first appearance.
    rank = np.empty_like(first_index)
    rank[np.argsort(first_index, kind="stable")] = np.arange(first_index.size)
    return rank[inverse.reshape(-1)].astype(np.int64)


def roc_inputs(label_columns: Any, prediction_columns: Any, task: str) -> tuple[np.ndarray, np.ndarray]:
    """``(references, scores)`` of ``task`` as :func:`to_binary_columns` takes them, from a head's label
    and prediction columns (one per output, a 1-D array for a single output), as
    ``test_predictions.csv`` and :meth:`~mtl_hf.heads.TaskHead.predictions` give them."""
    layout = score_layout(task)
    return layout.references_from_columns(_columns(label_columns)), layout.scores_from_columns(
        _columns(prediction_columns)
    )


def _columns(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array.reshape(len(array), -1)
