"""The manifest reader (CSV, JSON, JSON lines) and the check of every path a manifest row names.

A row's path is checked before anything touches the file system with it: a NUL byte, a name longer
than file systems allow (255 bytes per component, 4095 in all), a symbolic-link loop, a path that
cannot be resolved, or one resolving outside the data root, each give a
:class:`~mtl_hf.data.DataError` naming the manifest row, so ``skip_bad`` skips that row like any
other bad one.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from ..errors import DataError

NAME_MAX = 255
"""Bytes in one path component (Linux, macOS and Windows file systems)."""
PATH_MAX = 4095
"""Bytes in a whole path (Linux)."""


def locate_manifest(manifest: str, root: str | os.PathLike[str]) -> Path:
    """Where a configured manifest is: ``manifest`` itself when absolute or found from the working
    folder, else ``manifest`` under the data folder ``root``."""
    path = Path(manifest)
    return path if path.is_absolute() or path.exists() else Path(root) / path


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV, JSON (a list of objects) or JSON-lines manifest."""
    if not path.is_file():
        raise DataError(str(path), "manifest not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix.lower() == ".csv":
            return [dict(r) for r in csv.DictReader(io.StringIO(text))]
        if path.suffix.lower() in (".json", ".jsonl"):
            stripped = text.strip()
            if stripped.startswith("["):
                rows = json.loads(stripped)
            else:
                rows = [json.loads(line) for line in stripped.splitlines() if line.strip()]
            if not all(isinstance(r, dict) for r in rows):
                raise DataError(str(path), "expected a list of objects (one per image)")
            return rows
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise DataError(str(path), f"cannot parse manifest ({exc})") from exc
    raise DataError(str(path), "manifest must be .csv, .json or .jsonl")


def listed_file(raw: str, base: Path, where: str, inside: Path | None, what: str = "image") -> Path:
    """The existing file a manifest cell names (relative to ``base``), checked.

    Args:
        raw: The cell's text.
        base: Folder relative paths start from (the manifest's).
        where: The row, for messages (``"m.csv (row 3)"``).
        inside: Folder the file must resolve under (links followed); ``None``: anywhere.
        what: What the file is, for messages.

    Raises:
        DataError: NUL byte, over-long name, symbolic-link loop, unresolvable path, outside ``inside``,
            or no such file.
    """
    if "\x00" in raw:
        raise DataError(where, f"{what} path {raw[:80]!r} contains a NUL byte")
    path = Path(raw)
    long = [part for part in path.parts if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX]
    if long:
        raise DataError(
            where,
            f"{what} path has a name of {len(long[0].encode())} bytes ({long[0][:40]}...), over {NAME_MAX}",
        )
    if not path.is_absolute():
        path = base / path
    if len(str(path).encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise DataError(where, f"{what} path is longer than {PATH_MAX} bytes")
    try:
        resolved = path.resolve()
        found = path.is_file()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symbolic-link loop (Python < 3.13)
        raise DataError(str(path), f"cannot resolve {what} path ({where}): {exc}") from exc
    if inside is not None and not resolved.is_relative_to(inside):
        raise DataError(
            str(path),
            f"resolves to {resolved}, outside the data root {inside} ({where}); files outside the root are "
            "refused unless the data config sets allow_outside_root: true",
        )
    if not found:
        raise DataError(str(path), f"{what} file not found ({where})")
    return path
