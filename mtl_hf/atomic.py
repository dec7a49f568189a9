"""File writes that never leave a half-written file and never write through a planted link.

A whole file is written into a fresh temporary file beside it (created with ``O_EXCL``, so an existing
file or link of that name is never opened) and renamed over the final name: ``os.replace`` replaces a
symbolic link found there by the new file instead of writing into the link's target, and a reader (or a
run killed mid-write) sees the old content or the new, never a mix. Appending opens with
``O_NOFOLLOW``, so an appended log that was replaced by a link is refused by name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import MtlHfError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class LinkRefusedError(MtlHfError, OSError):
    """A file mtl-hf appends to or locks is a symbolic link: writing would reach the link's target."""


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path`` (same suffix); once the block has written it, rename
    it to ``path``. A block that writes nothing leaves ``path`` as it was.

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{final.name}"  # keeps the suffix
    try:
        yield tmp
        if tmp.is_file() and not tmp.is_symlink():  # the block may decide to write nothing
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, final)
    finally:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, replacing a link there rather than following it."""
    return write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, replacing a link there rather than following it."""
    with replacing(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    return Path(path)


def open_append(path: str | os.PathLike[str]) -> IO[str]:
    """Open ``path`` for appending text, creating it; a symbolic link there is refused.

    Raises:
        LinkRefusedError: ``path`` is a symbolic link.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o644)
    except OSError as exc:
        if Path(path).is_symlink():
            raise refuse_link(Path(path)) from exc
        raise
    return os.fdopen(fd, "a", encoding="utf-8")


def refuse_link(path: Path) -> LinkRefusedError:
    """The error for a symbolic link found where mtl-hf writes a file of its own."""
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return LinkRefusedError(
        f"{path} is a symbolic link (to {target}); mtl-hf never writes through a link it did not create: "
        "remove it"
    )
