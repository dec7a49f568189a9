"""Logits to predictions: the function per head type, a head's own method, what each head's
prediction spec says (probabilities or values, output names, CSV columns, volume rule)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from mtl_hf import HEADS, MTLModel
from mtl_hf.heads import BackboneFeatures, BackboneSpec, HeadOptions, HeadOutput, TaskHead
from mtl_hf.inference import (
    classification_tasks,
    column_names,
    output_names,
    prediction_spec,
    prediction_tasks,
    task_predictions,
)
from tests.conftest import tiny_config
from tests.inference.conftest import THREE_TASKS


@dataclass
class OrdinalOptions(HeadOptions):
    num_levels: int = 3


class OrdinalHead(TaskHead):
    """Cumulative-link head: P(y > k) = sigmoid(s - b_k); probabilities of each level from them."""

    Options = OrdinalOptions

    def __init__(self, task_name: str, options: OrdinalOptions, backbone: BackboneSpec) -> None:
        super().__init__(task_name, options, backbone)
        self.score = torch.nn.Linear(backbone.hidden_size, 1)
        self.register_buffer("cuts", torch.linspace(-1.0, 1.0, options.num_levels - 1))

    def forward(self, features: BackboneFeatures, labels: torch.Tensor | None = None) -> HeadOutput:
        return HeadOutput(logits=self.score(features.cls_token) - self.cuts)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        above = torch.sigmoid(logits)
        ones = torch.ones_like(above[:, :1])
        zeros = torch.zeros_like(above[:, :1])
        return torch.cat([ones, above], 1) - torch.cat([above, zeros], 1)


if "test_ordinal" not in HEADS:
    HEADS.register("test_ordinal")(OrdinalHead)


def test_each_head_type_gets_its_function() -> None:
    model = MTLModel(tiny_config(tasks=THREE_TASKS)).eval()
    logits = model(torch.randn(4, 3, 64, 64)).logits
    probs = task_predictions(model, logits, ["tumour", "grade", "findings"])
    assert torch.allclose(probs["tumour"], torch.sigmoid(logits["tumour"])[:, None])
    assert probs["tumour"].shape == (4, 1)
    e = torch.exp(logits["grade"] - logits["grade"].max(dim=1, keepdim=True).values)
    assert torch.allclose(probs["grade"], e / e.sum(dim=1, keepdim=True), atol=1e-6)
    assert torch.allclose(probs["grade"].sum(dim=1), torch.ones(4))
    assert torch.allclose(probs["findings"], 1 / (1 + torch.exp(-logits["findings"])), atol=1e-6)


def test_tasks_without_probabilities_are_left_out_or_refused() -> None:
    model = MTLModel(tiny_config(tasks=THREE_TASKS))
    assert classification_tasks(model) == ["tumour", "grade", "findings"] == prediction_tasks(model)
    assert prediction_spec(model, "mim") is None
    with pytest.raises(ValueError, match="'mim' \\(mim\\) gives no class probabilities"):
        classification_tasks(model, ["mim"])
    with pytest.raises(ValueError, match="no task named 'nope'"):
        classification_tasks(model, ["nope"])


def test_output_and_column_names() -> None:
    model = MTLModel(
        tiny_config(tasks={**THREE_TASKS, "other": {"type": "multiclass_classification", "num_classes": 2}})
    )
    assert output_names(model, "tumour") == ["tumour"] and column_names(model, "tumour") == ["tumour"]
    assert column_names(model, "grade") == ["grade/low", "grade/mid", "grade/high"]
    assert column_names(model, "findings") == ["findings/oedema", "findings/necrosis"]
    assert output_names(model, "other") == ["0", "1"]


def test_a_head_method_takes_precedence() -> None:
    model = MTLModel(tiny_config(tasks={"stage": {"type": "test_ordinal", "num_levels": 4}})).eval()
    logits = model(torch.randn(3, 3, 64, 64)).logits
    probs = task_predictions(model, logits, classification_tasks(model))["stage"]
    s = torch.sigmoid(logits["stage"])
    expected = torch.stack([1 - s[:, 0], s[:, 0] - s[:, 1], s[:, 1] - s[:, 2], s[:, 2]], dim=1)
    assert torch.allclose(probs, expected, atol=1e-6)
    assert torch.allclose(probs.sum(dim=1), torch.ones(3), atol=1e-6)


def test_a_regression_task_gives_its_values_under_its_output_names() -> None:
    tasks = {"area": {"type": "regression", "num_outputs": 2, "output_names": ["whole", "core"], "target_mean": [5.0, 1.0], "target_std": [2.0, 0.5]}}  # fmt: skip
    model = MTLModel(tiny_config(tasks=tasks)).eval()
    logits = model(torch.randn(3, 3, 64, 64)).logits
    assert prediction_tasks(model) == ["area"] and classification_tasks(model) == []
    with pytest.raises(ValueError, match="'area' \\(regression\\) gives no class probabilities"):
        classification_tasks(model, ["area"])
    values = task_predictions(model, logits, ["area"])["area"]
    assert torch.equal(values, logits["area"])  # the head's predictions are its logits, in the target's units
    assert output_names(model, "area") == ["whole", "core"]
    assert column_names(model, "area") == ["area/whole", "area/core"]
    spec = prediction_spec(model, "area")
    assert spec is not None and (spec.key, spec.volume_rule) == ("values", "mean")


def test_prediction_specs_of_classifiers_keep_their_columns_and_the_asked_volume_rule() -> None:
    model = MTLModel(tiny_config(tasks=THREE_TASKS))
    specs = {t: prediction_spec(model, t) for t in ("tumour", "grade", "findings")}
    assert {t: (s.key, s.columns, s.volume_rule) for t, s in specs.items() if s is not None} == {
        "tumour": ("probabilities", ("tumour",), None),
        "grade": ("probabilities", ("grade/low", "grade/mid", "grade/high"), None),
        "findings": ("probabilities", ("findings/oedema", "findings/necrosis"), None),
    }
    # The ordinal head gives probabilities through its own method: probabilities too.
    ordinal = MTLModel(tiny_config(tasks={"stage": {"type": "test_ordinal", "num_levels": 4}}))
    spec = prediction_spec(ordinal, "stage")
    assert spec is not None and spec.key == "probabilities"
