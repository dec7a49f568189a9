"""Optional packages: import one a feature needs, or fail with the ``pip install`` line that brings it.

The extras of ``pyproject.toml`` group them: ``onnx`` (``mtl-hf export``, running an export), ``app``
(``mtl-hf app``), ``lora`` (``model.lora``), ``demo`` (the demo data), ``dicom``, ``tensorboard``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MtlHfError


class MissingExtraError(MtlHfError, ImportError):
    """An optional package a feature needs cannot be imported; the message names the feature, the
    package and the ``mtl-hf`` extra that installs it.

    Attributes:
        feature: What needs the package (``"exporting to ONNX"``).
        name: The package (``ImportError``'s attribute for the module that could not be imported).
        extra: The extra that installs it.
        reason: Why the import failed (the ``ImportError``'s message), or ``""``.
    """

    def __init__(self, feature: str, package: str, extra: str, reason: str = "") -> None:
        why = f" ({reason})" if reason else ""
        super().__init__(f'{feature} needs {package}{why}: pip install "mtl-hf[{extra}]"')
        self.feature, self.name, self.extra, self.reason = feature, package, extra, reason

    def __reduce__(self) -> tuple[type[MissingExtraError], tuple[str, str, str, str]]:
        # Rebuilt from its arguments when it crosses a process boundary.
        return type(self), (self.feature, str(self.name), self.extra, self.reason)


def import_extra(module: str, *, feature: str, extra: str) -> ModuleType:
    """``import module``, or a :class:`MissingExtraError` naming ``feature`` and ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(feature, module.split(".")[0], extra, str(err)) from err
