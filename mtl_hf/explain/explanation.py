"""``explain``: attention maps, MIM panels and attention-in-lesion scores for one or more models.

What ``mtl-hf explain MODEL [MODEL ...] --images ... | --dataset ...`` runs. For each of the first
``max_images`` images it writes, under ``output_dir``:

* ``attention/<model>/image_<i>.png``: input, head-mean and rollout maps, the smallest set of patches
  holding ``mass`` of the attention, and each head's map (:func:`~mtl_hf.explain.figures.save_attention_figure`);
* ``attention_grid_mean.png`` and ``attention_grid_rollout.png``: images in rows, models in columns;
* ``mim/image_<i>.png``: for models with a reconstruction head (``mim``, ``mae``), original, masked
  input, reconstruction and error with one mask shared by all of them (the paper's Fig. 1), drawn by
  the first such model's head;
* ``attention_localization.csv`` / ``.md``: when the data carry lesion masks, the localization table
  of :func:`~mtl_hf.explain.localization.attention_localization`.

Images from files are processed by each model's own image processor. A data set's batches are already
normalised; they go to every model as they are and are un-normalised for display with the first
model's processor. With lesion masks, the figures show images that contain a lesion, outlined.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from tqdm.auto import tqdm

from ..data.errors import DataError
from ..image_processing_mtl import MTLImageProcessor
from ..inference.loading import load_model_and_processor, model_display_name
from ..inference.patients import pixel_values, plan_sources, read_source
from ..inference.readers import InputImage
from ..modeling_mtl import MTLModel
from .attention import AttentionMaps, MapKind, attention_maps, check_mass, upsample_map
from .batches import iter_batches, lesion_masks
from .bootstrap import check_bootstrap_options
from .errors import ExplainError
from .figures import save_attention_figure, save_comparison_grid, save_mim_figure
from .localization import LocalizationRow, attention_localization, write_localization_table
from .reconstruction import Reconstruction, mim_task_of, reconstruct, shared_mask

logger = logging.getLogger(__name__)


@dataclass
class ExplainResult:
    """What :func:`explain` wrote.

    Attributes:
        figures: Every PNG written.
        localization: The localization table rows (``None`` without lesion masks).
        tables: ``{"csv": path, "markdown": path}`` of the localization table, when written.
    """

    figures: list[Path] = field(default_factory=list)
    localization: list[LocalizationRow] | None = None
    tables: dict[str, Path] = field(default_factory=dict)


def named_models(models: Sequence[str | os.PathLike[str]] | Mapping[str, Any]) -> dict[str, Any]:
    """``{name: model or path}``: a mapping as given; paths named by :func:`model_display_name`, with
    ``-2``, ``-3``... appended to repeated names."""
    if isinstance(models, Mapping):
        return dict(models)
    if isinstance(models, (str, os.PathLike)):
        models = [models]
    named: dict[str, Any] = {}
    for m in models:
        base = model_display_name(m)
        name, k = base, 2
        while name in named:
            name, k = f"{base}-{k}", k + 1
        named[name] = m
    return named


def explain(
    models: Sequence[str | os.PathLike[str]] | Mapping[str, Any],
    *,
    output_dir: str | os.PathLike[str],
    images: Sequence[str | os.PathLike[str]] | None = None,
    dataset: Any = None,
    max_images: int = 8,
    mass: float | None = 0.6,
    rollout: bool = True,
    mim: bool = True,
    mim_task: str | None = None,
    localization: bool = True,
    batch_size: int = 16,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    slice_axis: int = 2,
    progress: bool = True,
) -> ExplainResult:
    """Write attention figures, MIM panels and (with lesion masks) the localization table.

    Args:
        models: Model folders, training run folders or Hub ids (named after their folder), or
            ``{name: model or path}``.
        output_dir: Where the figures and tables go.
        images: Image files or folders (as for ``predict``; volumes give their slices).
        dataset: Instead of ``images``: batches in the project's format, or a map-style data set
            (see :func:`mtl_hf.explain.batches.iter_batches`); ``lesion_mask`` enables the scores.
        max_images: Images drawn in figures (localization scores use the whole ``dataset``).
        mass: Share of attention kept by the thresholded panel (DINO's 0.6); ``None`` leaves it out.
        rollout: Compute and draw attention rollout.
        mim: Draw MIM panels for models with a masked-image-modeling head.
        mim_task: Which MIM task, when a model has several.
        localization: Score attention localization when the data have lesion masks.
        batch_size: Images per forward pass, and batch size for a map-style ``dataset``.
        n_resamples, confidence, seed: Bootstrap of the localization table; ``seed`` also draws the
            shared MIM mask.
        slice_axis: NIfTI slicing axis for ``images``.
        progress: Show progress bars.

    Raises:
        ExplainError: an option out of range, a ``mim_task`` none of the models has, or a ``dataset``
            without an image to explain; raised before any figure is written.
        mtl_hf.data.errors.DataError: an image file that cannot be read, or files without an image.
    """
    if (images is None) == (dataset is None):
        raise ValueError("give either images or dataset")
    if max_images < 1:
        raise ExplainError(f"max_images must be at least 1, got {max_images}")
    if batch_size < 1:
        raise ExplainError(f"batch size must be at least 1, got {batch_size}")
    if mass is not None:
        check_mass(mass)
    if dataset is not None and localization:
        check_bootstrap_options(n_resamples, confidence)
    out = Path(output_dir)
    device = PartialState().device
    loaded: dict[str, tuple[MTLModel, MTLImageProcessor]] = {}
    for name, m in named_models(models).items():
        net, processor = load_model_and_processor(m)
        loaded[name] = (net.to(device), processor)
    if not loaded:
        raise ValueError("no models to explain")
    if (
        mim
        and mim_task is not None
        and not any(_has_reconstruction(net, mim_task) for net, _ in loaded.values())
    ):
        raise ExplainError(
            f"no model has a masked-image-modeling task named {mim_task!r} (their tasks: "
            + "; ".join(f"{name}: {', '.join(net.config.task_names)}" for name, (net, _) in loaded.items())
            + ")"
        )

    if images is not None:
        pixel_values, lesions = _from_files(loaded, images, max_images, slice_axis)
    else:
        pixel_values, lesions = _from_dataset(loaded, dataset, max_images, batch_size)
    first_processor = next(iter(loaded.values()))[1]
    result = ExplainResult()

    maps: dict[str, AttentionMaps] = {}
    for name, (net, _) in loaded.items():
        maps[name] = attention_maps(net, pixel_values[name], rollout=rollout, batch_size=batch_size)
    display_processor = {name: first_processor if dataset is not None else loaded[name][1] for name in loaded}
    displays = {
        name: display_processor[name].unnormalize(pixel_values[name].float().cpu()) for name in loaded
    }
    n = next(iter(pixel_values.values())).shape[0]
    bar = tqdm(total=n * len(loaded), desc="attention figures", unit="fig", disable=not progress)
    for name in loaded:
        for i in range(n):
            bar.update(1)
            result.figures.append(
                save_attention_figure(
                    displays[name][i],
                    maps[name],
                    i,
                    out / "attention" / _safe(name) / f"image_{i}.png",
                    mass=mass,
                    lesion=None if lesions is None else lesions[i],
                    title=name,
                    channel_names=_channel_names(display_processor[name]),
                )
            )
    bar.close()
    first = next(iter(loaded))
    size = (displays[first].shape[-2], displays[first].shape[-1])  # maps drawn over the first model's input
    kinds: list[MapKind] = ["mean", "rollout"] if rollout else ["mean"]
    for kind in kinds:
        heat = {name: list(upsample_map(maps[name].get(kind), size)) for name in loaded}
        result.figures.append(
            save_comparison_grid(
                list(displays[first]),
                heat,
                out / f"attention_grid_{kind}.png",
                lesions=None if lesions is None else list(lesions),
                title="last-layer CLS attention (head mean)" if kind == "mean" else "attention rollout",
                channel_names=_channel_names(display_processor[first]),
            )
        )

    if mim:
        result.figures.extend(_mim_figures(loaded, pixel_values, mim_task, seed, out))

    if dataset is not None and localization and lesions is not None:
        rows = attention_localization(
            {name: net for name, (net, _) in loaded.items()},
            dataset,
            maps=["mean", "rollout"] if rollout else ["mean"],
            batch_size=batch_size,
            n_resamples=n_resamples,
            confidence=confidence,
            seed=seed,
            progress=progress,
        )
        result.localization = rows
        result.tables = write_localization_table(rows, out)
    return result


def _mim_figures(
    loaded: Mapping[str, tuple[MTLModel, MTLImageProcessor]],
    pixel_values: Mapping[str, torch.Tensor],
    mim_task: str | None,
    seed: int,
    out: Path,
) -> list[Path]:
    with_mim = [name for name, (net, _) in loaded.items() if _has_reconstruction(net, mim_task)]
    if not with_mim:
        return []
    grids = {name: loaded[name][0].grid_size(pixel_values[name]) for name in with_mim}
    if len(set(grids.values())) > 1:
        logger.warning(
            "MIM panels skipped: they need one patch grid for all models to share a mask; got %s", grids
        )
        return []
    first_net = loaded[with_mim[0]][0]
    b = pixel_values[with_mim[0]].shape[0]
    mask = shared_mask(first_net, b, next(iter(grids.values())), mim_task=mim_task, seed=seed)
    recs: dict[str, Reconstruction] = {
        name: reconstruct(loaded[name][0], pixel_values[name], mask, loaded[name][1], mim_task=mim_task)
        for name in with_mim
    }
    names = _channel_names(loaded[with_mim[0]][1])
    return [
        save_mim_figure(
            recs, i, out / "mim" / f"image_{i}.png", title="masked image modeling", channel_names=names
        )
        for i in range(b)
    ]


def _channel_names(processor: MTLImageProcessor) -> list[str] | None:
    """Names of the model's channels when they are named (MR modalities, CT windows)."""
    return processor.output_channel_names if processor.channel_names is not None else None


def _has_reconstruction(model: MTLModel, mim_task: str | None) -> bool:
    try:
        mim_task_of(model, mim_task)
    except ValueError:
        return False
    return True


def _from_files(
    loaded: Mapping[str, tuple[MTLModel, MTLImageProcessor]],
    paths: Sequence[str | os.PathLike[str]],
    max_images: int,
    slice_axis: int,
) -> tuple[dict[str, torch.Tensor], None]:
    # Patients and volumes are read as the first model's training data was (its modalities, intensities).
    items: list[InputImage] = []
    sources, errors = plan_sources(paths, next(iter(loaded.values()))[1])
    if errors:
        raise errors[0]
    for source in sources:
        for item in read_source(source, slice_axis=slice_axis):
            items.append(item)
            if len(items) == max_images:
                break
        if len(items) == max_images:
            break
    if not items:
        raise DataError(", ".join(map(str, paths)), "no image found in these files")
    return {name: pixel_values(proc, items) for name, (_, proc) in loaded.items()}, None


def _from_dataset(
    loaded: Mapping[str, tuple[MTLModel, MTLImageProcessor]], data: Any, max_images: int, batch_size: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    chosen: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    has_masks: bool | None = None
    for batch in iter_batches(data, batch_size):
        x = torch.as_tensor(batch["pixel_values"])
        m = lesion_masks(batch)
        if has_masks is None:
            has_masks = m is not None
        if m is not None:
            keep = m.flatten(1).any(dim=1)
            x, m = x[keep], m[keep]
            masks.extend(m)
        chosen.extend(x)
        if len(chosen) >= max_images:
            break
    if not chosen:
        raise ExplainError("the data set gave no image to explain (with lesion masks: none with a lesion)")
    pixel_values = torch.stack(chosen[:max_images])
    lesions = torch.stack(masks[:max_images]) if has_masks else None
    return {name: pixel_values for name in loaded}, lesions


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "model"
