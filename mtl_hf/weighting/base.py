"""The loss-weighter interface and its registry.

A weighter turns the per-task losses of a step into one update of the model. It is an ``nn.Module``
owned by the model, so any state it learns or tracks (log-variances, running loss history, logits of
FAMO) lives in parameters and buffers and is saved with the model and with training checkpoints.

Two entry points, so the training loop never branches on a method's name:

* :meth:`LossWeighter.forward` (called by the model) returns the weighted total and the weights used,
  ``L = sum_i w_i L_i`` (plus any regulariser the method defines);
* :meth:`LossWeighter.backward` (called by the training loop) turns that step into gradients. The
  default back-propagates the total; gradient-based methods (PCGrad, MGDA, ...) override it and use
  the per-task losses, the shared parameters or shared features offered by :class:`BackwardContext`.

Hooks :meth:`on_step_end` and :meth:`on_epoch_end` let methods that follow loss history (DWA) update
their state. Third-party weighters register through the ``mtl_hf.weighters`` entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
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
    """The combined loss of a step and the (detached) weight each task received."""

    loss: torch.Tensor
    weights: dict[str, torch.Tensor]


@dataclass
class BackwardContext:
    """What the training loop offers a weighter's :meth:`LossWeighter.backward`.

    Attributes:
        backward: Back-propagates a scalar (``accelerator.backward``: loss scaling, accumulation).
        shared_parameters: The parameters all tasks share (the backbone's).
        shared_features: The shared representation the heads read, for feature-level methods
            (MGDA-UB); ``None`` when the model did not keep it.
    """

    backward: Callable[[torch.Tensor], None]
    shared_parameters: Sequence[nn.Parameter] = ()
    shared_features: torch.Tensor | None = None


class LossWeighter(nn.Module, ABC):
    """Base class of loss weighters.

    Args:
        task_names: Every task of the model, in config order.
        options: An instance of the weighter's ``Options`` dataclass.
    """

    Options: ClassVar[type[WeighterOptions]] = WeighterOptions
    registered_name: ClassVar[str]

    def __init__(self, task_names: Sequence[str], options: WeighterOptions) -> None:
        super().__init__()
        self.task_names = list(task_names)
        self.options = options

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
        return WeightedLoss(loss=total, weights={k: v.detach() for k, v in weights.items()})

    def backward(
        self, losses: Mapping[str, torch.Tensor], total: torch.Tensor, context: BackwardContext
    ) -> None:
        """Produce this step's gradients. Default: back-propagate the weighted total."""
        context.backward(total)

    def on_step_end(self, losses: Mapping[str, float]) -> None:
        """Called after each optimizer step with the step's (detached, float) task losses."""

    def on_epoch_end(self, epoch: int, mean_losses: Mapping[str, float]) -> None:
        """Called at the end of each training epoch with the epoch's mean task losses."""


WEIGHTERS: Registry[type[LossWeighter]] = Registry("weighter", "mtl_hf.weighters")
"""Registry of loss-weighter classes, extensible through the ``mtl_hf.weighters`` entry-point group."""
