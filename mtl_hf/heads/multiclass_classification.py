"""Multi-class classification with cross-entropy (e.g. healthy / myopathy / myelopathy / polyneuropathy)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import HEADS, IGNORE_INDEX, BackboneFeatures, BackboneSpec, HeadOutput
from .classification import ClassificationOptions, LinearClassificationHead


@dataclass(kw_only=True)
class MulticlassClassificationOptions(ClassificationOptions):
    """Options of ``multiclass_classification``.

    Attributes:
        num_classes: Number of classes (required, at least 2).
        class_names: Optional names, one per class, recorded in the config for model cards and predictions.
        label_smoothing: Cross-entropy label smoothing in ``[0, 1)`` (default 0.0).
        pooling: ``"cls"`` (default), ``"mean"`` or ``"cls+mean"``.
        dropout: Dropout before the linear layer (default 0.0).
    """

    num_classes: int
    class_names: list[str] | None = None
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names for {self.num_classes} classes")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


@HEADS.register("multiclass_classification")
class MulticlassClassificationHead(LinearClassificationHead):
    """``num_classes`` logits per image; loss: cross-entropy with optional label smoothing.

    Labels: class indices, integer tensor of shape ``(B,)`` in ``[0, num_classes)``, or ``IGNORE_INDEX``
    (-100) for a sample without a label. Logits: ``(B, K)``.
    """

    Options = MulticlassClassificationOptions
    options: MulticlassClassificationOptions
    prediction_kind = "multiclass"
    target_kind = "multiclass"
    hub_task = "image-classification"
    target_layout = "int64 (B,) class indices in [0, num_classes)"

    def __init__(
        self, task_name: str, options: MulticlassClassificationOptions, backbone: BackboneSpec
    ) -> None:
        super().__init__(task_name, options, backbone, num_outputs=options.num_classes)

    def check_labels(self, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
        self._check_batch(labels, batch_size)
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise self._label_error(f"expected integer class indices, got dtype {labels.dtype}")
        if labels.dim() != 1:
            raise self._label_error(f"expected class indices of shape (B,), got {tuple(labels.shape)}")
        bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= self.options.num_classes))
        if bad.any():
            raise self._label_error(
                f"class index {labels[bad][0].item()} outside [0, {self.options.num_classes})"
            )
        return labels

    def output_names(self) -> list[str]:
        return [str(n) for n in self.options.class_names or range(self.options.num_classes)]

    def label_columns(self, labels: torch.Tensor) -> torch.Tensor:
        """One-hot rows, one column per class."""
        return F.one_hot(labels.long(), self.options.num_classes).float()

    def forward(self, features: BackboneFeatures, labels: torch.Tensor | None = None) -> HeadOutput:
        logits = self.logits(features)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits.float(), labels.long(), label_smoothing=self.options.label_smoothing
            )
        return HeadOutput(loss=loss, logits=logits)
