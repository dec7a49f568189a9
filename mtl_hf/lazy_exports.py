"""Public names of a package loaded on first use (PEP 562), so importing the package costs nothing.

A package lists which submodule holds each of its public names; ``from mtl_hf.data import DataConfig``
then imports :mod:`mtl_hf.data.config` alone, and ``mtl-hf COMMAND --help`` (which imports a command's
``cli`` module inside such a package) loads neither torch nor transformers.

A public name must not also be the name of a submodule of the package: once the submodule is imported,
Python binds its name on the package and the lazy function or class would never be looked up.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    module_name: str, exports: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of a package (or module) ``module_name``.

    Args:
        module_name: The package's (or module's) ``__name__``.
        exports: ``{".submodule": (public names it holds, ...)}``, relative to the package (for a
            module, to the package holding it);
            ``"NAME as ALIAS"`` publishes the submodule's ``NAME`` as ``ALIAS``.

    Returns:
        ``(__getattr__, __dir__)``: assign them in the package's ``__init__``. A name is imported from
        its submodule on first access and then kept on the package.
    """
    where: dict[str, tuple[str, str]] = {}  # public name -> (submodule, its name there)
    for module, names in exports.items():
        for entry in names:
            name, _, alias = entry.partition(" as ")
            where[alias or name] = (module, name)

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        module, attribute = where[name]
        owner = sys.modules[module_name]
        value = getattr(importlib.import_module(module, owner.__package__), attribute)
        setattr(owner, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[module_name]), *where})

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
