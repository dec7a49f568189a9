"""Stand-in for transformers' ``tests/exporters/test_export.py``, which its source distribution lacks.

``ModelTesterMixin`` derives from ``ExportTesterMixin``, whose tests export a model with ``torch.export``
and its ONNX, OpenVINO, TensorRT and ExecuTorch back ends. This empty mixin adds no test: mtl-hf's ONNX
export has its own tests.
"""


class ExportTesterMixin:
    """No export tests (see the module docstring)."""
