"""What ``mtl-hf plugins`` shows: every registered head and weighter with where it comes from.

Listing imports every plugin of the ``mtl_hf.heads`` and ``mtl_hf.weighters`` entry-point groups (that
is how their failures surface) and checks each class as the model will use it
(:meth:`mtl_hf.registry.Registry.class_problems`): a ``TaskHead`` subclass in the heads group, a
``LossWeighter`` subclass in the weighters group, no abstract method left, an ``Options`` dataclass, a
constructor that takes the arguments mtl-hf passes (``(task_name, options, backbone)`` for a head,
``(task_names, options)`` for a weighter). A name provided more than once that ``MTL_HF_PREFER`` does not
settle is listed as a clash, naming every provider. A plugin that fails to import is listed with the
reason instead of breaking the listing; any failure or problem makes ``mtl-hf plugins`` exit with 1.

Example::

    >>> from mtl_hf.plugins_report import plugins_table
    >>> print(plugins_table())  # doctest: +SKIP
    kind      name                       source                      status
    head      binary_classification      mtl-hf (built in)           ok
    head      segmentation               mtl-hf-segmentation 0.1.0   ok
    weighter  fixed                      mtl-hf (built in)           ok
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .registry import Registry


@dataclass(frozen=True)
class PluginRow:
    """One registered name.

    Attributes:
        kind: ``"head"`` or ``"weighter"``.
        name: The name used in configs (``tasks.<task>.type``, ``weighting.type``).
        source: ``"mtl-hf (built in)"``, ``"<distribution> <version>"`` for an installed plugin, or the
            module of a class registered in-process with the decorator.
        error: Why the plugin failed to import (``"<ExceptionType>: <message>"``), else ``None``.
        problems: What makes the class unusable (wrong base class, abstract methods, constructor
            signature) or its name ambiguous, in words.
    """

    kind: str
    name: str
    source: str
    error: str | None = None
    problems: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        if self.error is not None:
            return f"failed: {self.error}"
        return f"problem: {'; '.join(self.problems)}" if self.problems else "ok"


def plugin_rows() -> list[PluginRow]:
    """Every head, then every weighter, sorted by name, importing all plugins to check they load."""
    from .heads import HEADS  # here, so that `mtl-hf plugins --help` does not load torch
    from .weighting import WEIGHTERS

    registries: list[Registry] = [HEADS, WEIGHTERS]
    return [
        PluginRow(registry.kind, entry.name, entry.source, entry.error, entry.problems)
        for registry in registries
        for entry in registry.entries()
    ]


def plugins_table(rows: list[PluginRow] | None = None) -> str:
    """The rows (default: :func:`plugin_rows`) as an aligned text table, with closing lines counting
    the plugins that failed to import and the entries with problems."""
    rows = plugin_rows() if rows is None else rows
    table = [("kind", "name", "source", "status")] + [(r.kind, r.name, r.source, r.status) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(3)]
    lines = [
        "  ".join([*(cell.ljust(w) for cell, w in zip(line[:3], widths, strict=True)), line[3]])
        for line in table
    ]
    failed = [r for r in rows if r.error is not None]
    if failed:
        names = ", ".join(f"{r.kind} {r.name!r}" for r in failed)
        lines.append(f"{len(failed)} plugin(s) failed to import: {names}. Fix or uninstall the distribution.")
    faulty = [r for r in rows if r.error is None and r.problems]
    if faulty:
        names = ", ".join(f"{r.kind} {r.name!r} ({r.source})" for r in faulty)
        lines.append(f"{len(faulty)} entry point(s) with problems: {names}. See each status above.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``mtl-hf plugins``: print the table; exit 1 when a plugin failed to import or has a problem."""
    import argparse

    argparse.ArgumentParser(
        prog="mtl-hf plugins",
        description="List every registered head and weighter with its source; report plugins that failed to "
        "import, classes of the wrong kind or signature, and names provided more than once.",
    ).parse_args(argv)
    rows = plugin_rows()
    print(plugins_table(rows))
    return 1 if any(row.error or row.problems for row in rows) else 0
