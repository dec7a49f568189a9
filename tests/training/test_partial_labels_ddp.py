"""Partially labelled batches in a real two-process DDP run (gloo on the CPU): a process without a label
for a task neither hangs nor desynchronises the gradient all-reduce; the heads' gradients are the mean
over processes of each process's gradient over its labelled samples (zero where it has none), checked
against a hand computation in one process."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mtl_hf import MTLConfig, MTLModel
from tests.launch import launch_two_processes
from tests.training.partial_labels_ddp import TASKS, WEIGHTINGS, global_batch, half
from tests.training.synthetic import TINY_BACKBONE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("partial_ddp")
    launch_two_processes(ROOT / "tests" / "training" / "partial_labels_ddp.py", str(out), timeout=400)
    return out


def test_gradients_average_the_labelled_processes(run: Path) -> None:
    ranks = [torch.load(run / f"grads{r}.pt") for r in range(2)]
    # Process 0 has labels for a only, process 1 for b only: each reports that task's loss alone.
    assert [set(r["task_losses"]) for r in ranks] == [{"a"}, {"b"}]

    model = MTLModel(MTLConfig(backbone_config=TINY_BACKBONE, tasks=TASKS)).train()
    model.load_state_dict(load_file(run / "init.safetensors"))
    batch = global_batch()
    expected: dict[str, torch.Tensor] = {}
    # Process 0's labelled rows of a, process 1's of b (rows within each process's half):
    for rank, (task, rows) in enumerate([("a", [0, 2, 3]), ("b", [0, 1, 3])]):
        part = half(batch, rank)
        out = model(part["pixel_values"], tasks=[task])  # logits of every sample, no labels
        z = out.logits[task]
        if task == "a":  # BCE over the labelled rows, by hand
            y = part["labels"]["a"][rows]
            p = torch.sigmoid(z[rows])
            loss = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
        else:  # cross-entropy over the labelled rows, by hand
            y = part["labels"]["b"][rows]
            loss = -torch.log_softmax(z[rows], dim=-1)[torch.arange(3), y].mean()
        torch.testing.assert_close(ranks[rank]["task_losses"][task], loss.detach())
        model.zero_grad(set_to_none=True)
        loss.backward()
        for name, p in model.named_parameters():
            if p.grad is not None:  # DDP averages over 2 processes; the other contributes zero
                expected[name] = expected.get(name, torch.zeros_like(p)) + p.grad / 2
    for r in ranks:
        assert set(r["grads"]) == set(expected)
        for name, grad in expected.items():
            torch.testing.assert_close(r["grads"][name], grad, atol=1e-6, rtol=1e-4, msg=name)
    assert expected["heads.a.classifier.weight"].abs().sum() > 0
    assert expected["heads.b.classifier.weight"].abs().sum() > 0


def test_weighters_step_alike_on_both_processes_when_tasks_are_absent(run: Path) -> None:
    ranks = [torch.load(run / f"steps{r}.pt") for r in range(2)]
    assert set(ranks[0]) == set(WEIGHTINGS)
    for name in WEIGHTINGS:
        a, b = ranks[0][name], ranks[1][name]
        # The step's task losses are means over the processes that had the task, the same on both.
        assert a["losses"] == b["losses"], name
        assert [set(step) for step in a["losses"]] == [{"a", "b", "mim"}, {"a", "b"}, {"a"}], name
        for key, value in a["sums"].items():
            assert math.isfinite(value), (name, key)
            assert value == pytest.approx(b["sums"][key], rel=1e-6, abs=1e-6), (name, key)
