"""A figure of segmentation predictions: image, true lesion outline, predicted lesion outline, Dice."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .metrics import dice_per_image


@dataclass(frozen=True)
class ExamplePanel:
    """One panel of :func:`plot_segmentation_examples`: the image's index in the batch and its Dice."""

    index: int
    dice: float


def choose_examples(target: torch.Tensor, count: int) -> list[int]:
    """Up to ``count`` images of the batch, those with the largest lesions first (a lesion-free slice
    says little about a segmentation), then the rest in batch order."""
    sizes = target.flatten(1).sum(1)
    with_lesion = [int(i) for i in torch.argsort(sizes, descending=True, stable=True) if sizes[i] > 0]
    without = [i for i in range(target.shape[0]) if sizes[i] == 0]
    return (with_lesion + without)[:count]


def plot_segmentation_examples(
    pixel_values: torch.Tensor,
    logits: torch.Tensor,
    target: torch.Tensor,
    path: str | Path,
    threshold: float = 0.5,
    count: int = 8,
) -> list[ExamplePanel]:
    """Write a PNG grid of up to ``count`` images (first channel, min-max scaled) with the true mask
    outlined in green and the prediction (``sigmoid(logits) > threshold``) in red, each titled with its
    Dice; returns what each panel shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = target[:, 0] if target.dim() == 4 else target
    dice = dice_per_image(logits, target, threshold)
    chosen = choose_examples(target, count)
    columns = min(4, len(chosen))
    rows = -(-len(chosen) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(3 * columns, 3.3 * rows), squeeze=False, layout="constrained"
    )
    panels = []
    for ax, i in zip(axes.flat, chosen, strict=False):
        image = pixel_values[i, 0].float()
        image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-12)
        ax.imshow(image.numpy(), cmap="gray")
        predicted = (torch.sigmoid(logits[i].float()) > threshold).float().numpy()
        for mask, colour in ((target[i].float().numpy(), "lime"), (predicted, "red")):
            if 0 < mask.sum() < mask.size:
                ax.contour(mask, levels=[0.5], colors=colour, linewidths=1.0)
        ax.set_title(f"Dice {float(dice[i]):.2f}", fontsize=9)
        panels.append(ExamplePanel(index=i, dice=float(dice[i])))
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("green: true lesion, red: predicted", fontsize=9)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return panels
