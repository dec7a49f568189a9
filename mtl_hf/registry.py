"""Name registries for task heads and loss weighters, extensible through Python entry points.

A :class:`Registry` merges two sources:

* in-process registrations made with the :meth:`Registry.register` decorator (the built-in heads and
  weighters, or a user's own class defined in a script), and
* entry points of installed distributions in the registry's group (``mtl_hf.heads`` or
  ``mtl_hf.weighters``), loaded lazily, only when their name is asked for or the registry is listed.

A plugin that fails to import never breaks ``import mtl_hf``: the failure is recorded and reported when
the name is used (as the cause of the error) or listed (:meth:`Registry.entries`).

Example::

    from mtl_hf.heads import HEADS, TaskHead

    @HEADS.register("my_head")
    class MyHead(TaskHead): ...

    HEADS.get("my_head")            # -> MyHead
    HEADS.names("*classification")  # -> ['binary_classification', 'multiclass_classification', ...]
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Generic, TypeVar

from .errors import MtlHfError

T = TypeVar("T", bound=type)

BUILTIN_SOURCE = "mtl-hf (built in)"


class UnknownNameError(MtlHfError, KeyError, ValueError):
    """Raised when a registry has no entry of the given name (or its plugin failed to import)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class RegistryEntry:
    """One name in a registry: where it comes from and, for a broken plugin, why it failed."""

    name: str
    source: str
    """``"mtl-hf (built in)"``, ``"<distribution> <version>"`` or ``"<module>"`` for in-process classes."""
    distribution: str | None = None
    version: str | None = None
    error: str | None = None


class Registry(Generic[T]):
    """A lazy, entry-point-backed mapping from names to classes.

    Args:
        kind: What the registry holds, used in messages (``"head"``, ``"weighter"``).
        group: The entry-point group that plugins declare, e.g. ``"mtl_hf.heads"``.
    """

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._classes: dict[str, T] = {}
        self._entries: dict[str, RegistryEntry] = {}
        self._failures: dict[str, RegistryEntry] = {}

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str, *, source: str | None = None) -> Callable[[T], T]:
        """Class decorator registering ``cls`` under ``name``; a second class under a taken name is an error."""

        def decorator(cls: T) -> T:
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(
                    f"{self.kind} name {name!r} is already registered by {self._entries[name].source}"
                )
            module = getattr(cls, "__module__", "")
            src = source or (BUILTIN_SOURCE if module.startswith("mtl_hf.") else module)
            self._classes[name] = cls
            self._entries[name] = RegistryEntry(name=name, source=src)
            cls.registered_name = name  # type: ignore[attr-defined]
            return cls

        return decorator

    # -- lookup ---------------------------------------------------------------------------------
    def _entry_points(self) -> dict[str, metadata.EntryPoint]:
        return {ep.name: ep for ep in metadata.entry_points(group=self.group)}

    def _load_entry_point(self, ep: metadata.EntryPoint) -> T | None:
        dist = ep.dist.name if ep.dist is not None else None
        version = ep.dist.version if ep.dist is not None else None
        source = f"{dist} {version}" if dist else ep.value
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin is reported, never fatal
            self._failures[ep.name] = RegistryEntry(
                ep.name, source, dist, version, error=f"{type(exc).__name__}: {exc}"
            )
            return None
        if ep.name not in self._classes:
            self._classes[ep.name] = cls
            with contextlib.suppress(AttributeError, TypeError):  # immutable (builtin) types
                cls.registered_name = ep.name
        # A plugin module may register itself with the decorator on import; the entry point's
        # distribution is the better provenance either way.
        self._entries[ep.name] = RegistryEntry(ep.name, source, dist, version)
        return self._classes[ep.name]

    def get(self, name: str) -> T:
        """Return the class registered as ``name``, loading its plugin if needed."""
        if name in self._classes:
            return self._classes[name]
        ep = self._entry_points().get(name)
        if ep is not None:
            cls = self._load_entry_point(ep)
            if cls is not None:
                return cls
        raise UnknownNameError(self.unknown_message(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._classes or name in self._entry_points())

    def source_of(self, name: str) -> RegistryEntry:
        """Provenance of a registered name (loads its plugin if needed)."""
        self.get(name)
        return self._entries[name]

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names (in-process and entry points, without importing plugins) matching
        ``pattern``; plugins known to have failed to import are left out."""
        all_names = (set(self._classes) | set(self._entry_points())) - (
            set(self._failures) - set(self._classes)
        )
        return sorted(n for n in all_names if fnmatch.fnmatchcase(n, pattern))

    def entries(self) -> list[RegistryEntry]:
        """Every name with its source, importing all plugins; failed plugins come with their error."""
        for name, ep in self._entry_points().items():
            if name not in self._classes and name not in self._failures:
                self._load_entry_point(ep)
        merged = {**self._failures, **self._entries}
        return [merged[n] for n in sorted(merged)]

    def unknown_message(self, name: str) -> str:
        msg = f"unknown {self.kind} {name!r}. Available: {', '.join(self.names()) or '(none)'}."
        if name in self._failures:
            failure = self._failures[name]
            msg += f" The plugin providing {name!r} ({failure.source}) failed to import: {failure.error}"
        else:
            msg += (
                f" A plugin distribution can add {self.kind}s through the {self.group!r} entry-point group;"
                " install it into this environment."
            )
        return msg
