"""How well attention falls on the lesion: three scores per image, averaged over a split with CIs.

For an image with a lesion mask and a patch-level attention map ``a`` (summing to 1, see
:mod:`mtl_hf.explain.attention`), with ``f`` the share of each patch's pixels inside the lesion:

* **attention in lesion**: ``sum(a * f)``, the share of the attention mass on lesion pixels when the map
  is spread evenly over each patch's pixels. A uniform map scores the lesion's area fraction;
* **pointing game** (Zhang et al. 2016): 1 if the patch with the highest attention touches the lesion
  (``f > 0``), else 0; ties go to the first patch in row-major order. The map's resolution is the
  patch, so the hit is judged at that resolution (the original uses a 15-pixel tolerance for the same
  reason). Picking a patch at random scores the share of patches that touch the lesion;
* **pixel ROC AUC**: the ROC AUC of the attention as a pixel-wise lesion detector, each pixel scored by
  its patch's attention (``sklearn.metrics.roc_auc_score``, computed on patches weighted by their
  lesion and background pixel counts, which equals the AUC over pixels). 0.5 is chance. Undefined, and
  left out, when the lesion covers the whole image.

Only images whose mask contains lesion pixels are scored. Means over a split come with percentile
bootstrap intervals over patients when batches carry ``patient_id`` (:mod:`mtl_hf.explain.bootstrap`).
A ``chance`` row gives what an uninformative map scores on the same images (uniform map for the mass,
a random patch for the pointing game, 0.5 for the AUC).

:func:`attention_localization` runs all of it for several models on one data set and returns table rows;
:func:`write_localization_table` writes them as CSV and Markdown.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import PartialState
from tqdm.auto import tqdm

from ..inference.loading import load_model_and_processor
from .attention import MapKind, attention_maps
from .batches import iter_batches, unpack_batch
from .bootstrap import bootstrap_mean

METRICS: tuple[str, ...] = ("attention_in_lesion", "pointing_game", "pixel_roc_auc")
METRIC_TITLES = {
    "attention_in_lesion": "attention in lesion",
    "pointing_game": "pointing game",
    "pixel_roc_auc": "pixel ROC AUC",
}
CHANCE = "chance"


@dataclass(frozen=True)
class LocalizationRow:
    """One cell group of the comparison table: a model's map kind on one metric, with its interval.

    Attributes:
        model: Model name (``"chance"`` for the uninformative reference).
        map: ``"mean"`` (last-layer attention averaged over heads), ``"rollout"`` or ``"-"`` for chance.
        metric: One of :data:`METRICS`.
        value: Mean over the scored images.
        ci_low, ci_high: Percentile bootstrap interval at ``confidence``.
        n_images: Images scored (with a lesion; with a defined value).
        n_patients: Patients (bootstrap clusters) they came from.
        confidence: The interval's level.
    """

    model: str
    map: str
    metric: str
    value: float
    ci_low: float
    ci_high: float
    n_images: int
    n_patients: int
    confidence: float


@dataclass
class LocalizationScores:
    """Per-image scores: ``scores[(model, map)][metric]`` is a list aligned with ``patient_ids``.

    The chance reference is stored under ``(CHANCE, "-")``.
    """

    patient_ids: list[str] = field(default_factory=list)
    scores: dict[tuple[str, str], dict[str, list[float]]] = field(default_factory=dict)

    def add(self, key: tuple[str, str], metric: str, values: Iterable[float]) -> None:
        self.scores.setdefault(key, {m: [] for m in METRICS})[metric].extend(float(v) for v in values)


# -- per-image scores ------------------------------------------------------------------------------
def lesion_fraction(lesion_mask: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, h, w)`` share of each patch's pixels inside the lesion, from a ``(B, H, W)`` mask."""
    if lesion_mask.dim() != 3:
        raise ValueError(f"lesion_mask must have shape (B, H, W), got {tuple(lesion_mask.shape)}")
    h, w = lesion_mask.shape[-2:]
    if h % patch_size or w % patch_size:
        raise ValueError(f"lesion_mask size {h}x{w} is not a multiple of the patch size {patch_size}")
    m = (lesion_mask > 0).float()[:, None]
    return F.avg_pool2d(m, patch_size)[:, 0]


def attention_in_lesion(maps: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
    """``(B,)`` share of each map's mass on lesion pixels; ``maps`` and ``fraction`` are ``(B, h, w)``."""
    _check_pair(maps, fraction)
    total = maps.sum(dim=(-2, -1)).clamp_min(1e-12)
    return (maps * fraction).sum(dim=(-2, -1)) / total


def pointing_game(maps: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
    """``(B,)`` 1.0 where the map's highest patch touches the lesion, else 0.0."""
    _check_pair(maps, fraction)
    top = maps.flatten(1).argmax(dim=1)
    return (fraction.flatten(1).gather(1, top[:, None])[:, 0] > 0).float()


def pixel_roc_auc(maps: torch.Tensor, fraction: torch.Tensor, patch_size: int) -> np.ndarray:
    """``(B,)`` ROC AUC of each map as a pixel-wise lesion detector (NaN where undefined)."""
    from sklearn.metrics import roc_auc_score  # imported here: scikit-learn takes a second to import

    _check_pair(maps, fraction)
    pixels = float(patch_size * patch_size)
    out = np.full(maps.shape[0], np.nan)
    for i in range(maps.shape[0]):
        score = maps[i].flatten().double().numpy()
        f = fraction[i].flatten().double().numpy()
        if not (f > 0).any() or not (f < 1).any():
            continue
        scores = np.concatenate([score, score])
        labels = np.concatenate([np.ones_like(f), np.zeros_like(f)])
        weights = np.concatenate([f, 1.0 - f]) * pixels
        keep = weights > 0
        out[i] = roc_auc_score(labels[keep], scores[keep], sample_weight=weights[keep])
    return out


def _check_pair(maps: torch.Tensor, fraction: torch.Tensor) -> None:
    if maps.shape != fraction.shape or maps.dim() != 3:
        raise ValueError(
            f"maps {tuple(maps.shape)} and lesion fractions {tuple(fraction.shape)} must both be (B, h, w)"
        )


# -- over a data set -------------------------------------------------------------------------------
def collect_localization_scores(
    models: Mapping[str, Any],
    data: Any,
    *,
    maps: Sequence[MapKind] = ("mean", "rollout"),
    batch_size: int = 16,
    max_images: int | None = None,
    progress: bool = True,
) -> LocalizationScores:
    """Per-image localization scores of every model on every image of ``data`` that has a lesion.

    Args:
        models: ``{name: model}``: loaded :class:`~mtl_hf.MTLModel` s, or paths / Hub ids to load.
        data: Batches in the project's format (a ``DataLoader`` or any iterable of dicts with
            ``pixel_values`` ``(B, C, H, W)``, ``lesion_mask`` ``(B, H, W)`` and optionally
            ``patient_id``), or a map-style data set of such samples (torch or 🤗 ``datasets`` with torch
            format) that is batched here with ``batch_size``.
        maps: Map kinds to score: ``"mean"`` and/or ``"rollout"``.
        max_images: Stop after this many images with a lesion.
        progress: Show a tqdm progress bar.
    """
    if not models:
        raise ValueError("no models to score")
    for kind in maps:
        if kind not in ("mean", "rollout"):
            raise ValueError(f"maps: {kind!r} is not a map kind to score; use 'mean' and/or 'rollout'")
    loaded = _load_models(models)
    result = LocalizationScores()
    seen = 0
    counted = 0
    bar = tqdm(desc="attention localization", unit="img", disable=not progress)
    try:
        for batch in iter_batches(data, batch_size):
            pixel_values, mask, patients = unpack_batch(batch)
            if patients is None:  # without patient ids every image is its own cluster
                patients = [f"image-{counted + i}" for i in range(pixel_values.shape[0])]
            counted += pixel_values.shape[0]
            keep = torch.nonzero((mask > 0).flatten(1).any(dim=1)).flatten()
            if max_images is not None:
                keep = keep[: max_images - seen]
            if keep.numel() == 0:
                continue
            _score_batch(
                loaded, pixel_values[keep], mask[keep], [patients[i] for i in keep.tolist()], maps, result
            )
            seen += keep.numel()
            bar.update(keep.numel())
            if max_images is not None and seen >= max_images:
                break
    finally:
        bar.close()
    return result


def _score_batch(
    models: Mapping[str, Any],
    pixel_values: torch.Tensor,
    mask: torch.Tensor,
    patients: list[str],
    kinds: Sequence[MapKind],
    result: LocalizationScores,
) -> None:
    result.patient_ids.extend(patients)
    reference: torch.Tensor | None = None
    for name, model in models.items():
        computed = attention_maps(model, pixel_values, rollout="rollout" in kinds)
        fraction = lesion_fraction(mask.cpu(), computed.patch_size)
        if reference is None:
            reference = fraction
            result.add((CHANCE, "-"), "attention_in_lesion", fraction.mean(dim=(-2, -1)).tolist())
            result.add((CHANCE, "-"), "pointing_game", (fraction > 0).float().mean(dim=(-2, -1)).tolist())
            result.add((CHANCE, "-"), "pixel_roc_auc", [0.5] * len(patients))
        for kind in kinds:
            m = computed.get(kind)
            result.add((name, kind), "attention_in_lesion", attention_in_lesion(m, fraction).tolist())
            result.add((name, kind), "pointing_game", pointing_game(m, fraction).tolist())
            result.add(
                (name, kind), "pixel_roc_auc", pixel_roc_auc(m, fraction, computed.patch_size).tolist()
            )


def summarize_localization(
    scores: LocalizationScores,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    include_chance: bool = True,
) -> list[LocalizationRow]:
    """Table rows: the mean of each (model, map, metric) with a patient-level bootstrap interval."""
    rows = []
    groups = scores.patient_ids
    for (model, kind), metrics in scores.scores.items():
        if model == CHANCE and not include_chance:
            continue
        for metric in METRICS:
            ci = bootstrap_mean(
                metrics[metric], groups, n_resamples=n_resamples, confidence=confidence, seed=seed
            )
            rows.append(
                LocalizationRow(model, kind, metric, ci.mean, ci.low, ci.high, ci.n, ci.n_groups, confidence)
            )
    chance = [r for r in rows if r.model == CHANCE]
    return [r for r in rows if r.model != CHANCE] + chance


def attention_localization(
    models: Mapping[str, Any],
    data: Any,
    *,
    maps: Sequence[MapKind] = ("mean", "rollout"),
    batch_size: int = 16,
    max_images: int | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    include_chance: bool = True,
    progress: bool = True,
) -> list[LocalizationRow]:
    """Compare how well several models' attention localizes lesions on one data set (with masks).

    ``models`` and ``data`` are as in :func:`collect_localization_scores`; the result is one
    :class:`LocalizationRow` per model, map kind and metric, then the chance rows. Intervals are
    percentile bootstrap intervals over patients (``n_resamples``, ``confidence``, ``seed``).

    Example::

        rows = attention_localization({"STL": "runs/stl", "MTL": "runs/mtl"}, test_loader)
        write_localization_table(rows, "compare/")
    """
    scores = collect_localization_scores(
        models, data, maps=maps, batch_size=batch_size, max_images=max_images, progress=progress
    )
    if not scores.patient_ids:
        raise ValueError("no image with a lesion in the data: attention localization needs lesion masks")
    return summarize_localization(
        scores, n_resamples=n_resamples, confidence=confidence, seed=seed, include_chance=include_chance
    )


# -- tables ----------------------------------------------------------------------------------------
def localization_markdown(rows: Sequence[LocalizationRow], digits: int = 3) -> str:
    """A Markdown table: one line per (model, map), one column per metric as ``mean [low, high]``."""
    if not rows:
        raise ValueError("no rows to tabulate")
    level = round(rows[0].confidence * 100)
    keys = list(dict.fromkeys((r.model, r.map) for r in rows))
    by_key = {(r.model, r.map, r.metric): r for r in rows}
    header = ["model", "map", *[f"{METRIC_TITLES[m]} ({level}% CI)" for m in METRICS], "images", "patients"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, kind in keys:
        cells = []
        for m in METRICS:
            r = by_key.get((model, kind, m))
            cells.append(
                "" if r is None else f"{r.value:.{digits}f} [{r.ci_low:.{digits}f}, {r.ci_high:.{digits}f}]"
            )
        first = by_key[(model, kind, METRICS[0])]
        lines.append(
            "| " + " | ".join([model, kind, *cells, str(first.n_images), str(first.n_patients)]) + " |"
        )
    return "\n".join(lines) + "\n"


def write_localization_table(
    rows: Sequence[LocalizationRow], output_dir: str | os.PathLike[str], stem: str = "attention_localization"
) -> dict[str, Path]:
    """Write ``<stem>.csv`` (one line per row) and ``<stem>.md`` into ``output_dir``; return the paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{stem}.csv", "markdown": out / f"{stem}.md"}
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(LocalizationRow.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    paths["markdown"].write_text(localization_markdown(rows))
    return paths


# -- data handling ---------------------------------------------------------------------------------
def _load_models(models: Mapping[str, Any]) -> dict[str, Any]:
    device = PartialState().device
    loaded = {}
    for name, model in models.items():
        net, _ = load_model_and_processor(model)
        loaded[name] = net.to(device)
    return loaded
