"""Multi-label classification with one BCE per label (e.g. several co-occurring muscle pathologies)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import HEADS, BackboneFeatures, BackboneSpec, HeadOutput
from .classification import ClassificationOptions, LinearClassificationHead


@dataclass(kw_only=True)
class MultilabelClassificationOptions(ClassificationOptions):
    """Options of ``multilabel_classification``.

    Attributes:
        num_labels: Number of independent binary labels (required, at least 1).
        label_names: Optional names, one per label.
        pos_weight: Optional per-label positive weights for BCE (length ``num_labels``).
        pooling: ``"cls"`` (default), ``"mean"`` or ``"cls+mean"``.
        dropout: Dropout before the linear layer (default 0.0).
    """

    num_labels: int
    label_names: list[str] | None = None
    pos_weight: list[float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_labels < 1:
            raise ValueError(f"num_labels must be at least 1, got {self.num_labels}")
        for name, values in (("label_names", self.label_names), ("pos_weight", self.pos_weight)):
            if values is not None and len(values) != self.num_labels:
                raise ValueError(f"{name} has {len(values)} entries for {self.num_labels} labels")
        if self.pos_weight is not None and any(w <= 0 for w in self.pos_weight):
            raise ValueError(f"pos_weight entries must be positive, got {self.pos_weight}")


@HEADS.register("multilabel_classification")
class MultilabelClassificationHead(LinearClassificationHead):
    """``num_labels`` logits per image; loss: BCE-with-logits averaged over batch and labels.

    Labels: ``(B, num_labels)`` of 0/1 (float, integer or bool); a sample whose row holds a NaN (float)
    or ``IGNORE_INDEX`` (integer) has no label for the task. Logits: ``(B, num_labels)``.
    """

    Options = MultilabelClassificationOptions
    options: MultilabelClassificationOptions
    prediction_kind = "multilabel"
    target_kind = "multilabel"
    hub_task = "image-classification"
    target_layout = "float32 (B, L) multi-hot"

    def __init__(
        self, task_name: str, options: MultilabelClassificationOptions, backbone: BackboneSpec
    ) -> None:
        super().__init__(task_name, options, backbone, num_outputs=options.num_labels)

    def check_labels(self, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
        self._check_batch(labels, batch_size)
        if labels.dim() != 2 or labels.shape[1] != self.options.num_labels:
            raise self._label_error(
                f"expected shape (B, {self.options.num_labels}), got {tuple(labels.shape)}"
            )
        self._check_binary_values(labels)
        return labels

    def output_names(self) -> list[str]:
        return [str(n) for n in self.options.label_names or range(self.options.num_labels)]

    def forward(self, features: BackboneFeatures, labels: torch.Tensor | None = None) -> HeadOutput:
        logits = self.logits(features)
        loss = None
        if labels is not None:
            pos_weight = None
            if self.options.pos_weight is not None:
                pos_weight = logits.new_tensor(self.options.pos_weight, dtype=torch.float32)
            loss = F.binary_cross_entropy_with_logits(
                logits.float(), labels.to(torch.float32), pos_weight=pos_weight
            )
        return HeadOutput(loss=loss, logits=logits)
