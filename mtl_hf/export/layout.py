"""What an ONNX export folder is made of: its file and tensor names, format version and default opset.

Kept free of heavy imports: ``mtl-hf export --help`` names them without loading torch, and
:mod:`~mtl_hf.export.runtime` reads a folder with them.
"""

from __future__ import annotations

MODEL_FILE = "model.onnx"
OUTPUTS_FILE = "onnx_outputs.json"
INPUT_NAME = "pixel_values"
ATTENTIONS_NAME = "attentions"
DEFAULT_OPSET = 17
FORMAT_VERSION = 2
"""2: each task with per-sample predictions has a ``predictions.<task>`` output (1: logits only)."""

__all__ = ["ATTENTIONS_NAME", "DEFAULT_OPSET", "FORMAT_VERSION", "INPUT_NAME", "MODEL_FILE", "OUTPUTS_FILE"]
