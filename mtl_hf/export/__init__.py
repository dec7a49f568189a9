"""Deployment exports: the inference graph as ONNX (:func:`export_onnx`), run with onnxruntime
(:class:`OnnxModel`). ``mtl-hf export MODEL -o DIR`` is the command line (:mod:`mtl_hf.export.cli`).

Exporting needs ``onnx``, running the export ``onnxruntime``: ``pip install 'mtl-hf[onnx]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        ".graph": ("InferenceGraph",),
        ".onnx_export": ("ExportError", "OnnxExport", "describe_outputs", "export_onnx", "logits_name"),
        ".runtime": ("OnnxModel",),
    },
)

if TYPE_CHECKING:
    from .graph import InferenceGraph
    from .onnx_export import ExportError, OnnxExport, describe_outputs, export_onnx, logits_name
    from .runtime import OnnxModel

__all__ = [
    "ExportError",
    "InferenceGraph",
    "OnnxExport",
    "OnnxModel",
    "describe_outputs",
    "export_onnx",
    "logits_name",
]
