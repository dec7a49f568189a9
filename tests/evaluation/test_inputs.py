"""Input validation: every bad input fails with a ValueError that names the argument."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mtl_hf.evaluation import evaluate_scores, group_codes, to_binary_columns
from mtl_hf.evaluation.inputs import roc_inputs
from mtl_hf.evaluation.score_layouts import SCORE_LAYOUTS


def test_binary_columns_hold_labels_and_scores() -> None:
    columns = to_binary_columns([0, 1, 1], [0.1, 0.7, 0.4])
    assert columns.num_columns == 1 and columns.num_samples == 3
    np.testing.assert_array_equal(columns.labels, [[False, True, True]])
    np.testing.assert_array_equal(columns.scores, [[0.1, 0.7, 0.4]])


def test_multiclass_becomes_one_vs_rest_columns() -> None:
    columns = to_binary_columns([0, 2, 1, 2], np.eye(3)[[0, 2, 1, 2]], "multiclass")
    np.testing.assert_array_equal(columns.labels, [[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 1]])


def test_columns_come_back_as_each_layout_takes_them() -> None:
    # test_predictions.csv holds one label and one prediction column per output.
    one_hot = np.eye(3)[[2, 0, 1]]
    probabilities = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    references, scores = roc_inputs(one_hot, probabilities, "multiclass")
    np.testing.assert_array_equal(references, [2, 0, 1])
    np.testing.assert_array_equal(scores, probabilities)
    references, scores = roc_inputs([1.0, 0.0, 1.0], [0.9, 0.2, 0.4], "binary")
    np.testing.assert_array_equal(references, [1, 0, 1])
    np.testing.assert_array_equal(scores, [0.9, 0.2, 0.4])
    references, scores = roc_inputs(one_hot, probabilities, "multilabel")
    np.testing.assert_array_equal(references, one_hot)
    with pytest.raises(ValueError, match="unknown task type 'ordinal'; expected one of binary, multilabel"):
        roc_inputs(one_hot, probabilities, "ordinal")
    assert set(SCORE_LAYOUTS) == {"binary", "multilabel", "multiclass"}


def test_a_multilabel_task_of_one_label_is_scored_like_its_column() -> None:
    # A single output comes back as a 1-D column; a one-label multi-label task still gets (n, 1) inputs.
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    s = np.array([0.2, 0.7, 0.4, 0.5, 0.9, 0.1, 0.3, 0.35])
    references, scores = roc_inputs(y.astype(float), s, "multilabel")
    assert references.shape == scores.shape == (8, 1)
    report = evaluate_scores(references, scores, "multilabel", n_resamples=0)
    assert report.roc_auc == pytest.approx(roc_auc_score(y, s))
    assert report.to_dict()["roc_auc_per_label"] == [pytest.approx(roc_auc_score(y, s))]


@pytest.mark.parametrize(
    ("references", "predictions", "task", "message"),
    [
        ([0, 1, 1], [0.1, 0.2], "binary", "predictions: has 2 samples but references has 3"),
        ([0, 1, 1], [0.1, float("nan"), 0.3], "binary", "predictions: contains 1 non-finite"),
        ([0, 1, 1], [0.1, float("inf"), 0.3], "binary", "predictions: contains 1 non-finite"),
        ([1, 1, 1], [0.1, 0.2, 0.3], "binary", "references: only one class (1)"),
        ([0, 0], [0.1, 0.2], "binary", "references: only one class (0)"),
        (
            [0, 2, 1],
            [0.1, 0.2, 0.3],
            "binary",
            "references: labels must be 0 or 1 for task 'binary'; found 2",
        ),
        ([0, -1, 1], [0.1, 0.2, 0.3], "binary", "found -1"),
        ([0, 0.5, 1], [0.1, 0.2, 0.3], "binary", "references: expected integer labels"),
        ([], [], "binary", "is empty"),
        ([0, 1], [[0.1, 0.9], [0.8, 0.2]], "binary", "predictions: expected a 1-D array"),
        ([[0, 1], [1, 0]], [[0.1, 0.9]], "multilabel", "predictions: has 1 samples but references has 2"),
        ([[0, 1], [1, 0]], [[0.1, 0.9, 0.3], [0.2, 0.4, 0.5]], "multilabel", "labels per sample"),
        (
            [[0, 1], [0, 0]],
            [[0.1, 0.9], [0.2, 0.4]],
            "multilabel",
            "only one class (0) is present for label 0",
        ),
        ([0, 1, 3], np.ones((3, 3)) / 3, "multiclass", "references: class indices must lie in [0, 3)"),
        ([0, 1, 1], np.ones((3, 3)) / 3, "multiclass", "only one class (0) is present for class 2"),
        ([0, 1], [0.1, 0.2], "regression", "task: unknown task type 'regression'"),
    ],
)
def test_bad_inputs_name_the_argument(references, predictions, task, message) -> None:
    with pytest.raises(ValueError) as info:
        to_binary_columns(references, predictions, task)
    assert message in str(info.value)


def test_group_codes_number_groups_in_order_of_first_appearance() -> None:
    np.testing.assert_array_equal(group_codes(["b", "a", "b", "c", "a"], 5), [0, 1, 0, 2, 1])
    np.testing.assert_array_equal(group_codes(None, 3), [0, 1, 2])
    np.testing.assert_array_equal(group_codes([7, 7, 3], 3), [0, 0, 1])


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (["a", "b"], "groups: has 2 ids but there are 3 samples"),
        (["a", None, "b"], "groups: missing group id at index 1"),
        ([["a"], ["b"], ["c"]], "groups: expected one group id per sample"),
    ],
)
def test_bad_groups_are_named(groups, message) -> None:
    with pytest.raises(ValueError) as info:
        evaluate_scores([0, 1, 1], [0.1, 0.2, 0.3], groups=groups, n_resamples=10)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_resamples": -1}, "n_resamples: must be a non-negative integer"),
        ({"confidence_level": 95}, "confidence_level: must lie strictly between 0 and 1"),
        (
            {"threshold": 0.5, "validation_references": [0, 1], "validation_predictions": [0.1, 0.9]},
            "not both",
        ),
        ({"validation_references": [0, 1]}, "validation_predictions: needed"),
    ],
)
def test_bad_options_are_named(kwargs, message) -> None:
    with pytest.raises(ValueError) as info:
        evaluate_scores([0, 1, 1, 0], [0.1, 0.2, 0.3, 0.4], **kwargs)
    assert message in str(info.value)


def test_threshold_on_a_multilabel_task_is_refused() -> None:
    with pytest.raises(ValueError, match="threshold: operating-point metrics are for binary tasks only"):
        evaluate_scores([[0, 1], [1, 0]], [[0.2, 0.8], [0.7, 0.1]], "multilabel", threshold=0.5)
