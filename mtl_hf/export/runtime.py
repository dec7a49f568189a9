"""Run an export folder with onnxruntime: ``pixel_values`` in, ``{output name: array}`` out.

    >>> from mtl_hf.export import OnnxModel
    >>> onnx_model = OnnxModel("exported/")                          # doctest: +SKIP
    >>> outputs = onnx_model(onnx_model.processor(images, return_tensors="np")["pixel_values"])  # doctest: +SKIP
    >>> onnx_model.predictions(outputs)["tumour"], onnx_model.predictions(outputs)["tumour_area"]  # doctest: +SKIP

Needs ``onnxruntime`` (``pip install 'mtl-hf[onnx]'``); PyTorch is used only by the image processor.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..extras import import_extra
from ..image_processing_mtl import MTLImageProcessor
from .layout import MODEL_FILE, OUTPUTS_FILE
from .onnx_export import ExportError


class OnnxModel:
    """An export folder of :func:`~mtl_hf.export.export_onnx` loaded in an onnxruntime session.

    Args:
        folder: The export folder.
        threads: onnxruntime's intra-op threads (default: onnxruntime's choice).
        providers: onnxruntime execution providers (default: the CPU's).

    Attributes:
        description: The contents of ``onnx_outputs.json``.
        processor: The folder's image processor.
        session: The ``onnxruntime.InferenceSession``.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        threads: int | None = None,
        providers: list[str] | None = None,
    ) -> None:
        onnxruntime = import_extra("onnxruntime", feature="running an ONNX export", extra="onnx")
        self.folder = Path(folder)
        description_file = self.folder / OUTPUTS_FILE
        if not description_file.is_file():
            raise ExportError(f"{self.folder}: no {OUTPUTS_FILE}; not an mtl-hf ONNX export folder")
        self.description: dict[str, Any] = json.loads(description_file.read_text())
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(self.folder / self.description.get("model_file", MODEL_FILE)),
            options,
            providers=providers or ["CPUExecutionProvider"],
        )
        self.processor = MTLImageProcessor.from_pretrained(self.folder)
        self.input_name = str(self.description["input"]["name"])

    @property
    def output_names(self) -> list[str]:
        """The session's output names, in order."""
        return [o.name for o in self.session.get_outputs()]

    def __call__(self, pixel_values: Any) -> dict[str, np.ndarray]:
        """``{output name: array}`` for ``(B, C, H, W)`` normalised ``pixel_values`` (NumPy or torch)."""
        x = np.ascontiguousarray(np.asarray(pixel_values, dtype=np.float32))
        values = self.session.run(None, {self.input_name: x})
        return dict(zip(self.output_names, values, strict=True))

    def prediction_keys(self) -> dict[str, str]:
        """``{task: "probabilities" | "values"}`` of the tasks with per-sample predictions (an export of
        format 1 records only its classifiers, by their probability function)."""
        keys = {}
        for entry in self.description["outputs"]:
            key = entry.get("prediction_key") or ("probabilities" if entry.get("probabilities") else None)
            if key is not None:
                keys[entry["task"]] = str(key)
        return keys

    def predictions(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{task: (B, K) predictions}`` (a classifier's probabilities, a regression's values, what each
        head's ``predictions`` gives) of the tasks whose outputs are in ``outputs``: the graph's
        ``predictions.<task>`` outputs; for an export of format 1, a classifier's logits through the
        function ``onnx_outputs.json`` names (``sigmoid`` or ``softmax``)."""
        result = {}
        for entry in self.description["outputs"]:
            if entry.get("predictions") in outputs:
                p = outputs[entry["predictions"]].astype(np.float64)
                result[entry["task"]] = p.reshape(p.shape[0], -1)
            elif entry.get("probabilities") and entry["name"] in outputs:
                result[entry["task"]] = _activate(outputs[entry["name"]], entry["probabilities"])
        return result

    def probabilities(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{task: (B, K) probabilities}``: :meth:`predictions` of the tasks whose predictions are class
        probabilities."""
        keys = self.prediction_keys()
        return {t: p for t, p in self.predictions(outputs).items() if keys.get(t) == "probabilities"}


def _activate(logits: np.ndarray, function: str) -> np.ndarray:
    """``(B, K)`` probabilities from logits by ``"softmax"`` over the last axis or ``"sigmoid"``."""
    x = logits.astype(np.float64)
    if function == "softmax":
        shifted = np.exp(x - x.max(axis=-1, keepdims=True))
        p = shifted / shifted.sum(axis=-1, keepdims=True)
    else:
        p = 1.0 / (1.0 + np.exp(-x))
    return p[:, None] if p.ndim == 1 else p
