"""Binary classification with BCE-with-logits: the paper's tumour / pathology-present task."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import HEADS, BackboneFeatures, BackboneSpec, HeadOutput
from .classification import ClassificationOptions, LinearClassificationHead


@dataclass
class BinaryClassificationOptions(ClassificationOptions):
    """Options of ``binary_classification``.

    Attributes:
        pooling: ``"cls"`` (default), ``"mean"`` or ``"cls+mean"``.
        dropout: Dropout before the linear layer (default 0.0).
        pos_weight: Weight of positive examples in the BCE loss, for class imbalance (e.g.
            ``n_negative / n_positive``); ``None`` (default) weighs both classes equally.
    """

    pos_weight: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pos_weight is not None and self.pos_weight <= 0:
            raise ValueError(f"pos_weight must be positive, got {self.pos_weight}")


@HEADS.register("binary_classification")
class BinaryClassificationHead(LinearClassificationHead):
    """One logit per image; loss ``BCEWithLogits(logits, labels, pos_weight)`` averaged over the batch.

    Labels: shape ``(B,)`` or ``(B, 1)``, float, integer or bool, values 0 or 1; NaN (float) or
    ``IGNORE_INDEX`` (integer) for a sample without a label. Logits: ``(B,)``.
    """

    Options = BinaryClassificationOptions
    options: BinaryClassificationOptions
    prediction_kind = "binary"
    target_kind = "binary"
    hub_task = "image-classification"
    target_layout = "float32 (B,) of 0/1"

    def __init__(self, task_name: str, options: BinaryClassificationOptions, backbone: BackboneSpec) -> None:
        super().__init__(task_name, options, backbone, num_outputs=1)

    def check_labels(self, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
        self._check_batch(labels, batch_size)
        if labels.dim() == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.dim() != 1:
            raise self._label_error(f"expected shape (B,) or (B, 1), got {tuple(labels.shape)}")
        self._check_binary_values(labels)
        return labels

    def forward(self, features: BackboneFeatures, labels: torch.Tensor | None = None) -> HeadOutput:
        logits = self.logits(features)[:, 0]
        loss = None
        if labels is not None:
            pos_weight = None
            if self.options.pos_weight is not None:
                pos_weight = logits.new_tensor(self.options.pos_weight)
            loss = F.binary_cross_entropy_with_logits(
                logits.float(), labels.to(torch.float32), pos_weight=pos_weight
            )
        return HeadOutput(loss=loss, logits=logits)
