"""``training.view_schedule: sequential`` (each view back-propagated as soon as it is done) makes the
joint backward's gradients, parameter by parameter, for every loss-based weighter -- in one process,
and in two real processes (DDP over gloo) with gradient accumulation and one all-reduce per step."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mtl_hf.weighting import WEIGHTERS
from tests.conftest import TwoProcessRuns
from tests.training.view_schedule_steps import (
    LOSS_WEIGHTINGS,
    OPTIMIZER_STEPS,
    compare_schedules,
    make_accelerator,
    run,
)


def assert_same_steps(
    joint: dict[str, Any], sequential: dict[str, Any], label: str, same_total: bool = True
) -> None:
    assert not joint["by_view"] and sequential["by_view"], label
    assert len(joint["grads"]) == len(sequential["grads"]) == OPTIMIZER_STEPS, label
    for step, (a, b) in enumerate(zip(joint["grads"], sequential["grads"], strict=True)):
        assert a.keys() == b.keys(), (label, step, sorted(a.keys() ^ b.keys()))
        for name in a:
            torch.testing.assert_close(
                b[name], a[name], rtol=1e-5, atol=1e-7, msg=f"{label} step {step} {name}"
            )
        assert any(float(g.abs().sum()) > 0 for g in a.values()), label
    for a, b in zip(joint["results"], sequential["results"], strict=True):
        assert b["task_losses"] == pytest.approx(a["task_losses"], rel=1e-6), label
        assert b["weights"] == pytest.approx(a["weights"], rel=1e-6), label
        assert not same_total or b["loss"] == pytest.approx(a["loss"], rel=1e-6), label
    assert joint["state"].keys() == sequential["state"].keys()
    for key, value in joint["state"].items():
        torch.testing.assert_close(sequential["state"][key], value, msg=f"{label} state {key}")


@pytest.fixture(scope="module")
def one_process() -> dict[str, dict[str, dict[str, Any]]]:
    return compare_schedules(make_accelerator())


@pytest.mark.parametrize("label", list(LOSS_WEIGHTINGS))
def test_sequential_views_make_the_joint_gradients(one_process, label):
    assert_same_steps(one_process[label]["joint"], one_process[label]["sequential"], label)


def test_weights_move_so_the_comparison_means_something(one_process):
    """The weighters' own state takes part: weights differ from 1 and (RLW, FAMO) from step to step."""
    for label in ("uncertainty", "dwa", "rlw", "famo"):
        weights = [r["weights"] for r in one_process[label]["sequential"]["results"]]
        assert any(abs(w - 1.0) > 1e-3 for w in weights[0].values()), label
    for label in ("rlw", "famo"):
        weights = [r["weights"] for r in one_process[label]["sequential"]["results"]]
        assert weights[0] != pytest.approx(weights[-1], rel=1e-4), label


def test_only_loss_based_weighters_are_separable():
    gradient_based = ["gradnorm", "pcgrad", "mgda", "cagrad", "nash_mtl"]
    assert [WEIGHTERS.get(name).separable_by_view for name in LOSS_WEIGHTINGS] == [True] * 5
    assert [WEIGHTERS.get(name).separable_by_view for name in gradient_based] == [False] * 5


@pytest.fixture(scope="module")
def two_processes(two_process_runs: TwoProcessRuns) -> list[dict[str, Any]]:
    """What each process of tests/training/view_schedule_steps.py recorded."""
    out = two_process_runs.folder("view_schedule")
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


@pytest.mark.two_processes("view_schedule")
def test_two_processes_with_accumulation_make_the_joint_gradients(two_processes):
    for label in LOSS_WEIGHTINGS:
        for rank in two_processes:
            # FAMO on several processes: the joint path logs the model's total, normalised by this
            # process's losses, while both back-propagate (and log weights from) the processes' means.
            same_total = label != "famo"
            assert_same_steps(rank[label]["joint"], rank[label]["sequential"], label, same_total)
            # One all-reduce pass per optimizer step, the same buckets as the joint backward's.
            joint, sequential = rank[label]["joint"]["all_reduces"], rank[label]["sequential"]["all_reduces"]
            assert sequential == joint and all(n > 0 for n in joint), (label, joint, sequential)
        # Every parameter's gradient was all-reduced: the ranks hold the same (their data differ).
        first, second = (rank[label]["sequential"]["grads"] for rank in two_processes)
        for a, b in zip(first, second, strict=True):
            for name in a:
                torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-7, msg=f"{label} {name}")


def test_a_head_that_gets_no_gradient_keeps_none_as_in_the_joint_schedule():
    """The sequential schedule hands every parameter a zero gradient before the first view (so the
    backward passes add into memory allocated below the activations); one that no view writes goes back
    to ``None``, so the optimizer skips it as after the joint backward (AdamW would otherwise move it)."""
    accelerator = make_accelerator()
    joint, sequential = (
        run(accelerator, LOSS_WEIGHTINGS["fixed"], schedule, tasks=("tumour", "mim"))
        for schedule in ("joint", "sequential")
    )
    assert_same_steps(joint, sequential, "fixed, grade not trained")
    for step in sequential["grads"]:
        assert not [name for name in step if ".grade." in f".{name}."], sorted(step)
        assert [name for name in step if ".tumour." in f".{name}."], sorted(step)


def test_gradient_buffers_are_kept_from_step_to_step_but_not_over_a_windows_earlier_gradients():
    from mtl_hf.training.view_schedule import _drop_unwritten, _zero_gradients

    written, unwritten = torch.nn.Parameter(torch.ones(2, 3)), torch.nn.Parameter(torch.ones(4))
    zeros = _zero_gradients([written, unwritten], reuse=True)
    first = written.grad
    written.grad.add_(torch.full((2, 3), 2.0))  # what a backward pass does with a defined gradient
    _drop_unwritten([written, unwritten], zeros)
    assert written.grad is first and torch.equal(first, torch.full((2, 3), 2.0))
    assert unwritten.grad is None
    # The next step: the same memory, zeroed.
    _zero_gradients([written, unwritten], reuse=True)
    assert written.grad is first and torch.equal(first, torch.zeros(2, 3))
    # A window's later micro-batch: the earlier gradient stays where it is, the new one is new.
    first.fill_(5.0)
    _zero_gradients([written, unwritten], reuse=False)
    assert written.grad is not first and torch.equal(written.grad, torch.zeros(2, 3))
    assert torch.equal(first, torch.full((2, 3), 5.0))
