"""Errors and warnings for bad input files, and the record of a file skipped with ``skip_bad``."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from ..errors import MtlHfError


class DataError(MtlHfError, ValueError):
    """An input file or manifest row cannot be used; the message names the file (and row or key).

    Raised for truncated or unreadable files, a volume whose shape differs from its segmentation, a
    4-D volume where 3-D is expected, a missing modality or segmentation, NaN or inf voxels, a label
    outside the declared set. With ``skip_bad=True`` in the data config the file is skipped instead,
    with a :class:`DataWarning`, and listed in the build summary.

    Attributes:
        path: The offending file (or the manifest), as given.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.reason = message

    def __reduce__(self) -> tuple[type[DataError], tuple[str, str]]:
        # Rebuilt from its two arguments when it crosses a process boundary (parallel cache builds).
        return type(self), (self.path, self.reason)


class CacheWriteError(MtlHfError, OSError):
    """Writing the Arrow cache failed (full disk, quota, permissions, a failing file system).

    The message names the cache folder, the cause and the free space left. ``datasets`` writes into an
    ``.incomplete`` folder and renames it only when done, so no partial cache is left under the
    cache's name, and a cache built earlier (another fingerprint) is untouched.

    Attributes:
        cache_dir: The cache folder, as given.
    """

    def __init__(self, cache_dir: str, message: str, code: int | None = None) -> None:
        super().__init__(code or 0, f"{cache_dir}: {message}")
        self.cache_dir = cache_dir


class DataWarning(UserWarning):
    """A file was skipped (``skip_bad=True``) or a data-set property is doubtful (e.g. no patient ids)."""


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of a build because it was bad (``skip_bad=True``)."""

    path: str
    reason: str


def skip(error: DataError) -> SkippedFile:
    """Warn about ``error`` and return its :class:`SkippedFile` record."""
    warnings.warn(f"skipped {error}", DataWarning, stacklevel=3)
    return SkippedFile(path=error.path, reason=error.reason)
