"""Partially labelled batches in a real two-process DDP run (gloo on the CPU): a process without a label
for a task neither hangs nor desynchronises the gradient all-reduce; the heads' gradients are the mean
over processes of each process's gradient over its labelled samples (zero where it has none), checked
against a hand computation in one process."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mtl_hf import MTLConfig, MTLModel
from mtl_hf.registry import BUILTIN_SOURCE
from mtl_hf.weighting import WEIGHTERS
from tests.conftest import TwoProcessRuns
from tests.training.partial_labels_ddp import TASKS, WEIGHTINGS, global_batch, half
from tests.training.synthetic import TINY_BACKBONE


@pytest.fixture(scope="module")
def run(two_process_runs: TwoProcessRuns) -> Path:
    """The folder of tests/training/partial_labels_ddp.py's two processes."""
    return two_process_runs.folder("partial_labels")


@pytest.mark.two_processes("partial_labels")
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


def test_every_built_in_weighter_is_run() -> None:
    built_in = {e.name for e in WEIGHTERS.entries() if e.source == BUILTIN_SOURCE}
    assert {w["type"] for w in WEIGHTINGS.values()} == built_in


@pytest.mark.two_processes("partial_labels")
def test_weighters_step_alike_on_both_processes_when_tasks_are_absent(run: Path) -> None:
    ranks = [torch.load(run / f"steps{r}.pt") for r in range(2)]
    assert set(ranks[0]) == set(WEIGHTINGS)
    for name in WEIGHTINGS:
        a, b = ranks[0][name], ranks[1][name]
        # The step's task losses are means over the processes that had the task, the same on both.
        assert a["losses"] == b["losses"], name
        assert [set(step) for step in a["losses"]] == [{"a", "b", "mim"}, {"a", "b"}, {"a"}], name
        for step, (losses, w0, w1) in enumerate(zip(a["losses"], a["weights"], b["weights"], strict=True)):
            # A process weighs the tasks it has a term for (a gradient-based method: every task present
            # on any process); no absent task is weighted, and a task both weigh has one weight.
            assert set(w0) | set(w1) == set(losses), (name, step)
            for task in set(w0) & set(w1):
                assert math.isfinite(w0[task]), (name, step, task)
                assert w0[task] == pytest.approx(w1[task], rel=1e-6), (name, step, task)
        # Every parameter and buffer (the weighters' state included) ends the same on both processes.
        assert set(a["sums"]) == set(b["sums"]), name
        for key, value in a["sums"].items():
            assert math.isfinite(value), (name, key)
            assert value == pytest.approx(b["sums"][key], rel=1e-6, abs=1e-6), (name, key)


def _weights(rank_results: list[dict], name: str) -> list[dict[str, float]]:
    """Each step's weights of weighter ``name``, from whichever process weighed each task."""
    return [{**w1, **w0} for w0, w1 in zip(*(r[name]["weights"] for r in rank_results), strict=True)]


@pytest.mark.two_processes("partial_labels")
def test_rlw_draws_the_same_weights_on_both_processes(run: Path) -> None:
    ranks = [torch.load(run / f"steps{r}.pt") for r in range(2)]
    for step, weights in enumerate(_weights(ranks, "rlw")):
        # Draw ``step`` from (seed, step): softmax of three standard normals over tasks a, b, mim; an
        # absent task's share is dropped, not spread over the others.
        raw = np.random.default_rng([WEIGHTINGS["rlw"]["seed"], step]).standard_normal(3)
        drawn = dict(zip(["a", "b", "mim"], np.exp(raw) / np.exp(raw).sum(), strict=True))
        assert weights == pytest.approx({task: drawn[task] for task in weights}, rel=1e-6), step


@pytest.mark.two_processes("partial_labels")
def test_dwa_and_famo_weights_follow_the_losses_of_the_tasks_present(run: Path) -> None:
    ranks = [torch.load(run / f"steps{r}.pt") for r in range(2)]
    losses = ranks[0]["dwa"]["losses"]
    # DWA after two one-step epochs: r_i = L_i(2) / L_i(1); mim, absent from epoch 2, keeps its epoch-1
    # mean, so r_mim = 1; lambda = K softmax(r / T), T = 2.
    rates = np.array([losses[1]["a"] / losses[0]["a"], losses[1]["b"] / losses[0]["b"], 1.0])
    expected = 3 * np.exp(rates / 2) / np.exp(rates / 2).sum()
    assert _weights(ranks, "dwa")[2] == pytest.approx({"a": expected[0]}, rel=1e-5)
    # FAMO normalises over the tasks present on any process: their weights sum to 1.
    for step, weights in enumerate(_weights(ranks, "famo")):
        assert sum(weights.values()) == pytest.approx(1.0, rel=1e-6), step
