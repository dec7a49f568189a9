"""What ``predict`` (and ``export``, ``explain`` and the app, which load and query models the same way)
refuse before reading any input: a model that cannot be found or is of another kind, or options the
model cannot serve."""

from __future__ import annotations

from ..errors import MtlHfError, UsageError


class ModelNotFoundError(MtlHfError, OSError):
    """A model name is neither a folder here nor a model the Hub (or its local cache) gives; the message
    names it and says what the Hub answered (not found, not reachable, no access)."""


class PredictionError(UsageError, ValueError):
    """The options ask for what the model cannot give: a task it does not have, a task whose head gives
    no predictions, no task to predict at all, or a batch size or ``top_k`` under 1; the message names
    the task or value (and the model's tasks)."""


class NotAnMtlModelError(MtlHfError, TypeError):
    """A model folder or Hub id holds a model of another kind than mtl-hf's (``model_type`` other than
    ``mtl_vit``); the message names it and the class transformers found."""
