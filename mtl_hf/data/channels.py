"""How many input channels a data source gives a model, read from a run's ``data:`` section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..options import OptionsError, from_dict
from .config import DataConfig


def data_channels(data: Mapping[str, Any]) -> int | None:
    """The model channels a ``data:`` section needs (4 for four BraTS modalities, one per CT window),
    or ``None`` when the backbone's own channel count serves (one grey channel, 2-D image sets)."""
    if not data:
        return None
    return from_dict(DataConfig, dict(data), "data").model_channels


def with_channels(backbone_config: Mapping[str, Any] | None, channels: int | None) -> dict[str, Any] | None:
    """A fresh backbone's config dict with ``num_channels`` set to ``channels``.

    Raises:
        OptionsError: the config sets a different ``num_channels`` explicitly.
    """
    if channels is None:
        return dict(backbone_config) if backbone_config is not None else None
    if backbone_config is None:
        from ..configuration_mtl import DINO_VIT_S16

        return {"model_type": "vit", **DINO_VIT_S16, "num_channels": channels}
    given = backbone_config.get("num_channels")
    if given is not None and int(given) != channels:
        raise OptionsError(
            f"model.backbone_config.num_channels: {given}, but the data gives {channels} channels; "
            f"remove it (or set model.num_channels: {channels})"
        )
    return {**backbone_config, "num_channels": channels}
