"""The error a head's output is refused with."""

from __future__ import annotations

from ..errors import MtlHfError


class HeadOutputError(MtlHfError, ValueError):
    """A head returned something the model cannot use, e.g. a loss that is not a 0-dim tensor (a
    per-sample loss, a tensor of shape ``(1,)``, a Python float). The message names the task and the
    head's class."""


__all__ = ["HeadOutputError"]
