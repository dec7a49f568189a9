"""Record the shared features of a forward pass, for weighters that compare gradients at the features.

``gradients: features`` (MGDA-UB and the feature-level variants of the other gradient-based methods)
needs the tensors through which the task losses depend on the shared backbone. The most reliable place
to take them is where they are consumed: :class:`SharedFeatureRecorder` hooks the task heads and keeps
the ``last_hidden_state`` of the :class:`~mtl_hf.heads.BackboneFeatures` each head is called with --
whatever view (clean, masked, visible) and whatever way the model computed it -- once per distinct
tensor. The training loop then fills :attr:`BackwardContext.shared_features` without knowing the
model's internals::

    recorder = SharedFeatureRecorder(unwrapped.heads.values(), owner=unwrapped)
    ...
    out = model(**batch)
    step = context.step(sync_gradients=accelerator.sync_gradients, shared_features=recorder.features)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


class SharedFeatureRecorder:
    """Keeps the shared features the ``consumers`` read during the latest forward pass of ``owner``.

    Args:
        consumers: The modules that read the shared representation (the model's task heads). Each
            call's first argument is recorded: its ``last_hidden_state`` (a head's
            ``BackboneFeatures``; for rows of a batch, ``BackboneFeatures.selected_from``, the whole
            batch's) or the argument itself if it is a tensor. A tensor read by several
            consumers is recorded once. Calls made without gradients (evaluation) are not recorded.
        owner: The model whose forward pass calls the consumers; each of its forward passes starts a
            fresh record, so features of earlier steps are not kept alive. Without it, call :meth:`clear`.
    """

    def __init__(self, consumers: Iterable[nn.Module], owner: nn.Module | None = None) -> None:
        self.features: list[torch.Tensor] = []
        self._handles = [module.register_forward_pre_hook(self._record) for module in consumers]
        if not self._handles:
            raise ValueError("SharedFeatureRecorder needs at least one consumer module (the task heads)")
        if owner is not None:
            self._handles.append(owner.register_forward_pre_hook(lambda *_: self.clear()))

    def _record(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if not args:
            return
        first = args[0]
        tensor = first
        if not isinstance(first, torch.Tensor):  # rows selected from a batch count as the whole batch
            tensor = getattr(first, "selected_from", None)
            tensor = getattr(first, "last_hidden_state", None) if tensor is None else tensor
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"SharedFeatureRecorder: {type(module).__name__} was called with {type(first).__name__}, "
                "neither a tensor nor features with a last_hidden_state"
            )
        if torch.is_grad_enabled() and tensor.requires_grad and all(tensor is not f for f in self.features):
            self.features.append(tensor)

    def clear(self) -> None:
        """Forget the recorded features."""
        self.features = []

    def remove(self) -> None:
        """Remove the hooks and forget the features."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.clear()
