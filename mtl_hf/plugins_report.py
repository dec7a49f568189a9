"""What ``mtl-hf plugins`` shows: every registered head and weighter with where it comes from.

Listing imports every plugin of the ``mtl_hf.heads`` and ``mtl_hf.weighters`` entry-point groups (that
is how their failures surface); a plugin that fails to import is listed with the reason instead of
breaking the listing.

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
    """

    kind: str
    name: str
    source: str
    error: str | None = None

    @property
    def status(self) -> str:
        return "ok" if self.error is None else f"failed: {self.error}"


def plugin_rows() -> list[PluginRow]:
    """Every head, then every weighter, sorted by name, importing all plugins to check they load."""
    from .heads import HEADS  # here, so that `mtl-hf plugins --help` does not load torch
    from .weighting import WEIGHTERS

    registries: list[Registry] = [HEADS, WEIGHTERS]
    return [
        PluginRow(registry.kind, entry.name, entry.source, entry.error)
        for registry in registries
        for entry in registry.entries()
    ]


def plugins_table(rows: list[PluginRow] | None = None) -> str:
    """The rows (default: :func:`plugin_rows`) as an aligned text table, with a closing line counting
    the plugins that failed to import."""
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
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``mtl-hf plugins``: print the table; exit 1 when a plugin failed to import."""
    import argparse

    argparse.ArgumentParser(
        prog="mtl-hf plugins",
        description="List every registered head and weighter with its source, and plugins that failed to import.",
    ).parse_args(argv)
    rows = plugin_rows()
    print(plugins_table(rows))
    return 1 if any(row.error for row in rows) else 0
