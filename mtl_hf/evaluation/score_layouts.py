"""How a classifier's scores and references are laid out: the configurations of the ROC AUC metric.

ROC analysis works on binary columns (:class:`~mtl_hf.evaluation.inputs.BinaryColumns`). Scores reach
it in one of three layouts, the configurations of the ``mtl_roc_auc`` evaluate module (the input forms
of scikit-learn's ``roc_auc_score``):

* ``binary``: one positive-class score per sample, 0/1 references;
* ``multilabel``: ``K`` scores per sample, ``K`` 0/1 references per sample (one column per label);
* ``multiclass``: ``K`` scores per sample, a class index per sample (one-vs-rest columns).

A head names the layout of its scores (:attr:`~mtl_hf.heads.TaskHead.prediction_kind`) and every
statistic asks the layout (:func:`score_layout`) what it needs: how to check and split the inputs into
columns, how references come back from the label columns ``test_predictions.csv`` holds, and whether
there is one score per sample (which an operating point, DeLong's paired test and the report's scalar
keys need). Nothing else in :mod:`mtl_hf.evaluation` compares layout names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np


class ScoreLayout(ABC):
    """One layout of scores and references; subclasses are the metric's configurations."""

    name: ClassVar[str]
    single_score: ClassVar[bool] = False
    """One score per sample: such scores get an operating point (a threshold), DeLong's paired test,
    and scalar keys (not per-label lists) in the report."""
    references_per_column: ClassVar[bool] = False
    """References hold one 0/1 value per column (else one value per sample)."""
    column_noun: ClassVar[str] = "label"
    """What a column is called in error messages."""

    @abstractmethod
    def columns(
        self, labels: np.ndarray, scores: np.ndarray, references_name: str, predictions_name: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(label columns, score columns)``, each ``(K, n)``, from integer ``labels`` and float
        ``scores`` as the user gave them; raise ``ValueError`` naming the argument on a bad shape or
        value."""

    def references_from_columns(self, values: np.ndarray) -> np.ndarray:
        """References in this layout from ``(n, K)`` label columns, one per output, as
        ``test_predictions.csv`` and :meth:`~mtl_hf.heads.TaskHead.label_columns` hold them."""
        return values.astype(int)

    def scores_from_columns(self, values: np.ndarray) -> np.ndarray:
        """Scores in this layout from ``(n, K)`` prediction columns, one per output."""
        return values


class BinaryScores(ScoreLayout):
    """One positive-class score per sample; references 0/1."""

    name = "binary"
    single_score = True
    column_noun = ""

    def columns(
        self, labels: np.ndarray, scores: np.ndarray, references_name: str, predictions_name: str
    ) -> tuple[np.ndarray, np.ndarray]:
        if scores.ndim != 1:
            raise ValueError(
                f"{predictions_name}: expected a 1-D array of positive-class scores for task 'binary', "
                f"got shape {scores.shape} (pass the positive-class column, or use task='multiclass')"
            )
        if labels.ndim != 1:
            raise ValueError(f"{references_name}: expected a 1-D array for task 'binary', got {labels.shape}")
        check_length(scores, labels.shape[0], predictions_name, references_name)
        check_zero_one(labels, references_name, self.name)
        return labels[None, :], scores[None, :]

    def references_from_columns(self, values: np.ndarray) -> np.ndarray:
        return values[:, 0].astype(int)

    def scores_from_columns(self, values: np.ndarray) -> np.ndarray:
        return values[:, 0]


class MultilabelScores(ScoreLayout):
    """``K`` independent labels: ``(n, K)`` scores and ``(n, K)`` 0/1 references."""

    name = "multilabel"
    references_per_column = True

    def columns(
        self, labels: np.ndarray, scores: np.ndarray, references_name: str, predictions_name: str
    ) -> tuple[np.ndarray, np.ndarray]:
        if scores.ndim != 2 or labels.ndim != 2:
            raise ValueError(
                f"{predictions_name} and {references_name}: expected 2-D (n, num_labels) arrays for task "
                f"'multilabel', got shapes {scores.shape} and {labels.shape}"
            )
        check_length(scores, labels.shape[0], predictions_name, references_name)
        if scores.shape[1] != labels.shape[1]:
            raise ValueError(
                f"{predictions_name}: has {scores.shape[1]} labels per sample but {references_name} has "
                f"{labels.shape[1]}"
            )
        check_zero_one(labels, references_name, self.name)
        return labels.T, scores.T


class MulticlassScores(ScoreLayout):
    """``K >= 2`` exclusive classes: ``(n, K)`` scores and a class index per sample, scored one
    class against the rest."""

    name = "multiclass"
    column_noun = "class"

    def columns(
        self, labels: np.ndarray, scores: np.ndarray, references_name: str, predictions_name: str
    ) -> tuple[np.ndarray, np.ndarray]:
        if scores.ndim != 2 or scores.shape[1] < 2:
            raise ValueError(
                f"{predictions_name}: expected a 2-D (n, num_classes >= 2) array for task 'multiclass', "
                f"got shape {scores.shape}"
            )
        if labels.ndim != 1:
            raise ValueError(
                f"{references_name}: expected 1-D class indices for task 'multiclass', got {labels.shape}"
            )
        check_length(scores, labels.shape[0], predictions_name, references_name)
        num_classes = scores.shape[1]
        outside = labels[(labels < 0) | (labels >= num_classes)]
        if outside.size:
            raise ValueError(
                f"{references_name}: class indices must lie in [0, {num_classes}) to match "
                f"{predictions_name}'s {num_classes} columns; found {int(outside[0])}"
            )
        return labels[None, :] == np.arange(num_classes)[:, None], scores.T

    def references_from_columns(self, values: np.ndarray) -> np.ndarray:
        """Class indices from one-hot rows."""
        return values.argmax(axis=1)


SCORE_LAYOUTS: dict[str, ScoreLayout] = {
    layout.name: layout for layout in (BinaryScores(), MultilabelScores(), MulticlassScores())
}
"""Every layout by name: the ``mtl_roc_auc`` metric's configurations."""

DEFAULT_LAYOUT = BinaryScores.name
"""The layout functions take when none is named: one positive-class score per sample (also the one the
threshold and ROC-curve functions need)."""


def score_layout(name: str) -> ScoreLayout:
    """The layout called ``name``; a ``ValueError`` lists the valid ones otherwise."""
    layout = SCORE_LAYOUTS.get(name)
    if layout is None:
        raise ValueError(f"task: unknown task type {name!r}; expected one of {', '.join(SCORE_LAYOUTS)}")
    return layout


def check_length(array: np.ndarray, n: int, name: str, reference_name: str) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``array`` holds ``n`` samples."""
    if array.shape[0] != n:
        raise ValueError(f"{name}: has {array.shape[0]} samples but {reference_name} has {n}")


def check_zero_one(labels: np.ndarray, name: str, task: str) -> None:
    """Raise a ``ValueError`` naming ``name`` unless every label is 0 or 1."""
    outside = np.setdiff1d(np.unique(labels), [0, 1])
    if outside.size:
        shown = ", ".join(str(v) for v in outside[:5])
        raise ValueError(f"{name}: labels must be 0 or 1 for task {task!r}; found {shown}")
