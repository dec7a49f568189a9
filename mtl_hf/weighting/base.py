"""The loss-weighter interface, the training loop's side of it (:class:`BackwardContext`) and the registry.

A weighter turns the per-task losses of a step into one update of the model. It is an ``nn.Module``
owned by the model (``model.weighter``), so any state it learns or tracks (log-variances, loss history,
FAMO's logits and their optimizer moments, GradNorm's weights) lives in parameters and buffers and is
saved with the model (``save_pretrained`` safetensors) and with training checkpoints (``save_state``).

Every method's update is the gradient of ``sum_i c_i L_i`` over the tasks present, for coefficients
``c_i`` the method chooses (plus a regulariser for methods that learn parameters, such as uncertainty
weighting). Loss-based methods choose ``c`` from losses and their own state; gradient-based methods
(:mod:`mtl_hf.weighting.gradient`) choose it from the per-task gradients. The coefficients of the last
update are the task *weights* that training logs.

Calling protocol of the training loop (the same for every weighter; the loop never branches on names)::

    context = BackwardContext.from_accelerator(accelerator, model)     # once, after accelerator.prepare
    unwrapped = accelerator.unwrap_model(model)
    weighter = unwrapped.weighter
    features = SharedFeatureRecorder(unwrapped.heads.values(), owner=unwrapped)
    for batch in loader:
        with accelerator.accumulate(model), weighter.forward_context(context):
            out = model(pixel_values=batch["pixel_values"], labels=batch["labels"])
            step = context.step(sync_gradients=accelerator.sync_gradients, shared_features=features.features)
            weights = weighter.backward(out.task_losses, out.loss, step)   # never accelerator.backward
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), max_norm)   # optional
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        if accelerator.sync_gradients:
            weighter.on_step_end(step_losses)    # {task: mean over the step's micro-batches and processes}
            log {"weight/<task>": weights[task], "loss/<task>": step_losses[task]}
    weighter.on_epoch_end(epoch, epoch_losses)   # {task: mean over the epoch and processes}

* :meth:`LossWeighter.forward_context` wraps the model's **forward** pass: a weighter that synchronises
  gradients itself (gradient-based methods on shared parameters) returns DDP's ``no_sync`` there, because
  DDP decides at forward time whether the following backward all-reduces.
* :meth:`LossWeighter.backward` replaces ``accelerator.backward``. It back-propagates through
  ``context.backward`` (so Accelerate's loss scaling and division by the accumulation steps apply).
  When it returns on the last micro-batch of an accumulation window (``sync_gradients``), ``.grad``
  holds the whole step's gradient averaged over processes, ready for clipping and the optimizer;
  before that, gradients may be held inside the weighter (``.grad`` is then ``None``). It returns the
  task weights of the latest update, to be logged at each optimizer step.
* :meth:`LossWeighter.backward` is called on every micro-batch, also one whose loss is not finite (the
  optimizer step is then skipped as usual): gradient-based methods combine on the window's last
  micro-batch, which must therefore reach ``backward``.
* :meth:`LossWeighter.on_step_end` (once per optimizer step) and :meth:`LossWeighter.on_epoch_end`
  receive training losses averaged over the step's or epoch's micro-batches and over processes
  (``accelerator.reduce(x, "mean")``), so every process updates its state alike.

* A weighter whose total is a sum of per-task terms (:attr:`LossWeighter.separable_by_view`, the
  loss-based subclasses of :class:`SeparableWeighter`) may instead be driven one view at a time: the loop calls
  :meth:`SeparableWeighter.start_forward`, back-propagates each view's terms
  (:meth:`SeparableWeighter.task_term`) as soon as that view's forward pass is done, and applies
  :meth:`SeparableWeighter.terms_scale` once every loss is known (:mod:`mtl_hf.training.view_schedule`).

Third-party weighters register through the ``mtl_hf.weighters`` entry-point group.
"""

from __future__ import annotations

import contextlib
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..options import from_dict
from ..registry import Registry


@dataclass
class WeighterOptions:
    """Base of every weighter's options dataclass (no options)."""


@dataclass
class WeightedLoss:
    """The combined loss of a step and the (detached) weight each task received.

    Attributes:
        loss: ``sum_i weights[i] * L_i`` over the tasks present, plus the method's regulariser if it has
            one. Its gradient is the update of loss-based methods; gradient-based methods build theirs in
            :meth:`LossWeighter.backward`, and ``weights`` are then the coefficients of their last update.
        weights: ``{task: weight}``, the factor of each task's loss in the update.
    """

    loss: torch.Tensor
    weights: dict[str, torch.Tensor]


def _plain_backward(loss: torch.Tensor, **kwargs: Any) -> None:
    loss.backward(**kwargs)


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@dataclass
class BackwardContext:
    """What the training loop offers a weighter's :meth:`LossWeighter.backward`.

    Build it once with :meth:`from_accelerator` (or by hand for a plain PyTorch loop, where the
    defaults describe one process without accumulation) and derive each micro-batch's copy with
    :meth:`step`.

    Attributes:
        backward: Back-propagates a scalar and accepts ``loss.backward`` keyword arguments
            (``retain_graph``): ``accelerator.backward``, which divides by the accumulation steps and
            applies the fp16 loss scale. Default: ``loss.backward(**kwargs)``.
        shared_parameters: The parameters every task shares (``model.shared_parameters()``, the
            backbone's). Gradient-based methods compare the tasks' gradients on these.
        parameters: Every trainable parameter of the model, shared ones included
            (``[p for p in model.parameters() if p.requires_grad]``). Methods that synchronise gradients
            themselves need it to average the task-specific gradients across processes.
        shared_features: The tensors of this micro-batch's forward pass through which the heads read the
            backbone (the ``last_hidden_state`` of each view; :class:`SharedFeatureRecorder` collects
            them), for methods that compare gradients at the features (``gradients: features``, e.g.
            MGDA-UB). Per micro-batch.
        reduce: Averages a tensor across processes and returns the result
            (``lambda t: accelerator.reduce(t, "mean")``). Default: the identity (one process).
        no_sync: Returns a context manager that disables DDP's gradient all-reduce for forward passes run
            inside it (``lambda: accelerator.no_sync(model)``). Default: a null context.
        sync_gradients: True on the last micro-batch of an accumulation window, where the optimizer steps
            (``accelerator.sync_gradients``). Per micro-batch. Default True (no accumulation).
        num_processes: Processes training together (``accelerator.num_processes``).
        scaler: The fp16 loss scaler ``context.backward`` applies (``accelerator.scaler``, a
            ``torch.amp.GradScaler``) or ``None``. Gradient-based methods divide by its scale before any
            norm, projection or solver, and leave scaled gradients in ``.grad`` for the optimizer's
            unscale step (which also skips steps whose gradients overflowed).
    """

    backward: Callable[..., None] = _plain_backward
    shared_parameters: Sequence[nn.Parameter] = ()
    parameters: Sequence[nn.Parameter] = ()
    shared_features: Sequence[torch.Tensor] = ()
    reduce: Callable[[torch.Tensor], torch.Tensor] = _identity
    no_sync: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
    sync_gradients: bool = True
    num_processes: int = 1
    scaler: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.shared_features, torch.Tensor):
            self.shared_features = (self.shared_features,)
        if not isinstance(self.num_processes, int) or self.num_processes < 1:
            raise ValueError(
                f"BackwardContext.num_processes must be a positive int, got {self.num_processes!r}"
            )

    @classmethod
    def from_accelerator(
        cls,
        accelerator: Any,
        model: nn.Module,
        shared_parameters: Sequence[nn.Parameter] | None = None,
    ) -> BackwardContext:
        """The context of a model prepared by ``accelerator`` (DDP-wrapped or not).

        Args:
            accelerator: An ``accelerate.Accelerator``.
            model: The prepared model, as ``accelerator.prepare`` returned it.
            shared_parameters: Defaults to the unwrapped model's ``shared_parameters()``.
        """
        unwrapped = accelerator.unwrap_model(model)
        if shared_parameters is None:
            if not hasattr(unwrapped, "shared_parameters"):
                raise TypeError(
                    f"{type(unwrapped).__name__} has no shared_parameters(); pass shared_parameters="
                )
            shared_parameters = unwrapped.shared_parameters()
        return cls(
            backward=accelerator.backward,
            shared_parameters=list(shared_parameters),
            parameters=[p for p in model.parameters() if p.requires_grad],
            reduce=lambda tensor: accelerator.reduce(tensor, reduction="mean"),
            no_sync=lambda: accelerator.no_sync(model),
            sync_gradients=accelerator.sync_gradients,
            num_processes=accelerator.num_processes,
            scaler=accelerator.scaler,
        )

    def step(
        self,
        *,
        sync_gradients: bool,
        shared_features: Sequence[torch.Tensor] | torch.Tensor = (),
    ) -> BackwardContext:
        """A copy for one micro-batch, with its ``sync_gradients`` flag and shared features."""
        features = (shared_features,) if isinstance(shared_features, torch.Tensor) else tuple(shared_features)
        return dataclasses.replace(self, sync_gradients=sync_gradients, shared_features=features)

    def loss_scale(self) -> float:
        """The factor ``backward`` multiplies losses by (the fp16 scaler's scale), 1.0 without scaler."""
        if self.scaler is None or not getattr(self.scaler, "is_enabled", lambda: True)():
            return 1.0
        return float(self.scaler.get_scale())


class LossWeighter(nn.Module, ABC):
    """Base class of loss weighters.

    Args:
        task_names: Every task of the model, in config order.
        options: An instance of the weighter's ``Options`` dataclass.
    """

    Options: ClassVar[type[WeighterOptions]] = WeighterOptions
    registered_name: ClassVar[str]
    needs_losses_after_step: bool = False
    """When true, the training loop re-evaluates each optimizer step's micro-batches (same masks, no
    gradient) after the step and calls :meth:`on_losses_after_step`: one more forward pass per step."""
    separable_by_view: ClassVar[bool] = False
    """When true (:class:`SeparableWeighter`), the update is the gradient of ``scale * sum_i term_i``, each
    task's term computed from that task's loss and the weighter's state alone, and ``scale`` a number the
    detached losses fix. The training loop may then back-propagate the terms of each view of the batch
    as soon as that view's forward pass is done (``training.view_schedule: sequential``): the same
    gradient as one joint backward, with only one view's activations alive at a time."""

    def __init__(self, task_names: Sequence[str], options: WeighterOptions) -> None:
        super().__init__()
        self.task_names = list(task_names)
        self.state_names = sorted(self.task_names)
        """The task order of per-task state vectors (parameters, buffers): sorted by name, so saved
        state keeps its meaning whatever order the configuration lists the tasks in."""
        self.options = options
        self.last_weights: dict[str, torch.Tensor] = {}
        """The weights of the latest forward (or, for gradient-based methods, combination)."""

    @classmethod
    def parse_options(cls, raw: Mapping[str, Any], task_names: Sequence[str]) -> WeighterOptions:
        """Validate options (everything but ``type``); errors name ``weighting.<key>``."""
        options = from_dict(cls.Options, raw, "weighting")
        cls.check_options(options, task_names)
        return options

    @classmethod
    def check_options(cls, options: Any, task_names: Sequence[str]) -> None:
        """Check options against the model's task names; raise ``ValueError`` naming the key."""

    def init_parameters(self) -> None:
        """Initialise this weighter's parameters and buffers (called by the model's weight init).

        Use the ``transformers.initialization`` functions: they leave values loaded from a checkpoint alone.
        """

    def task_index(self, name: str) -> int:
        """Position of task ``name`` in per-task state vectors (:attr:`state_names`); ``ValueError``
        naming it if unknown."""
        try:
            return self.state_names.index(name)
        except ValueError:
            raise ValueError(
                f"weighter got a loss for task {name!r}; tasks are {', '.join(self.task_names)}"
            ) from None

    @abstractmethod
    def weights(self, losses: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The weight of each task present in ``losses`` for this step."""

    def forward(self, losses: Mapping[str, torch.Tensor]) -> WeightedLoss:
        if not losses:
            raise ValueError(
                "no task loss to weight: the batch carried labels for none of the tasks that ran"
            )
        weights = self.weights(losses)
        total = torch.stack([weights[name] * loss for name, loss in losses.items()]).sum()
        self.last_weights = {k: v.detach() for k, v in weights.items()}
        return WeightedLoss(loss=total, weights=dict(self.last_weights))

    def forward_context(self, context: BackwardContext) -> AbstractContextManager[Any]:
        """The context the training loop runs the model's forward pass in. Default: a null context.

        Weighters that synchronise gradients across processes themselves return ``context.no_sync()``.
        """
        return contextlib.nullcontext()

    def backward(
        self, losses: Mapping[str, torch.Tensor], total: torch.Tensor, context: BackwardContext
    ) -> dict[str, torch.Tensor]:
        """Produce this micro-batch's gradients; return the task weights of the latest update.

        Default: back-propagate the weighted total through ``context.backward``.

        Args:
            losses: The model output's ``task_losses`` (scalars with their graphs).
            total: The model output's ``loss`` (this weighter's :meth:`forward` total).
            context: The loop's :class:`BackwardContext` for this micro-batch.
        """
        context.backward(total)
        return dict(self.last_weights)

    def on_step_end(self, losses: Mapping[str, float]) -> None:
        """Called after each optimizer step with the step's task losses (means over its micro-batches
        and over processes)."""

    def on_losses_after_step(self, losses: Mapping[str, float]) -> None:
        """Called after :meth:`on_step_end` when :attr:`needs_losses_after_step`: the same step's task
        losses on the same micro-batches, evaluated with the updated weights (means over micro-batches
        and over processes, as :meth:`on_step_end`'s)."""

    def on_epoch_end(self, epoch: int, mean_losses: Mapping[str, float]) -> None:
        """Called at the end of each training epoch with the epoch's mean task losses (over processes)."""


class SeparableWeighter(LossWeighter):
    """Base of weighters whose total is ``scale * sum_i term_i`` with ``term_i`` from task ``i``'s loss
    and the weighter's state (:attr:`LossWeighter.separable_by_view`); loss-based methods derive from it.

    One forward pass's total is built in three calls, which the joint path (:meth:`forward`) and the
    view-sequential training step make alike, so the weighter's state moves the same on both:

    1. :meth:`start_forward` once per forward pass (RLW draws the pass's weights here);
    2. :meth:`view_terms` once per view, as soon as the view's losses exist (possibly none: every
       process calls it for every view, so a method may exchange losses between processes there), which
       gives each task's :meth:`task_term`: ``(weight, term)`` with ``term = weight * loss`` plus the
       method's regulariser if it has one;
    3. :meth:`terms_scale` once all of the pass's losses exist: the factor of the whole sum, or ``None``
       (FAMO's normalisation; with a ``context`` of several processes, from their mean losses).

    A task absent from a forward pass (no labelled sample in the batch) has no loss and no term.

    Subclasses implement :meth:`task_weight` (and override :meth:`task_term` for a regulariser).
    """

    separable_by_view = True

    def start_forward(self) -> None:
        """Fix this forward pass's state-dependent coefficients (default: nothing to fix)."""

    @abstractmethod
    def task_weight(
        self, name: str, loss: torch.Tensor, context: BackwardContext | None = None
    ) -> torch.Tensor:
        """The (detached) weight of task ``name`` in this forward pass, before :meth:`terms_scale`.

        ``context`` is the training step's (``None`` in the model's forward pass): a method that weighs
        by the loss itself uses the processes' mean loss when it has several processes."""

    def task_term(
        self, name: str, loss: torch.Tensor, context: BackwardContext | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight, term)`` of task ``name``: its weight and its term of the total (``weight * loss``)."""
        weight = self.task_weight(name, loss, context)
        return weight, weight * loss

    def view_terms(
        self, losses: Mapping[str, torch.Tensor], context: BackwardContext | None = None
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{task: (weight, term)}`` for the losses of one view of a forward pass (or all of them, in the
        joint path). Every process calls it for every view, even one without a loss, so that a method
        may synchronise processes here (one collective per call). Default: :meth:`task_term` per task."""
        return {name: self.task_term(name, loss, context) for name, loss in losses.items()}

    def terms_scale(
        self, losses: Mapping[str, torch.Tensor], context: BackwardContext | None = None
    ) -> torch.Tensor | None:
        """The factor of the sum of the terms of ``losses`` (all of one forward pass on this process,
        possibly none), or ``None`` (1). Every process calls it once per forward pass."""
        return None

    def weights(self, losses: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.combine(losses).weights

    def forward(self, losses: Mapping[str, torch.Tensor]) -> WeightedLoss:
        if not losses:
            raise ValueError(
                "no task loss to weight: the batch carried labels for none of the tasks that ran"
            )
        return self.combine(losses)

    def combine(
        self, losses: Mapping[str, torch.Tensor], context: BackwardContext | None = None
    ) -> WeightedLoss:
        """One forward pass's total from all its losses (steps 1 to 3); sets :attr:`last_weights`."""
        self.start_forward()
        terms = self.view_terms(losses, context)
        total = torch.stack([term for _, term in terms.values()]).sum() if terms else torch.zeros(())
        weights = {name: weight for name, (weight, _) in terms.items()}
        return self.scaled(total, weights, self.terms_scale(losses, context))

    def scaled(
        self, total: torch.Tensor, weights: Mapping[str, torch.Tensor], scale: torch.Tensor | None
    ) -> WeightedLoss:
        """``total`` and ``weights`` times ``scale`` (from :meth:`terms_scale`); sets :attr:`last_weights`."""
        if scale is not None:
            total = total * scale.to(total)
            weights = {name: weight * scale.to(weight) for name, weight in weights.items()}
        self.last_weights = {name: weight.detach() for name, weight in weights.items()}
        return WeightedLoss(loss=total, weights=dict(self.last_weights))


WEIGHTERS: Registry[type[LossWeighter]] = Registry(
    "weighter", "mtl_hf.weighters", base=LossWeighter, arguments=("task_names", "options")
)
"""Registry of loss-weighter classes, extensible through the ``mtl_hf.weighters`` entry-point group."""
