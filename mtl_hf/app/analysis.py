"""What the web app shows for one uploaded file, computed without any web framework.

:class:`Analyzer` loads a model once and, for a file and a slice (or frame), returns an
:class:`Analysis`. Every piece comes from the code that the command line uses, so the page and the
commands agree:

* the file is read by :func:`mtl_hf.inference.readers.read_file` (PNG, JPEG, BMP, TIFF, DICOM, NIfTI);
* predictions are those of :func:`mtl_hf.inference.predict` for the same file (it runs once per file
  and is kept: moving through the slices of a volume costs no new prediction), in the nested form of
  ``predictions.json``: grouped by what each head says they are (``"probabilities"``, ``"values"``), a
  single-output task as a number, other tasks as ``{output: value}``;
* the attention map is :func:`mtl_hf.explain.attention_maps`' last-layer CLS attention averaged over
  heads, upsampled bilinearly and overlaid by :func:`mtl_hf.explain.figures.overlay`;
* the MIM panel (masked input | reconstruction | the model's reconstruction pasted into the masked
  patches) is :func:`mtl_hf.explain.reconstruction.reconstruct` with the mask of
  :func:`~mtl_hf.explain.reconstruction.shared_mask` (seed 0), for models with a MIM task;
* the mask of a segmentation task is :func:`mtl_hf.inference.masks.masks_at_size` at the input's size,
  drawn in red over the image.

Images come back as ``(H, W, 3)`` ``uint8`` arrays at the model's input size (the mask at the
input's own size).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..data.errors import DataError
from ..explain.attention import attention_maps, upsample_map
from ..explain.figures import overlay, to_rgb
from ..explain.reconstruction import mim_task_of, reconstruct, shared_mask
from ..image_processing_mtl import MTLImageProcessor
from ..inference.loading import load_model_and_processor
from ..inference.masks import masks_at_size
from ..inference.prediction import PredictionResult, predict, tasks_to_predict
from ..inference.readers import InputImage, read_file
from ..modeling_mtl import MTLModel

MASK_COLOUR = np.array([1.0, 0.1, 0.1])


@dataclass
class Analysis:
    """The app's view of one image, slice or frame.

    Attributes:
        source: The file.
        index: Slice or frame index; ``None`` for a 2-D image.
        indices: Every slice or frame index of the file that has a prediction (empty for a 2-D image).
        predictions: ``{key: {task: value | {output: value}}}`` as an image of ``predictions.json``
            holds them (``key``: ``"probabilities"``, ``"values"``).
        attention: Attention overlay, or ``None`` when the backbone gives no attentions.
        reconstruction: The MIM panel, or ``None`` without a MIM task.
        masks: ``{task: overlay}`` of segmentation tasks.
        volume: Volume-level predictions (the same form) of a multi-slice file, else ``None``.
    """

    source: str
    index: int | None
    indices: list[int]
    predictions: dict[str, dict[str, Any]]
    attention: np.ndarray | None = None
    reconstruction: np.ndarray | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    volume: dict[str, dict[str, Any]] | None = None

    @property
    def probabilities(self) -> dict[str, Any]:
        """``{task: probability | {class: probability}}`` of the tasks whose predictions are
        probabilities."""
        return self.predictions.get("probabilities", {})

    @staticmethod
    def by_task(grouped: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """``{task: value | {output: value}}`` over every key of ``grouped`` predictions."""
        return {task: value for group in grouped.values() for task, value in group.items()}


class Analyzer:
    """A model loaded once, analysing files on request (thread-safe; the last ``cache_size`` files'
    predictions and slices are kept).

    Args:
        model: A model folder, training run folder, Hub id or loaded :class:`~mtl_hf.MTLModel`.
        image_processor: Overrides the processor saved with the model.
        cache_size: Files whose predictions and images are kept.
        **hub_kwargs: ``revision``, ``cache_dir``, ``token``, ``local_files_only``.

    Raises:
        mtl_hf.inference.errors.PredictionError: the model has no task giving probabilities or masks.
        mtl_hf.inference.errors.NotAnMtlModelError, mtl_hf.security.UnsafeCheckpointError: as
            :func:`~mtl_hf.inference.loading.load_model_and_processor`.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | MTLModel,
        image_processor: MTLImageProcessor | None = None,
        *,
        cache_size: int = 4,
        **hub_kwargs: Any,
    ) -> None:
        self.model, self.processor = load_model_and_processor(model, image_processor, **hub_kwargs)
        self.model.eval()
        self.mask_tasks = tasks_to_predict(self.model)[1]  # refuses a model without any of either
        names = self.model.config.task_names
        self.mim_task = (
            mim_task_of(self.model)
            if any(getattr(self.model.head(n), "view", "clean") != "clean" for n in names)
            else None
        )
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[PredictionResult, dict[int | None, InputImage]]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def task_names(self) -> list[str]:
        return list(self.model.config.task_names)

    def analyze(self, path: str | os.PathLike[str], index: int | None = None) -> Analysis:
        """The :class:`Analysis` of slice or frame ``index`` of ``path`` (a 2-D image ignores it; for a
        volume, ``None`` picks the slice with the highest value of the first task's first output).

        Raises:
            mtl_hf.data.errors.DataError: an unsupported or unreadable file, or an index the file has no
                prediction for.
        """
        with self._lock:
            result, images = self._predicted(str(path))
            indices = [i for i in images if i is not None]
            if not indices:
                chosen: int | None = None
            elif index is None:
                chosen = self._default_index(result, indices)
            elif int(index) in images:
                chosen = int(index)
            else:
                raise DataError(
                    str(path),
                    f"no slice {index} with a prediction (slices {indices[0]}..{indices[-1]}, "
                    "empty ones left out)",
                )
            image = next(p for p in result.images if p.index == chosen)
            analysis = Analysis(
                source=str(path),
                index=chosen,
                indices=indices,
                predictions=result.grouped(image.predictions),
                volume=result.grouped(result.volumes[0].predictions) if result.volumes else None,
            )
            self._draw(images[chosen], analysis)
            return analysis

    # -- internals ---------------------------------------------------------------------------------
    def _predicted(self, path: str) -> tuple[PredictionResult, dict[int | None, InputImage]]:
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        result = predict(self.model, [path], image_processor=self.processor, progress=False)
        if result.errors:  # predict lists a file it cannot read instead of raising
            raise DataError(result.errors[0].source, result.errors[0].reason)
        kept = {(p.source, p.index) for p in result.images}
        images = {item.index: item for item in read_file(path) if (item.source, item.index) in kept}
        self._cache[path] = (result, images)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return result, images

    @staticmethod
    def _default_index(result: PredictionResult, indices: list[int]) -> int:
        if result.volumes and result.volumes[0].peak_slice:
            return next(iter(result.volumes[0].peak_slice.values()))
        return indices[len(indices) // 2]

    def _draw(self, item: InputImage, analysis: Analysis) -> None:
        model = self.model
        pixel_values = self.processor([item.image], return_tensors="pt")["pixel_values"]
        display = to_rgb(self.processor.unnormalize(pixel_values)[0])
        size = (int(pixel_values.shape[-2]), int(pixel_values.shape[-1]))
        maps = attention_maps(model, pixel_values, rollout=False)
        analysis.attention = _to_uint8(overlay(display, upsample_map(maps.mean, size)[0]))
        if self.mim_task is not None:
            mask = shared_mask(model, 1, model.grid_size(pixel_values), mim_task=self.mim_task, seed=0)
            rec = reconstruct(model, pixel_values, mask, self.processor, mim_task=self.mim_task)
            panel = [to_rgb(rec.masked_input[0]), to_rgb(rec.reconstruction[0]), to_rgb(rec.composite[0])]
            analysis.reconstruction = _to_uint8(np.concatenate(panel, axis=1))
        if self.mask_tasks:
            with torch.inference_mode():
                x = pixel_values.to(device=model.device, dtype=model.dtype)
                logits = model(x, tasks=self.mask_tasks).logits or {}
            original = _display(item.image)
            shape = (item.image.shape[0], item.image.shape[1])
            for task in self.mask_tasks:
                mask_image = masks_at_size(model.head(task), logits[task][0], shape)
                tinted = np.where(mask_image[..., None], 0.5 * original + 0.5 * MASK_COLOUR, original)
                analysis.masks[task] = _to_uint8(tinted)


def _display(image: np.ndarray) -> np.ndarray:
    """A reader's ``(H, W)`` or ``(H, W, C)`` image as ``(H, W, 3)`` in [0, 1]: ``uint8`` / 255, other
    integers min-max scaled, floats (already in [0, 1]) as they are; alpha dropped."""
    x = image.astype(np.float32)
    if image.dtype == np.uint8:
        x = x / 255.0
    elif image.dtype.kind in "iu":
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    if x.ndim == 3:
        x = x[..., :3] if x.shape[-1] >= 3 else x[..., 0]
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=-1)
    return np.clip(x, 0.0, 1.0)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
