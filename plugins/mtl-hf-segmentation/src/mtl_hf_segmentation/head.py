"""The ``segmentation`` head: a UNETR-style decoder over several ViT layers, trained with Dice + BCE.

Registered through the ``mtl_hf.heads`` entry point of the ``mtl-hf-segmentation`` distribution, so
installing the package is all it takes::

    MTLConfig(tasks={"tumour": {"type": "binary_classification"},
                     "mim": {"type": "mim"},
                     "lesion": {"type": "segmentation", "decoder_channels": [128, 64, 32, 16]}})

Labels: ``labels["lesion"]``, the lesion mask ``(B, H, W)`` (or ``(B, 1, H, W)``) of 0/1 at the size of
``pixel_values``. Output: ``logits["lesion"]``, ``(B, H, W)`` per-pixel logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mtl_hf.heads import BackboneFeatures, BackboneSpec, HeadOptions, HeadOutput, MetricSpec, TaskHead

from .decoder import ProgressiveDecoder
from .losses import dice_bce_loss
from .metrics import STATISTICS, dice_from_sums, dice_statistics, segmentation_metrics

DEFAULT_CHANNELS = (256, 128, 64, 32)


@dataclass
class SegmentationOptions(HeadOptions):
    """Options of ``segmentation``.

    Attributes:
        layers: Backbone layers whose tokens the decoder reads, as indices into the hidden states
            (0 = patch embeddings, ``L`` = last layer). Default: up to four evenly spaced layers ending
            with the last (3, 6, 9, 12 for a 12-layer ViT, as UNETR).
        decoder_channels: Channels of each decoder stage, deepest first, one per layer (default
            256, 128, 64, 32, truncated to the number of layers). Each stage doubles the resolution.
        image_skip_channels: Width of the convolutional stem on the input pixels that feeds the last
            stage (default 16; 0 leaves it out).
        dice_weight: Weight of the soft Dice loss (default 1.0).
        bce_weight: Weight of the pixel-wise BCE loss (default 1.0).
        smooth: Smoothing of the soft Dice (default 1.0).
        pos_weight: BCE weight of lesion pixels, for small lesions (default ``None``: 1).
        threshold: Probability above which a pixel counts as lesion in the Dice metric (default 0.5).
    """

    layers: list[int] | None = None
    decoder_channels: list[int] | None = None
    image_skip_channels: int = 16
    dice_weight: float = 1.0
    bce_weight: float = 1.0
    smooth: float = 1.0
    pos_weight: float | None = None
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.layers is not None and (not self.layers or len(set(self.layers)) != len(self.layers)):
            raise ValueError(f"layers must be a non-empty list of distinct layer indices, got {self.layers}")
        if self.decoder_channels is not None and any(c < 1 for c in self.decoder_channels):
            raise ValueError(f"decoder_channels must be positive, got {self.decoder_channels}")
        if self.image_skip_channels < 0:
            raise ValueError(f"image_skip_channels must be >= 0, got {self.image_skip_channels}")
        if self.dice_weight < 0 or self.bce_weight < 0 or self.dice_weight + self.bce_weight == 0:
            raise ValueError("dice_weight and bce_weight must be >= 0 and not both 0")
        if self.smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {self.smooth}")
        if self.pos_weight is not None and self.pos_weight <= 0:
            raise ValueError(f"pos_weight must be positive, got {self.pos_weight}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")


def default_layers(num_hidden_layers: int) -> list[int]:
    """Up to four evenly spaced layers ending with the last: ``[3, 6, 9, 12]`` for 12 layers."""
    n = min(4, num_hidden_layers)
    return [round(num_hidden_layers * (k + 1) / n) for k in range(n)]


class SegmentationHead(TaskHead):
    """Binary segmentation of a lesion from several layers of the clean view (see the module docstring)."""

    Options = SegmentationOptions
    options: SegmentationOptions
    requires_hidden_states = True
    target_kind = "mask"
    hub_task = "image-segmentation"
    target_layout = "float32 (B, H, W) of 0/1 at the image's size"
    metric_statistic_names = STATISTICS

    def metric_specs(self) -> tuple[MetricSpec, ...]:
        """Mean per-image Dice (selects the model, goes into the model card) and pooled Dice."""
        return (MetricSpec("dice", selects=True, model_index="Dice"), MetricSpec("dice_global"))

    def __init__(self, task_name: str, options: SegmentationOptions, backbone: BackboneSpec) -> None:
        super().__init__(task_name, options, backbone)
        layers = sorted(options.layers or default_layers(backbone.num_hidden_layers))
        bad = [i for i in layers if not 0 <= i <= backbone.num_hidden_layers]
        if bad:
            raise ValueError(
                f"tasks.{task_name}.layers: {bad[0]} is not a layer of the backbone "
                f"(0 = embeddings .. {backbone.num_hidden_layers})"
            )
        channels = options.decoder_channels or list(DEFAULT_CHANNELS[: len(layers)])
        if len(channels) != len(layers):
            raise ValueError(
                f"tasks.{task_name}.decoder_channels: {len(channels)} stage(s) for {len(layers)} layer(s) "
                f"{layers}; give one channel count per layer"
            )
        self.layers = layers[::-1]  # deepest first, the decoder's order
        self.norms = nn.ModuleList(nn.LayerNorm(backbone.hidden_size) for _ in layers)
        self.decoder = ProgressiveDecoder(
            backbone.hidden_size, channels, backbone.num_channels, options.image_skip_channels
        )

    def check_labels(self, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
        if not isinstance(labels, torch.Tensor):
            raise self._label_error(f"expected a mask tensor (B, H, W), got {type(labels).__name__}")
        if labels.dim() == 4 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.dim() != 3 or labels.shape[0] != batch_size:
            raise self._label_error(
                f"expected a mask of shape ({batch_size}, H, W), got {tuple(labels.shape)}"
            )
        if labels.dtype != torch.bool and not ((labels == 0) | (labels == 1)).all():
            bad = labels[(labels != 0) & (labels != 1)].flatten()[0].item()
            raise self._label_error(f"mask values must be 0 or 1, found {bad}")
        return labels

    def forward(self, features: BackboneFeatures, labels: torch.Tensor | None = None) -> HeadOutput:
        if features.hidden_states is None:
            raise ValueError(f"task {self.task_name!r} (segmentation) needs the backbone's hidden states")
        maps = [
            features.patch_map(norm(features.hidden_states[layer]))
            for layer, norm in zip(self.layers, self.norms, strict=True)
        ]
        logits = self.decoder(maps, features.pixel_values)
        loss = None
        if labels is not None:
            if labels.shape[-2:] != logits.shape[-2:]:
                raise self._label_error(
                    f"mask size {tuple(labels.shape[-2:])} differs from pixel_values' {tuple(logits.shape[-2:])}"
                )
            options = self.options
            loss = dice_bce_loss(
                logits,
                labels,
                dice_weight=options.dice_weight,
                bce_weight=options.bce_weight,
                smooth=options.smooth,
                pos_weight=options.pos_weight,
            )
        return HeadOutput(loss=loss, logits=logits)

    def metric_statistics(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-image Dice statistics at this task's threshold (see :mod:`mtl_hf_segmentation.metrics`)."""
        return dice_statistics(logits, self.check_labels(labels, labels.shape[0]), self.options.threshold)

    def metrics_from_sums(self, sums: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean per-image Dice (``dice``, which selects the best model) and pooled Dice (``dice_global``)."""
        return dice_from_sums(sums)

    def segmentation_masks(self, logits: torch.Tensor) -> torch.Tensor:
        """Lesion masks: ``sigmoid(logits) > threshold`` (the task's ``threshold`` option)."""
        return torch.sigmoid(logits.float()) > self.options.threshold

    def plot_examples(
        self, pixel_values: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, path: Path
    ) -> bool:
        """Test images with the true (green) and predicted (red) lesion outlines and their Dice."""
        from .figures import plot_segmentation_examples

        plot_segmentation_examples(pixel_values, logits, labels, path, self.options.threshold)
        return True

    def compute_metrics(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Dice of this task's predictions over an evaluation set (see :mod:`mtl_hf_segmentation.metrics`)."""
        return segmentation_metrics(
            logits, self.check_labels(labels, labels.shape[0]), self.options.threshold
        )
