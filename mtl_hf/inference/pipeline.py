"""A transformers pipeline for mtl-hf models: ``pipeline("mtl-image-classification", model=...)``.

Importing this module registers the task with ``transformers.pipelines.PIPELINE_REGISTRY``, so the usual
one-liner works for a saved folder or a Hub id::

    >>> import mtl_hf.inference  # registers "mtl-image-classification"
    >>> from transformers import pipeline
    >>> classify = pipeline("mtl-image-classification", model="runs/mtl/best_model")   # doctest: +SKIP
    >>> classify("slice.png")                                                            # doctest: +SKIP
    [{'label': 'tumour', 'score': 0.93}]

Output, per image, in the format of transformers' ``image-classification`` pipeline (a list of
``{"label", "score"}`` sorted by score, at most ``top_k`` entries):

* with ``classification_task="name"`` (or when the model has a single classification task): that task's
  list. A binary task gives one entry labelled with the task's name, the probability of the positive
  class; a multi-class task gives its classes (softmax); a multi-label task its labels (sigmoid);
* otherwise a dict ``{task: list}`` over every classification task.

Inputs are what ``transformers.image_utils.load_image`` reads (a path, a URL, a PIL image), NumPy
arrays, and DICOM files (``.dcm``) read by :func:`mtl_hf.inference.readers.read_dicom` (first frame).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .errors import PredictionError
from .probabilities import classification_tasks, output_names, task_predictions
from .readers import kind_of, read_dicom, read_image

TASK = "mtl-image-classification"


class MTLImageClassificationPipeline(Pipeline):
    """Image classification with an :class:`~mtl_hf.MTLModel`, one or all of its classification tasks.

    Call arguments: ``classification_task`` (a task name, default: all tasks, or the only one) and
    ``top_k`` (entries per task, default all).
    """

    # transformers declares these as None in the base class; a pipeline sets the ones it needs.
    _load_processor = False  # type: ignore[assignment]
    _load_image_processor = True  # type: ignore[assignment]
    _load_feature_extractor = False  # type: ignore[assignment]
    _load_tokenizer = False  # type: ignore[assignment]

    def _sanitize_parameters(
        self, classification_task: str | None = None, top_k: int | None = None, **kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if kwargs:
            raise TypeError(f"{TASK} pipeline got unexpected argument(s): {', '.join(sorted(kwargs))}")
        forward: dict[str, Any] = {}
        post: dict[str, Any] = {}
        if classification_task is not None:
            classification_tasks(self.model, [classification_task])  # validates the name
            forward["classification_task"] = classification_task
            post["classification_task"] = classification_task
        if top_k is not None:
            if top_k < 1:
                raise PredictionError(f"top_k must be at least 1, got {top_k}")
            post["top_k"] = top_k
        return {}, forward, post

    def preprocess(self, input_: Any, **preprocess_parameters: Any) -> dict[str, Any]:
        processor: Any = self.image_processor
        pixel_values = processor(_load(input_), return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixel_values.to(self.dtype)}

    def _forward(self, input_tensors: dict[str, Any], **forward_parameters: Any) -> Any:
        task = forward_parameters.get("classification_task")
        tasks = [task] if task else classification_tasks(self.model)
        logits = self.model(input_tensors["pixel_values"], tasks=tasks).logits or {}
        return task_predictions(self.model, logits, tasks)

    def postprocess(self, model_outputs: Any, **postprocess_parameters: Any) -> Any:
        """Per image: a list of ``{"label", "score"}`` (one task), or ``{task: list}`` (several)."""
        top_k: int | None = postprocess_parameters.get("top_k")
        lists: dict[str, list[dict[str, Any]]] = {}
        for task, probs in model_outputs.items():
            scores = probs[0].float().cpu().numpy()
            names = output_names(self.model, task)
            ranked = sorted(zip(names, scores.tolist(), strict=True), key=lambda e: e[1], reverse=True)
            entries = [{"label": name, "score": float(score)} for name, score in ranked]
            lists[task] = entries[:top_k] if top_k is not None else entries
        if postprocess_parameters.get("classification_task") is not None or len(lists) == 1:
            return next(iter(lists.values()))
        return lists


def _load(image: Any) -> Any:
    if isinstance(image, (np.ndarray, torch.Tensor)):
        return image
    if hasattr(image, "mode") and hasattr(image, "size"):  # a PIL image: a writable array for torch
        return np.array(image)
    if isinstance(image, str) and not image.startswith(("http://", "https://")):
        from pathlib import Path

        path = Path(image)
        kind = kind_of(path) if path.is_file() else None
        if kind == "dicom":
            return read_dicom(path)[0]
        if kind == "image":
            return read_image(path)
    from transformers.image_utils import load_image

    return load_image(image)


def register_pipeline() -> None:
    """Register ``"mtl-image-classification"`` with transformers (done when this module is imported)."""
    if PIPELINE_REGISTRY.supported_tasks.get(TASK, {}).get("impl") is MTLImageClassificationPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=MTLImageClassificationPipeline, pt_model=AutoModel, type="image"
    )


register_pipeline()
