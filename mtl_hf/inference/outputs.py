"""Files written by ``predict`` into its output folder: each written to a temporary file of our own and
renamed over its name, never through a symbolic link.

An entry of the output folder (``predictions.csv``, ``masks/``, ...) that is a symbolic link is refused
with :class:`UnsafeOutputError` naming it: writing through it would truncate whatever it points to, a
file mtl-hf did not create. The temporary file is created exclusively (``O_EXCL``) beside its final
name and renamed over it (``os.replace`` replaces a name, never follows it), so an interrupted write
leaves the previous file whole and no partial one under the final name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import MtlHfError


class UnsafeOutputError(MtlHfError, ValueError):
    """An output path is a symbolic link (or not what it should be); the message names it.

    Attributes:
        path: The refused path.
    """

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        super().__init__(f"{os.fspath(path)}: {message}")
        self.path = os.fspath(path)


def refuse_link(path: Path) -> None:
    """Raise :class:`UnsafeOutputError` when ``path`` is a symbolic link."""
    if path.is_symlink():
        raise UnsafeOutputError(
            path,
            f"is a symbolic link (to {os.readlink(path)}); output files are only written as files of "
            "their own, never through a link: remove it or choose another output folder",
        )


def check_output_folder(root: Path) -> None:
    """Raise :class:`UnsafeOutputError` when ``root``, or a folder above it, is a file: the output
    folder could not be made there (checked before any work, so that none is lost)."""
    for level in (root, *root.parents):
        if level.exists() and not level.is_dir():
            raise UnsafeOutputError(level, "is a file, not a folder: choose another output folder")


def output_subfolder(root: Path, *parts: str) -> Path:
    """``root / parts...``, created, each level below ``root`` checked not to be a symbolic link.

    Raises:
        UnsafeOutputError: ``root`` (or a level above it) is a file, or a level below it a symbolic link.
    """
    folder = root
    check_output_folder(root)
    root.mkdir(parents=True, exist_ok=True)
    for part in parts:
        folder = folder / part
        refuse_link(folder)
        folder.mkdir(exist_ok=True)
    return folder


def write_replacing(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a fresh temporary file beside ``path`` (same suffix), then rename it over
    ``path``; on any error the temporary file is removed and ``path`` is untouched.

    Raises:
        UnsafeOutputError: ``path`` is a symbolic link.
    """
    refuse_link(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{os.getpid()}-", suffix=f"-{path.name}")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_replacing(path: Path, text: str) -> Path:
    """:func:`write_replacing` for text."""
    return write_replacing(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
