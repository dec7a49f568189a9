"""Partially labelled batches: a task's loss covers its labelled samples only (NaN / IGNORE_INDEX mark
the others), a batch without any label for a task gives no loss for it, and heads' losses are scalars."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtl_hf import MTLModel
from mtl_hf.heads import (
    HEADS,
    IGNORE_INDEX,
    BackboneFeatures,
    HeadOutput,
    HeadOutputError,
    TaskHead,
)
from tests.conftest import tiny_config

NAN = float("nan")
TASKS = {
    "tumour": {"type": "binary_classification"},
    "grade": {"type": "multiclass_classification", "num_classes": 3},
    "patho": {"type": "multilabel_classification", "num_labels": 2},
}


def bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits.double())
    return -(y * p.log() + (1 - y) * (1 - p).log()).mean()


def test_labelled_defaults_by_dtype() -> None:
    head = MTLModel(tiny_config(tasks=TASKS)).heads["patho"]
    assert head.labelled(torch.tensor([1.0, NAN, 0.0])).tolist() == [True, False, True]
    assert head.labelled(torch.tensor([[1.0, 0.0], [NAN, 1.0], [0.0, 0.0]])).tolist() == [True, False, True]
    assert head.labelled(torch.tensor([2, IGNORE_INDEX, 0])).tolist() == [True, False, True]
    assert head.labelled(torch.tensor([True, False])).tolist() == [True, True]


def test_select_slices_every_per_sample_field() -> None:
    b, n, d = 4, 5, 3
    features = BackboneFeatures(
        last_hidden_state=torch.randn(b, n + 1, d),
        num_prefix_tokens=1,
        grid_size=(1, n),
        pixel_values=torch.randn(b, 1, 8, 40),
        bool_masked_pos=torch.rand(b, n) > 0.5,
        hidden_states=(torch.randn(b, n + 1, d), torch.randn(b, n + 1, d)),
        visible_indices=torch.arange(b * 2).view(b, 2),
    )
    rows = torch.tensor([True, False, False, True])
    part = features.select(rows)
    assert torch.equal(part.last_hidden_state, features.last_hidden_state[[0, 3]])
    assert torch.equal(part.pixel_values, features.pixel_values[[0, 3]])
    assert torch.equal(part.bool_masked_pos, features.bool_masked_pos[[0, 3]])
    assert torch.equal(part.visible_indices, features.visible_indices[[0, 3]])
    assert all(
        torch.equal(p, f[[0, 3]]) for p, f in zip(part.hidden_states, features.hidden_states, strict=True)
    )
    assert (part.num_prefix_tokens, part.grid_size) == (1, (1, n))
    assert torch.equal(features.select(torch.tensor([2])).last_hidden_state, features.last_hidden_state[2:3])


def test_losses_cover_the_labelled_samples_only() -> None:
    model = MTLModel(tiny_config(tasks=TASKS)).eval()
    x = torch.randn(4, 3, 64, 64)
    labels = {
        "tumour": torch.tensor([1.0, NAN, 0.0, NAN]),
        "grade": torch.tensor([IGNORE_INDEX, 2, 0, IGNORE_INDEX]),
        "patho": torch.tensor([[1.0, 0.0], [NAN, NAN], [0.0, 1.0], [1.0, 1.0]]),
    }
    out = model(x, labels=labels)
    # The logits of every sample come back; the losses, computed by hand over the labelled rows of them:
    assert out.logits["tumour"].shape == (4,)
    z = out.logits["tumour"].double()
    torch.testing.assert_close(
        out.task_losses["tumour"].double(), bce(z[[0, 2]], torch.tensor([1.0, 0.0]).double())
    )
    g = torch.log_softmax(out.logits["grade"].double(), dim=-1)
    torch.testing.assert_close(out.task_losses["grade"].double(), -(g[1, 2] + g[2, 0]) / 2)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]).double()
    torch.testing.assert_close(out.task_losses["patho"].double(), bce(out.logits["patho"][[0, 2, 3]], y))
    # The weighted total combines the three (fixed weights of 1).
    torch.testing.assert_close(out.loss, sum(out.task_losses.values()))


def test_a_batch_without_labels_for_a_task_has_no_loss_for_it() -> None:
    model = MTLModel(tiny_config(tasks=TASKS)).train()
    x = torch.randn(3, 3, 64, 64)
    labels = {"tumour": torch.tensor([NAN, NAN, NAN]), "grade": torch.tensor([1, 0, 2])}
    out = model(x, labels=labels)
    assert set(out.task_losses) == {"grade"}
    assert set(out.logits) == {"tumour", "grade"}  # the unlabelled task still predicts
    torch.testing.assert_close(out.loss, out.task_losses["grade"])
    out.loss.backward()
    # The absent task's head is not part of the loss: no gradient (DDP then all-reduces zeros for it).
    assert all(p.grad is None for p in model.heads["tumour"].parameters())
    assert all(p.grad is not None for p in model.heads["grade"].parameters())


def test_no_task_present_gives_a_zero_loss_attached_to_the_graph() -> None:
    model = MTLModel(tiny_config(tasks=TASKS)).train()
    x = torch.randn(2, 3, 64, 64)
    out = model(x, labels={"tumour": torch.tensor([NAN, NAN]), "grade": torch.tensor([IGNORE_INDEX] * 2)})
    assert out.task_losses is None
    assert out.loss.item() == 0.0 and out.loss.requires_grad
    out.loss.backward()  # reaches the backbone with zeros, so every DDP process joins the all-reduce
    assert model.backbone.layers[0].attention.q_proj.weight.grad.abs().sum() == 0
    assert all(p.grad is None for p in model.heads["tumour"].parameters())
    with torch.no_grad():  # evaluation: nothing to back-propagate, no loss
        assert model(x, labels={"tumour": torch.tensor([NAN, NAN])}).loss is None


def test_partial_labels_give_the_gradient_of_the_labelled_rows() -> None:
    model = MTLModel(tiny_config(tasks={"tumour": TASKS["tumour"]})).train()
    x = torch.randn(4, 3, 64, 64)
    model(x, labels={"tumour": torch.tensor([1.0, NAN, 0.0, NAN])}).loss.backward()
    partial = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    model(x[[0, 2]], labels={"tumour": torch.tensor([1.0, 0.0])}).loss.backward()
    assert sum(a is not None for a in partial) > 10
    for a, (name, p) in zip(partial, model.named_parameters(), strict=True):
        if a is None:
            assert p.grad is None, name
        else:
            torch.testing.assert_close(a, p.grad, msg=name)


@HEADS.register("test_bad_loss")
class _BadLossHead(TaskHead):
    """A head whose loss is not a 0-dim tensor: per sample, of shape (1,), or a float, by task name."""

    def __init__(self, task_name, options, backbone) -> None:
        super().__init__(task_name, options, backbone)
        self.linear = torch.nn.Linear(backbone.hidden_size, 1)

    def forward(self, features, labels=None) -> HeadOutput:
        logits = self.linear(features.cls_token)[:, 0]
        if labels is None:
            return HeadOutput(logits=logits)
        per_sample = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
        loss = {
            "per_sample": per_sample,
            "one_element": per_sample.mean().reshape(1),
            "python_float": per_sample.mean().item(),
        }
        return HeadOutput(loss=loss[self.task_name], logits=logits)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("task", "shape"),
    [("per_sample", r"shape \(3,\)"), ("one_element", r"shape \(1,\)"), ("python_float", "float")],
)
def test_a_loss_that_is_not_a_0_dim_tensor_names_the_task_and_head(task: str, shape: str) -> None:
    model = MTLModel(tiny_config(tasks={task: {"type": "test_bad_loss"}}))
    with pytest.raises(
        HeadOutputError, match=rf"task '{task}': head _BadLossHead returned a loss that is .*{shape}"
    ):
        model(torch.randn(3, 3, 64, 64), labels={task: torch.tensor([1.0, 0.0, 1.0])})


def test_gradient_methods_compare_tasks_on_the_whole_batch_features() -> None:
    """A task labelled on some rows reads them through ``features.select``; the recorder still keeps the
    whole batch's tensor, the one every task's gradient is taken on (MGDA-UB's ``gradients: features``)."""
    from mtl_hf.weighting import SharedFeatureRecorder

    model = MTLModel(tiny_config(tasks=TASKS)).train()
    recorder = SharedFeatureRecorder(model.heads.values(), owner=model)
    labels = {"tumour": torch.tensor([1.0, NAN, 0.0]), "grade": torch.tensor([0, 1, 2])}
    out = model(torch.randn(3, 3, 64, 64), labels=labels)
    assert len(recorder.features) == 1 and recorder.features[0].shape[0] == 3
    assert out.last_hidden_state is recorder.features[0]
    grads = [torch.autograd.grad(out.task_losses[t], recorder.features, retain_graph=True)[0] for t in labels]
    assert grads[0][1].abs().sum() == 0 and grads[0][0].abs().sum() > 0  # the unlabelled row has none
