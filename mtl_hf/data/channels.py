"""How many input channels a data source gives a model, read from a run's ``data:`` section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..options import from_dict
from .config import DataConfig


def data_channels(data: Mapping[str, Any]) -> int | None:
    """The model channels a ``data:`` section needs (4 for four BraTS modalities, one per CT window),
    or ``None`` when the backbone's own channel count serves (one grey channel, 2-D image sets)."""
    if not data:
        return None
    return from_dict(DataConfig, dict(data), "data").model_channels
