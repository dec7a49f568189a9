"""The base of every error mtl-hf raises on purpose.

Each error class keeps its own module (``OptionsError`` in :mod:`mtl_hf.options`, ``DataError`` in
:mod:`mtl_hf.data.errors`, ...) and derives from :class:`MtlHfError`, usually together with the built-in
it always was (``ValueError``, ``OSError``, ``RuntimeError``), so ``except ValueError`` still catches
it. An optional package that cannot be imported is a :class:`~mtl_hf.extras.MissingExtraError`, an
``ImportError`` whose message gives the ``pip install "mtl-hf[EXTRA]"`` line. ``mtl-hf`` catches :class:`MtlHfError` once for
every command and prints its message on one line instead of a traceback; an exception of any other
class is a bug and keeps its traceback.

Exit codes of ``mtl-hf``: ``0`` success, ``1`` an :class:`MtlHfError` (a file, run folder, checkpoint
or training problem named in the message, or a missing optional package), ``2`` a :class:`UsageError`
(the command line or a configuration value is wrong; argparse's own usage errors exit with 2 too).
"""

from __future__ import annotations

from typing import ClassVar


class MtlHfError(Exception):
    """An error mtl-hf raises on purpose; its message names the file, key or value at fault."""

    exit_code: ClassVar[int] = 1
    """What ``mtl-hf`` exits with when this error stops a command."""


class UsageError(MtlHfError):
    """The command line or a configuration value is wrong: fix the invocation and run again."""

    exit_code: ClassVar[int] = 2


__all__ = ["MtlHfError", "UsageError"]
