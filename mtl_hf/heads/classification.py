"""Shared pieces of the classification heads: pooled features -> dropout -> linear layer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import IGNORE_INDEX, BackboneFeatures, BackboneSpec, HeadOptions, TaskHead
from .pooling import Pooling, pool, pooled_size


@dataclass
class ClassificationOptions(HeadOptions):
    """Options every classification head has.

    Attributes:
        pooling: ``"cls"`` (default), ``"mean"`` of patch tokens, or ``"cls+mean"`` concatenated.
        dropout: Dropout probability before the linear layer (default 0.0).
    """

    pooling: Pooling = "cls"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class LinearClassificationHead(TaskHead):
    """A linear layer on pooled tokens; subclasses set ``num_outputs`` and the loss."""

    options: ClassificationOptions

    def __init__(
        self, task_name: str, options: ClassificationOptions, backbone: BackboneSpec, num_outputs: int
    ) -> None:
        super().__init__(task_name, options, backbone)
        self.dropout = nn.Dropout(options.dropout)
        self.classifier = nn.Linear(pooled_size(backbone.hidden_size, options.pooling), num_outputs)

    def logits(self, features: BackboneFeatures) -> torch.Tensor:
        return self.classifier(self.dropout(pool(features, self.options.pooling)))

    def _check_batch(self, labels: torch.Tensor, batch_size: int) -> None:
        if not isinstance(labels, torch.Tensor):
            raise self._label_error(f"expected a tensor, got {type(labels).__name__}")
        if labels.shape[0] != batch_size:
            raise self._label_error(f"batch size {labels.shape[0]} does not match pixel_values' {batch_size}")
        if labels.is_floating_point() and torch.isinf(labels).any():
            raise self._label_error("contain inf (a missing label is NaN)")

    def _check_binary_values(self, labels: torch.Tensor) -> None:
        """Every value that is not a missing-label marker (NaN, or ``IGNORE_INDEX`` in integer labels)
        is 0 or 1."""
        if labels.dtype == torch.bool:
            return
        missing = torch.isnan(labels) if labels.is_floating_point() else labels == IGNORE_INDEX
        bad = ~missing & (labels != 0) & (labels != 1)
        if bad.any():
            raise self._label_error(
                f"must be 0 or 1 (NaN or IGNORE_INDEX when missing); found {labels[bad][0].item()}"
            )
