"""One optimizer step: its micro-batches through the weighter, then the update, in one place.

:meth:`OptimizerStep.micro_batch` runs a micro-batch's forward pass and hands its task losses to the
model's weighter, which back-propagates (see :mod:`mtl_hf.weighting.base` for the protocol). On the last
micro-batch of an accumulation window it applies the update:

* every process agrees whether the window's losses were all finite; if not, the step is skipped on all
  of them (DDP ranks must not diverge) and counted;
* the global gradient norm is clipped (``training.max_grad_norm``);
* the optimizer steps, and the phase's learning-rate schedule advances (also over a skipped step, so
  that the rate depends on the step count alone, which a resumed run restores);
* the step's losses are averaged over its micro-batches and over processes, and the weighter's
  end-of-step hooks get them; a weighter that asks (``needs_losses_after_step``) also gets the same
  micro-batches' losses evaluated again with the updated weights.

The class holds only the current window; everything that outlives a step is in the trainer state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch

from ..weighting import BackwardContext, SeparableWeighter, SharedFeatureRecorder
from .optim import build_scheduler
from .processes import all_true, means
from .view_schedule import MicroBatchPass, backward_by_view

if TYPE_CHECKING:
    from accelerate import Accelerator

    from .config import RunConfig


@dataclass
class StepResult:
    """What one optimizer step did.

    Attributes:
        loss: The weighted total loss, averaged over micro-batches and processes (may be NaN / inf).
        task_losses: ``{task: loss}``, averaged alike over the micro-batches that had a loss for the task
            (a task without a label in any of the step's batches, on any process, is left out).
        weights: The weight of each task in the update.
        lr: The learning rate of the last parameter group (the heads') used by the step.
        applied: ``False`` when the step was skipped for a non-finite loss.
    """

    loss: float
    task_losses: dict[str, float]
    weights: dict[str, float]
    lr: float
    applied: bool

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in self.task_losses.values())

    @property
    def nonfinite_tasks(self) -> list[str]:
        """The tasks whose loss (averaged over the step's micro-batches and processes) is NaN or inf."""
        return sorted(name for name, value in self.task_losses.items() if not math.isfinite(value))

    def nonfinite_culprits(self) -> list[str]:
        """What a skipped step blames: the tasks with a non-finite loss or, when every task's loss was
        finite, :data:`WEIGHTED_TOTAL` (the weighter made the total non-finite)."""
        return self.nonfinite_tasks or [WEIGHTED_TOTAL]


WEIGHTED_TOTAL = "(weighted total)"
"""The culprit of a non-finite step whose task losses were all finite."""


def describe_culprit(culprit: str) -> str:
    """``"task 'x'"`` for a task, ``"the weighted total (every task loss finite)"`` for the total."""
    return "the weighted total (every task loss finite)" if culprit == WEIGHTED_TOTAL else f"task {culprit!r}"


class OptimizerStep:
    """Runs the micro-batches of optimizer steps for a prepared model and optimizer.

    Args:
        accelerator: The run's Accelerator.
        model: The prepared model.
        optimizer: The prepared optimizer.
        config: The run configuration (``training.max_grad_norm``, ``view_schedule``, ``schedule``).
    """

    def __init__(
        self, accelerator: Accelerator, model: torch.nn.Module, optimizer: Any, config: RunConfig
    ) -> None:
        self.accelerator = accelerator
        self.model = model
        self.optimizer = optimizer
        self.max_grad_norm = config.training.max_grad_norm
        self.schedule = config.schedule
        unwrapped = accelerator.unwrap_model(model)
        self.weighter = unwrapped.weighter
        self.context = BackwardContext.from_accelerator(accelerator, model)
        self.features = SharedFeatureRecorder(unwrapped.heads.values(), owner=unwrapped)
        self.view_groups = unwrapped.view_groups
        self.by_view = config.training.view_schedule == "sequential" and self.weighter.separable_by_view
        self.scheduler: Any = None
        self._losses: dict[str, list[torch.Tensor]] = {}
        self._names: list[str] = [""]  # "" is the weighted total; then the tasks run, in config order
        self._finite = True
        self._inputs: list[dict[str, Any]] = []

    def start_phase(self, total_steps: int, done_steps: int) -> None:
        """Begin a phase of ``total_steps`` steps, ``done_steps`` of them taken (a resumed run); a phase
        begun from its first step starts from a fresh optimizer state and schedule."""
        if done_steps == 0:
            self.optimizer.state.clear()
        self.scheduler = build_scheduler(self.optimizer, self.schedule, total_steps, done_steps)

    def micro_batch(self, batch: dict[str, Any], tasks: Sequence[str]) -> StepResult | None:
        """Forward and backward one micro-batch of ``tasks``; the step's result when it completes one."""
        accelerator = self.accelerator
        inputs = {
            "pixel_values": batch["pixel_values"],
            "labels": {k: v for k, v in batch["labels"].items() if k in tasks},
            "tasks": list(tasks),
        }
        self._names += [t for t in tasks if t not in self._names]
        with accelerator.accumulate(self.model):
            # Called on every micro-batch, finite or not: gradient methods combine on the last one.
            done = self._by_view(inputs) if self.by_view else self._joint(inputs)
            weights = done.weights
            self._finite = self._finite and bool(torch.isfinite(done.loss.detach()))
            for name, value in {"": done.loss, **done.task_losses}.items():
                self._losses.setdefault(name, []).append(value.detach().float())
            if self.weighter.needs_losses_after_step:  # the same inputs and masks, after the update
                self._inputs.append({**inputs, "bool_masked_pos": done.bool_masked_pos})
            if not accelerator.sync_gradients:
                return None
            lr = float(self.optimizer.param_groups[-1]["lr"])
            applied = self._update()
        step_losses = means(accelerator, self._losses, self._names)
        task_losses = {k: v for k, v in step_losses.items() if k}
        result = StepResult(
            step_losses[""], task_losses, {k: float(v) for k, v in weights.items()}, lr, applied
        )
        if result.finite:
            self.weighter.on_step_end(task_losses)
            if self._inputs:
                self.weighter.on_losses_after_step(self._losses_again())
        self._losses, self._finite, self._inputs, self._names = {}, True, [], [""]
        return result

    def _joint(self, inputs: dict[str, Any]) -> MicroBatchPass:
        """Every view forward, then the weighter's backward of the combined loss."""
        with self.weighter.forward_context(self.context):
            output = self.model(**inputs)
            context = self.context.step(
                sync_gradients=self.accelerator.sync_gradients, shared_features=self.features.features
            )
            weights = self.weighter.backward(output.task_losses or {}, output.loss, context)
        return MicroBatchPass(output.loss, output.task_losses or {}, weights, output.bool_masked_pos)

    def _by_view(self, inputs: dict[str, Any]) -> MicroBatchPass:
        """Each view forward and backward in turn (see :mod:`~mtl_hf.training.view_schedule`)."""
        context = self.context.step(sync_gradients=self.accelerator.sync_gradients)
        weighter = cast(SeparableWeighter, self.weighter)  # separable_by_view promises its methods
        return backward_by_view(self.model, weighter, self.view_groups(inputs["tasks"]), inputs, context)

    def _update(self) -> bool:
        """Clip, step and advance the schedule if every process's window was finite; clear gradients."""
        applied = all_true(self.accelerator, self._finite)  # every process must skip alike
        if applied:
            if self.max_grad_norm is not None:
                self.accelerator.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return applied

    @torch.no_grad()
    def _losses_again(self) -> dict[str, float]:
        """The window's task losses with the updated weights (means over micro-batches and processes)."""
        window: dict[str, list[torch.Tensor]] = {}
        for inputs in self._inputs:
            for name, value in (self.model(**inputs).task_losses or {}).items():
                window.setdefault(name, []).append(value.detach().float())
        return means(self.accelerator, window, self._names[1:])
