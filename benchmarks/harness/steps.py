"""Step modes: what one timed call of a case does. The place to add a new kind of step.

A mode is a function ``build(bench, case) -> run`` registered with :func:`step_mode`; ``run()`` is the
timed call. Before each call the harness puts the case's model in training mode when the mode
``trains`` (eval mode otherwise) and applies the case's view layout and checkpointing
(:meth:`Workbench.setup`). ``trains`` also decides which FLOPs count: forward and backward, or
forward only. A new step (say, our MTL model backwarding each view as soon as it is done) is a new
function here and ``Case("mtl", mode="<its name>")`` in :mod:`benchmarks.harness.cases`; its timing,
ratios, FLOPs, MFU and peak memory then come from the suites unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .device import autocast

if TYPE_CHECKING:
    from .cases import Case
    from .workbench import Workbench

Run = Callable[[], None]
Build = Callable[["Workbench", "Case"], Run]


@dataclass(frozen=True)
class StepMode:
    """A registered mode: its ``build`` function and whether it trains (see the module docstring)."""

    name: str
    trains: bool
    build: Build


STEP_MODES: dict[str, StepMode] = {}
"""Every step mode, by name."""


def step_mode(name: str, *, trains: bool) -> Callable[[Build], Build]:
    """Register ``build`` as step mode ``name``."""

    def register(build: Build) -> Build:
        STEP_MODES[name] = StepMode(name, trains, build)
        return build

    return register


def mode_of(case: Case) -> StepMode:
    """The step mode of ``case``; ``ValueError`` listing the modes otherwise."""
    if case.mode not in STEP_MODES:
        raise ValueError(
            f"case {case.name!r}: unknown step mode {case.mode!r}; known: {', '.join(STEP_MODES)}"
        )
    return STEP_MODES[case.mode]


@step_mode("train", trains=True)
def train_step(bench: Workbench, case: Case) -> Run:
    """Forward with labels, the loss, backward and the model's fused AdamW step."""
    forward = bench.forward(case.model)
    optimizer = bench.optimizers[case.model]

    def run() -> None:
        with autocast(bench.device, case.bf16):
            loss = forward(True)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return run


@step_mode("infer", trains=False)
def infer_step(bench: Workbench, case: Case) -> Run:
    """Forward without labels under ``torch.inference_mode`` (our model: one clean pass)."""
    forward = bench.forward(case.model)

    def run() -> None:
        with torch.inference_mode(), autocast(bench.device, case.bf16):
            forward(False)

    return run


@step_mode("views", trains=True)
def view_sequential_step(bench: Workbench, case: Case) -> Run:
    """Our model's step as training runs it by default (``training.view_schedule: sequential``): each
    view forward and back-propagated in turn, so one view's activations are alive at a time; then the
    fused AdamW step."""
    from mtl_hf.training.view_schedule import backward_by_view
    from mtl_hf.weighting import BackwardContext, SeparableWeighter

    model = bench.runners[case.model]
    unwrapped = bench.models[case.model]
    weighter = unwrapped.weighter
    assert isinstance(weighter, SeparableWeighter), f"{case.name}: the weighter is not separable by view"
    optimizer = bench.optimizers[case.model]
    context = BackwardContext(parameters=[p for p in unwrapped.parameters() if p.requires_grad])
    groups = unwrapped.view_groups(list(unwrapped.heads))
    inputs = {"pixel_values": bench.pixel_values, "labels": {"tumour": bench.labels}}

    def run() -> None:
        with autocast(bench.device, case.bf16):
            backward_by_view(model, weighter, groups, inputs, context)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return run


@step_mode("ceiling", trains=False)
def matmul_step(bench: Workbench, case: Case) -> Run:
    """Square matmuls of the case's precision: the ceiling that MFU is taken against."""
    n, reps = bench.matmul_shape()
    dtype = torch.bfloat16 if case.bf16 else torch.float32
    a = torch.randn(n, n, device=bench.device, dtype=dtype)
    b = torch.randn(n, n, device=bench.device, dtype=dtype)

    def run() -> None:
        for _ in range(reps):
            torch.mm(a, b)

    return run


@step_mode("idle", trains=False)
def idle_step(bench: Workbench, case: Case) -> Run:
    """Nothing: the memory baseline of a process that built the model and its optimizer."""
    return lambda: None
