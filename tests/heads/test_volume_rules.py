"""The volume rules a head applies to its slice predictions, against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_hf.heads.volume_rules import VOLUME_RULES, aggregate_slices
from mtl_hf.inference.choices import AGGREGATIONS

SLICES = np.array([[0.1, 5.0], [0.9, 1.0], [0.4, 3.0], [0.7, 2.0]])  # 4 slices, 2 outputs


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("max", [0.9, 5.0]),
        ("mean", [(0.1 + 0.9 + 0.4 + 0.7) / 4, (5 + 1 + 3 + 2) / 4]),
        ("sum", [2.1, 11.0]),
        ("topk_mean", [(0.9 + 0.7) / 2, (5 + 3) / 2]),  # top 2 of each output on its own
    ],
)
def test_each_rule_by_hand(rule: str, expected: list[float]) -> None:
    np.testing.assert_allclose(aggregate_slices(SLICES, rule, top_k=2), expected)


def test_topk_mean_of_fewer_slices_than_k_is_their_mean() -> None:
    np.testing.assert_allclose(aggregate_slices(SLICES[:1], "topk_mean", top_k=3), SLICES[0])


def test_the_users_choices_are_rules_and_a_bad_rule_names_them() -> None:
    assert set(AGGREGATIONS) < set(VOLUME_RULES)
    with pytest.raises(ValueError, match="topk_mean, max, mean, sum, got 'median'"):
        aggregate_slices(SLICES, "median")
    with pytest.raises(ValueError, match=r"shape \(0, 2\)"):
        aggregate_slices(SLICES[:0], "mean")
