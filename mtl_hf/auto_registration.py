"""Registration with transformers' Auto classes, without importing transformers at ``import mtl_hf``.

``import mtl_hf`` must make ``AutoConfig`` / ``AutoModel`` / ``AutoImageProcessor`` (and
``pipeline("mtl-image-classification")``) know ``model_type="mtl_vit"``, yet stay cheap: ``mtl-hf --help``
should not pay for torch and transformers. So each of our modules registers its class at its own end
(``configuration_mtl`` with ``AutoConfig``, ``modeling_mtl`` with ``AutoModel``, ...), and
:func:`install` makes sure that module is imported as soon as the transformers module holding the Auto
class is: right away if transformers already loaded it, else just after transformers loads it (an
import hook that watches those few module names and nothing else).

Our module is left alone when it is already being imported (it registers itself when it finishes).
A failure while registering is reported as a warning and never breaks the transformers import.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

REGISTERING_MODULES: dict[str, str] = {
    # transformers module holding the Auto class -> our module that registers itself with it
    "transformers.models.auto.configuration_auto": "mtl_hf.configuration_mtl",
    "transformers.models.auto.modeling_auto": "mtl_hf.modeling_mtl",
    "transformers.models.auto.image_processing_auto": "mtl_hf.image_processing_mtl",
    "transformers.pipelines": "mtl_hf.inference.pipeline",
}


def install() -> None:
    """Register now with every Auto module transformers has loaded; watch for the others."""
    for watched in REGISTERING_MODULES:
        if watched in sys.modules:
            _register_for(watched)
    if not any(isinstance(finder, _AfterImportFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImportFinder())


def _register_for(watched: str) -> None:
    ours = REGISTERING_MODULES[watched]
    if ours in sys.modules:  # imported (and registered) already, or registering itself as it finishes
        return
    try:
        importlib.import_module(ours)
    except Exception as exc:  # never break the user's transformers import
        warnings.warn(
            f"mtl_hf: could not register with {watched} ({type(exc).__name__}: {exc}); "
            f"import {ours} yourself to see why",
            RuntimeWarning,
            stacklevel=2,
        )


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a watched module it takes the spec the other finders give and wraps
    the loader so that :func:`_register_for` runs once the module has executed."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in REGISTERING_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _RegisteringLoader(spec.loader, fullname)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, fullname: str) -> None:
        self.loader = loader
        self.fullname = fullname

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # The module sees its real loader (inspect.getsource, importlib.resources read through it).
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _register_for(self.fullname)
