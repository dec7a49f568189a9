"""Figures: attention overlays, model-comparison grids and MIM panels, written as PNG.

matplotlib is imported inside the functions and used through ``matplotlib.figure.Figure`` (no pyplot, no
global backend state), so these functions are safe in scripts, notebooks and worker processes alike.
Images are given in display space (un-normalised, roughly [0, 1]; see
``MTLImageProcessor.unnormalize``) as ``(C, H, W)`` tensors or arrays; they are clipped to [0, 1].
With ``channel_names`` (a model of several MR modalities or CT windows, named by its processor's
``output_channel_names``) every channel gets its own grey panel, titled by its name, and heat maps are
drawn over the first channel.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .attention import AttentionMaps, mass_threshold, upsample_map
from .reconstruction import Reconstruction

DEFAULT_CMAP = "inferno"


def to_rgb(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(C, H, W)`` or ``(H, W)`` image -> ``(H, W, 3)`` float array clipped to [0, 1]: grey and colour
    as they are, the first channel (in grey) of any other channel count."""
    x = _array(image)
    if x.ndim == 3 and x.shape[0] not in (1, 3):
        x = x[0]
    if x.ndim == 3:
        x = np.moveaxis(x, 0, -1)
        if x.shape[-1] == 1:
            x = x[..., 0]
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=-1)
    return np.clip(x, 0.0, 1.0)


def _array(image: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        return image.detach().float().cpu().numpy()
    return np.asarray(image, np.float32)


def input_panels(
    image: torch.Tensor | np.ndarray, channel_names: Sequence[str] | None = None
) -> list[tuple[str, np.ndarray]]:
    """``[(title, (H, W, 3))]``: the input as one panel, or one grey panel per named channel when the
    channels are distinct modalities (several different ``channel_names``)."""
    x = _array(image)
    if channel_names is None or len(set(channel_names)) == 1 or x.ndim != 3:
        return [("input", to_rgb(x))]
    if len(channel_names) != x.shape[0]:
        raise ValueError(f"{len(channel_names)} channel names for an image of {x.shape[0]} channels")
    return [(name, to_rgb(x[c])) for c, name in enumerate(channel_names)]


def overlay(
    image: np.ndarray, heat: torch.Tensor | np.ndarray, *, alpha: float = 0.55, cmap: str = DEFAULT_CMAP
) -> np.ndarray:
    """Blend a heat map (scaled by its maximum) over an ``(H, W, 3)`` image."""
    import matplotlib

    h = (
        heat.detach().float().cpu().numpy()
        if isinstance(heat, torch.Tensor)
        else np.asarray(heat, np.float32)
    )
    top = float(h.max())
    h = h / top if top > 0 else h
    colours = matplotlib.colormaps[cmap](h)[..., :3]
    return np.clip((1.0 - alpha) * image + alpha * colours, 0.0, 1.0)


def save_attention_figure(
    image: torch.Tensor | np.ndarray,
    maps: AttentionMaps,
    index: int,
    path: str | os.PathLike[str],
    *,
    mass: float | None = 0.6,
    lesion: torch.Tensor | np.ndarray | None = None,
    title: str | None = None,
    channel_names: Sequence[str] | None = None,
) -> Path:
    """One image's maps: input (each named channel), head-mean, rollout, the mass-thresholded mean,
    then every head.

    ``index`` picks the image in the batch of ``maps``; ``lesion`` (``(H, W)``) is drawn as a contour.
    """
    rgb = to_rgb(image)
    size = rgb.shape[:2]
    panels: list[tuple[str, np.ndarray]] = input_panels(image, channel_names)
    panels.append(("last layer, head mean", overlay(rgb, upsample_map(maps.mean[index], size))))
    if maps.rollout is not None:
        panels.append(("rollout", overlay(rgb, upsample_map(maps.rollout[index], size))))
    if mass is not None:
        keep = mass_threshold(maps.mean[index], mass).float()
        up = upsample_map(keep, size, "nearest") > 0
        panels.append((f"top {mass:.0%} of mass", overlay(rgb, up.float(), alpha=0.45, cmap="viridis")))
    heads = [
        (f"head {h}", overlay(rgb, upsample_map(maps.heads[index, h], size)))
        for h in range(maps.heads.shape[1])
    ]
    cols = max(len(panels), min(len(heads), 6))
    rows = 1 + -(-len(heads) // cols)
    fig, axes = _grid(rows, cols)
    for ax, (name, img) in zip(axes[0], panels, strict=False):
        _show(ax, img, name, lesion)
    for k, (name, img) in enumerate(heads):
        _show(axes[1 + k // cols, k % cols], img, name, lesion)
    if title:
        fig.suptitle(title, y=0.995, va="top")
    return _save(fig, path)


def save_comparison_grid(
    images: Sequence[torch.Tensor | np.ndarray],
    heat_maps: Mapping[str, Sequence[torch.Tensor | np.ndarray]],
    path: str | os.PathLike[str],
    *,
    lesions: Sequence[torch.Tensor | np.ndarray | None] | None = None,
    title: str | None = None,
    channel_names: Sequence[str] | None = None,
) -> Path:
    """Rows: images; columns: the input (each named channel), then each model's heat map (image-size
    ``(H, W)``) over it."""
    names = list(heat_maps)
    for name in names:
        if len(heat_maps[name]) != len(images):
            raise ValueError(f"model {name!r} has {len(heat_maps[name])} maps for {len(images)} images")
    first = len(input_panels(images[0], channel_names)) if images else 1
    rows, cols = len(images), first + len(names)
    fig, axes = _grid(rows, cols)
    for r, image in enumerate(images):
        rgb = to_rgb(image)
        lesion = lesions[r] if lesions is not None else None
        for c, (label, panel) in enumerate(input_panels(image, channel_names)):
            _show(axes[r, c], panel, label if r == 0 else None, lesion)
        for c, name in enumerate(names, start=first):
            heat = heat_maps[name][r]
            _show(axes[r, c], overlay(rgb, heat), name if r == 0 else None, lesion)
    if title:
        fig.suptitle(title, y=0.995, va="top")
    return _save(fig, path)


def save_mim_figure(
    reconstructions: Mapping[str, Reconstruction],
    index: int,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    channel_names: Sequence[str] | None = None,
) -> Path:
    """Fig. 1 panels for one image: per model (and per named channel, when the channels are distinct
    modalities) a row of original, masked input, reconstruction, visible pixels with the
    reconstruction pasted into the masked patches, and the error map (one colour scale shared by all
    models)."""
    names = list(reconstructions)
    if not names:
        raise ValueError("no reconstructions to draw")
    first = reconstructions[names[0]].original[index]
    channels = [label for label, _ in input_panels(first, channel_names)]
    per_channel = channels != ["input"]
    rows = [(name, c) for name in names for c in range(len(channels))]
    fig, axes = _grid(len(rows), 5, left=0.04, right=0.95)
    vmax = max(float(reconstructions[n].error[index].max()) for n in names) or 1.0  # one scale for all models
    for r, (name, c) in enumerate(rows):
        rec = reconstructions[name]
        err = rec.error[index].numpy()

        def pick(x: torch.Tensor, c: int = c) -> np.ndarray:
            return to_rgb(x[c] if per_channel else x)

        panels = [
            ("original", pick(rec.original[index])),
            ("masked input", pick(rec.masked_input[index])),
            ("reconstruction", pick(rec.reconstruction[index])),
            ("visible + reconstructed", pick(rec.composite[index])),
        ]
        for k, (label, img) in enumerate(panels):
            _show(axes[r, k], img, label if r == 0 else None, None)
        axes[r, 0].axis("on")
        axes[r, 0].set_ylabel(f"{name}\n{channels[c]}" if per_channel else name)
        im = axes[r, 4].imshow(err, cmap="magma", vmin=0.0, vmax=vmax)
        axes[r, 4].set_title(f"squared error (loss {float(rec.loss[index]):.3f})", fontsize=9)
        axes[r, 4].axis("off")
        fig.colorbar(im, ax=axes[r, 4], fraction=0.046, pad=0.02)
    if title:
        fig.suptitle(title, y=0.995, va="top")
    return _save(fig, path)


def _grid(rows: int, cols: int, *, left: float = 0.01, right: float = 0.99) -> tuple[Any, np.ndarray]:
    """A figure of ``rows x cols`` tick-less image panels with a fixed layout (a layout engine would
    measure every axis' ticks, which costs more than drawing the images). The top 0.7 inch holds the
    figure title and the first row's panel titles."""
    from matplotlib.figure import Figure

    height = 2.5 * rows + 0.5
    fig = Figure(figsize=(2.4 * cols, height))
    axes = fig.subplots(rows, cols, squeeze=False, subplot_kw={"xticks": [], "yticks": []})
    fig.subplots_adjust(left=left, right=right, bottom=0.01, top=1.0 - 0.7 / height, wspace=0.05, hspace=0.15)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def _show(ax: Any, image: np.ndarray, title: str | None, lesion: torch.Tensor | np.ndarray | None) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    if lesion is not None:
        m = lesion.detach().cpu().numpy() if isinstance(lesion, torch.Tensor) else np.asarray(lesion)
        if (m > 0).any():
            ax.contour((m > 0).astype(np.float32), levels=[0.5], colors="lime", linewidths=0.8)


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, format="png")
    return out
