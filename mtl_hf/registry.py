"""Name registries for task heads and loss weighters, extensible through Python entry points.

A :class:`Registry` merges two sources:

* in-process registrations made with the :meth:`Registry.register` decorator (the built-in heads and
  weighters, or a user's own class defined in a script), and
* entry points of installed distributions in the registry's group (``mtl_hf.heads`` or
  ``mtl_hf.weighters``), loaded lazily, only when their name is asked for or the registry is listed.

A plugin that fails to import never breaks ``import mtl_hf``: the failure is recorded and reported when
the name is used (as the cause of the error) or listed (:meth:`Registry.entries`). A plugin class that
loads but cannot work (not a subclass of the registry's base class, abstract methods left, a
constructor that does not accept the arguments the model passes) is refused alike, with the reason.

A name provided twice (a built-in and a plugin, two distributions, or an in-process class and a
plugin) is never resolved silently: using it raises :class:`AmbiguousNameError` naming every provider,
unless the user picks one, either

* in the name itself, ``"<distribution>:<name>"`` (``"mtl-hf:fixed"`` for a built-in, the module for a
  class registered in-process), which a saved configuration keeps, or
* for the whole environment, with ``MTL_HF_PREFER="<name>=<distribution>,..."`` (:data:`PREFER_ENV`).

Example::

    from mtl_hf.heads import HEADS, TaskHead

    @HEADS.register("my_head")
    class MyHead(TaskHead): ...

    HEADS.get("my_head")            # -> MyHead
    HEADS.names("*classification")  # -> ['binary_classification', 'multiclass_classification', ...]
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import inspect
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, TypeVar

from .errors import MtlHfError

T = TypeVar("T", bound=type)

BUILTIN_SOURCE = "mtl-hf (built in)"
BUILTIN_QUALIFIER = "mtl-hf"
PREFER_ENV = "MTL_HF_PREFER"
"""Environment variable picking the provider of clashing names: ``"name=distribution,name2=dist2"``."""


class RegistryLookupError(MtlHfError, KeyError, ValueError):
    """A name could not be resolved to one usable class."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownNameError(RegistryLookupError):
    """Raised when a registry has no entry of the given name (or its plugin failed to load)."""


class AmbiguousNameError(RegistryLookupError):
    """Raised when several providers (built-in, in-process, distributions) register the same name and
    nothing picks one; the message names every provider and how to pick."""


@dataclass(frozen=True)
class RegistryEntry:
    """One provider of a name in a registry: where it comes from and what is wrong with it, if anything."""

    name: str
    source: str
    """``"mtl-hf (built in)"``, ``"<distribution> <version>"`` or ``"<module>"`` for in-process classes."""
    distribution: str | None = None
    version: str | None = None
    error: str | None = None
    """Why the plugin failed to import (``"<ExceptionType>: <message>"``)."""
    value: str | None = None
    """What provides the class: the entry point's value, or ``"<module>:<qualname>"`` in-process."""
    qualifier: str = BUILTIN_QUALIFIER
    """What to write before ``:`` to pick this provider: its distribution, ``mtl-hf`` or the module."""
    problems: tuple[str, ...] = ()
    """What makes the class unusable (wrong base class, abstract, constructor signature) or its name
    ambiguous, in words."""

    @property
    def ok(self) -> bool:
        return self.error is None and not self.problems


def normalize_distribution(name: str) -> str:
    """A distribution name compared as pip does (PEP 503: case and runs of ``-_.`` do not matter)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def split_qualified(name: str) -> tuple[str | None, str]:
    """``"dist:name"`` -> ``("dist", "name")``; ``"name"`` -> ``(None, "name")``."""
    qualifier, sep, plain = name.rpartition(":")
    return (qualifier, plain) if sep else (None, name)


def preferences() -> dict[str, str]:
    """``{name: distribution}`` from :data:`PREFER_ENV` (empty when unset).

    Raises:
        UnknownNameError: an item is not ``name=distribution``.
    """
    raw = os.environ.get(PREFER_ENV, "").strip()
    chosen: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, dist = (part.strip() for part in item.partition("="))
        if not sep or not name or not dist:
            raise UnknownNameError(
                f"{PREFER_ENV}: expected 'name=distribution' items separated by commas, got {item!r}"
            )
        chosen[name] = dist
    return chosen


def _class_value(cls: Any) -> str:
    return f"{getattr(cls, '__module__', '?')}:{getattr(cls, '__qualname__', repr(cls))}"


class Registry(Generic[T]):
    """A lazy, entry-point-backed mapping from names to classes.

    Args:
        kind: What the registry holds, used in messages (``"head"``, ``"weighter"``).
        group: The entry-point group that plugins declare, e.g. ``"mtl_hf.heads"``.
        base: The class every entry must derive from (``TaskHead``, ``LossWeighter``); its ``Options``
            attribute, if any, is the base every entry's ``Options`` must derive from.
        arguments: The positional arguments the pipeline constructs every class with, by name (e.g.
            ``("task_name", "options", "backbone")``): a constructor that cannot take them is refused.
    """

    def __init__(
        self, kind: str, group: str, *, base: type | None = None, arguments: Sequence[str] = ()
    ) -> None:
        self.kind = kind
        self.group = group
        self.base = base
        self.arguments = tuple(arguments)
        self._registered: dict[str, tuple[T, RegistryEntry]] = {}
        self._loaded: dict[tuple[str, str], tuple[T, RegistryEntry]] = {}
        self._failures: dict[tuple[str, str], RegistryEntry] = {}
        self._entry_points_cache: tuple[tuple[str, ...], list[metadata.EntryPoint]] | None = None

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str, *, source: str | None = None) -> Callable[[T], T]:
        """Class decorator registering ``cls`` under ``name``; a second class under a taken name is an error."""

        def decorator(cls: T) -> T:
            if name in self._registered and self._registered[name][0] is not cls:
                raise ValueError(
                    f"{self.kind} name {name!r} is already registered by {self._registered[name][1].source}"
                )
            module = getattr(cls, "__module__", "")
            builtin = module.startswith("mtl_hf.")
            entry = RegistryEntry(
                name=name,
                source=source or (BUILTIN_SOURCE if builtin else module),
                value=_class_value(cls),
                qualifier=BUILTIN_QUALIFIER if builtin else module,
            )
            self._registered[name] = (cls, entry)
            cls.registered_name = name  # type: ignore[attr-defined]
            return cls

        return decorator

    # -- the providers of a name ----------------------------------------------------------------
    def _entry_points(self) -> list[metadata.EntryPoint]:
        """The group's entry points, read again when ``sys.path`` changed or a name is not found (reading
        them scans every installed distribution's metadata, too slow for each lookup)."""
        key = tuple(sys.path)
        if self._entry_points_cache is None or self._entry_points_cache[0] != key:
            self._entry_points_cache = (key, list(metadata.entry_points(group=self.group)))
        return self._entry_points_cache[1]

    def _providers(self, name: str) -> list[tuple[RegistryEntry, metadata.EntryPoint | None]]:
        """Every provider of ``name`` (in-process registration first), without importing anything. An
        entry point naming the very class registered in-process (a plugin module that also registers
        itself on import) is the same provider, described by its distribution."""
        found: list[tuple[RegistryEntry, metadata.EntryPoint | None]] = []
        registered = self._registered.get(name)
        for ep in self._entry_points():
            if ep.name != name:
                continue
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            entry = RegistryEntry(
                name=name,
                source=f"{dist} {version}" if dist else ep.value,
                distribution=dist,
                version=version,
                value=ep.value,
                qualifier=dist or ep.value.partition(":")[0],
            )
            if registered is not None and registered[1].value == ep.value:
                registered = None
            if all(
                normalize_distribution(e.qualifier) != normalize_distribution(entry.qualifier)
                for e, _ in found
            ):
                found.append((entry, ep))
        if registered is not None:
            found.insert(0, (registered[1], None))
        return found

    def _pick(self, name: str) -> tuple[RegistryEntry, metadata.EntryPoint | None]:
        """The one provider that ``name`` (plain or ``qualifier:name``) designates."""
        qualifier, plain = split_qualified(name)
        providers = self._providers(plain)
        if not providers:  # installed since the entry points were read?
            self._entry_points_cache = None
            providers = self._providers(plain)
        if not providers:
            raise UnknownNameError(self.unknown_message(plain))
        if qualifier is None:
            if len(providers) == 1:
                return providers[0]
            qualifier = preferences().get(plain)
            if qualifier is None:
                raise AmbiguousNameError(self.ambiguous_message(plain, [e for e, _ in providers]))
            origin = f"{PREFER_ENV} picks {qualifier!r} for {plain!r}"
        else:
            origin = f"{name!r} asks for {qualifier!r}"
        for entry, ep in providers:
            if normalize_distribution(entry.qualifier) == normalize_distribution(qualifier):
                return entry, ep
        offered = ", ".join(repr(e.qualifier) for e, _ in providers)
        raise UnknownNameError(f"{origin}, but {self.kind} {plain!r} is provided by {offered} only.")

    # -- checks ----------------------------------------------------------------------------------
    def class_problems(self, cls: Any) -> list[str]:
        """What keeps ``cls`` from serving as an entry of this registry, in words (empty if nothing):
        not a subclass of :attr:`base`, abstract methods left, ``Options`` not a dataclass deriving from
        the base's, a constructor that cannot take :attr:`arguments`."""
        if not isinstance(cls, type):
            return [f"is not a class but {type(cls).__name__} {cls!r}"]
        problems: list[str] = []
        if self.base is not None and not issubclass(cls, self.base):
            bases = ", ".join(b.__name__ for b in cls.__mro__[1:-1]) or "object only"
            problems.append(
                f"{cls.__name__} is not a {self.base.__name__} subclass (its bases: {bases}); the "
                f"{self.group!r} group holds {self.base.__name__} subclasses"
            )
            return problems
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
            problems.append(f"{cls.__name__} does not implement the abstract method(s) {missing}")
        options_base = getattr(self.base, "Options", None)
        options = getattr(cls, "Options", None)
        if isinstance(options_base, type) and not (
            isinstance(options, type)
            and issubclass(options, options_base)
            and dataclasses.is_dataclass(options)
        ):
            problems.append(
                f"{cls.__name__}.Options must be a dataclass deriving from {options_base.__name__}, got {options!r}"
            )
        if self.arguments:
            try:
                signature = inspect.signature(cls)
            except (TypeError, ValueError):  # no introspectable signature: nothing to say
                return problems
            try:
                signature.bind(*self.arguments)
            except TypeError as exc:
                call = f"{cls.__name__}({', '.join(self.arguments)})"
                problems.append(
                    f"its constructor {cls.__name__}{signature} cannot be called as {call}, "
                    f"as mtl-hf builds every {self.kind}: {exc}"
                )
        return problems

    # -- lookup ---------------------------------------------------------------------------------
    def _load(self, entry: RegistryEntry, ep: metadata.EntryPoint | None) -> tuple[T | None, RegistryEntry]:
        """The class of one provider (importing its plugin once) and its entry; ``None`` if unusable."""
        key = (normalize_distribution(entry.qualifier), entry.name)
        if ep is None:
            return self._registered[entry.name]
        if key in self._loaded:
            return self._loaded[key]
        if key in self._failures:
            return None, self._failures[key]
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin is reported, never fatal
            failed = dataclasses.replace(entry, error=f"{type(exc).__name__}: {exc}")
            self._failures[key] = failed
            return None, failed
        problems = self.class_problems(cls)
        if problems:
            self._failures[key] = dataclasses.replace(entry, problems=tuple(problems))
            return None, self._failures[key]
        with contextlib.suppress(AttributeError, TypeError):  # immutable (builtin) types
            cls.registered_name = entry.name
        self._loaded[key] = (cls, entry)
        return cls, entry

    def get(self, name: str) -> T:
        """Return the class registered as ``name`` (or ``"<distribution>:<name>"``), loading its plugin
        if needed.

        Raises:
            UnknownNameError: no provider of that name, or its plugin failed to import or is unusable.
            AmbiguousNameError: several providers and nothing picks one.
        """
        cls, _entry = self._resolve(name)
        return cls

    def _resolve(self, name: str) -> tuple[T, RegistryEntry]:
        cls, entry = self._load(*self._pick(name))
        if cls is None:
            raise UnknownNameError(self.unknown_message(name))
        return cls, entry

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        qualifier, plain = split_qualified(name)
        providers = self._providers(plain)
        if qualifier is None:
            return bool(providers)
        return any(
            normalize_distribution(e.qualifier) == normalize_distribution(qualifier) for e, _ in providers
        )

    def source_of(self, name: str) -> RegistryEntry:
        """Provenance of a registered name (loads its plugin if needed; errors as :meth:`get`)."""
        return self._resolve(name)[1]

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names (in-process and entry points, without importing plugins) matching
        ``pattern``; plugins known to have failed leave their name out unless another provider has it."""
        all_names = set(self._registered) | {ep.name for ep in self._entry_points()}
        failed = {name for _, name in self._failures}
        usable = {name for name in all_names if name not in failed or len(self._providers(name)) > 1}
        return sorted(n for n in usable if fnmatch.fnmatchcase(n, pattern))

    def entries(self) -> list[RegistryEntry]:
        """Every provider of every name with its source, importing all plugins; a provider that failed
        comes with its error or problems, and each provider of a name nothing disambiguates with the
        clash among its problems. Sorted by name, then provider."""
        chosen = preferences()
        listed: list[RegistryEntry] = []
        all_names = set(self._registered) | {ep.name for ep in self._entry_points()}
        for name in sorted(all_names):
            providers = self._providers(name)
            loaded = [self._load(entry, ep)[1] for entry, ep in providers]
            if len(loaded) > 1 and name not in chosen:
                clash = self.ambiguous_message(name, loaded)
                loaded = [dataclasses.replace(e, problems=(*e.problems, clash)) for e in loaded]
            listed.extend(loaded)
        return listed

    # -- messages -------------------------------------------------------------------------------
    def unknown_message(self, name: str) -> str:
        qualifier, plain = split_qualified(name)
        msg = f"unknown {self.kind} {name!r}. Available: {', '.join(self.names()) or '(none)'}."
        failures = [
            f
            for (q, n), f in self._failures.items()
            if n == plain and (qualifier is None or q == normalize_distribution(qualifier))
        ]
        if failures:
            failure = failures[0]
            if failure.error is not None:
                msg += f" The plugin providing {plain!r} ({failure.source}) failed to import: {failure.error}"
            else:
                msg += (
                    f" The plugin providing {plain!r} ({failure.source}, {failure.value}) is unusable: "
                    + "; ".join(failure.problems)
                )
        else:
            msg += (
                f" A plugin distribution can add {self.kind}s through the {self.group!r} entry-point group;"
                " install it into this environment."
            )
        return msg

    def ambiguous_message(self, name: str, providers: Sequence[RegistryEntry]) -> str:
        """Every provider of ``name`` (source and value) and the two ways of picking one."""
        listed = " and ".join(f"{e.source} ({e.value})" for e in providers)
        qualified = " or ".join(repr(f"{e.qualifier}:{name}") for e in providers)
        return (
            f"{self.kind} {name!r} is provided {len(providers)} times: by {listed}. Pick one: write the "
            f"name as {qualified}, or set {PREFER_ENV}='{name}={providers[-1].qualifier}' (comma-separated "
            "name=distribution items); or uninstall one of the distributions."
        )
