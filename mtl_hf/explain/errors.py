"""What ``explain`` refuses before drawing anything: options it cannot honour, and what the models or
data cannot give."""

from __future__ import annotations

from ..errors import UsageError


class ExplainError(UsageError, ValueError):
    """An option out of range (images drawn, batch size, attention mass, bootstrap resamples or
    confidence), a masked-image-modeling task none of the models has, or a data set without an image to
    explain; the message names the option or task and the value."""
