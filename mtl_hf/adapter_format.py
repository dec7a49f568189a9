"""The files of a LoRA adapter folder and how its weights go onto a model built on the base backbone.

:mod:`mtl_hf.lora_adapter` writes such a folder (``save_adapter``); :meth:`mtl_hf.MTLModel.from_adapter`
reads one. This module holds what both need and never imports the model, so that the model can load
an adapter folder (``from_pretrained`` on one) without the two importing each other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import MtlHfError
from .lora import LORA_MARK, TRAINABLE_BACKBONE, _peft, freeze_base

if TYPE_CHECKING:
    from torch import nn

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
"""peft's file names (``PeftModel.save_pretrained``)."""
HEADS_WEIGHTS = "heads.safetensors"
PEFT_PREFIX = "base_model.model."
"""What ``PeftModel`` puts before a wrapped model's parameter names in its adapter files."""
ADAPTER_FILES = ("config.json", ADAPTER_CONFIG, ADAPTER_WEIGHTS, HEADS_WEIGHTS)


class AdapterError(MtlHfError, ValueError):
    """An adapter cannot be saved (no LoRA, no named base) or loaded (files or weights that do not fit)."""


def is_adapter_folder(path: str | os.PathLike[str]) -> bool:
    """A local folder written by ``save_adapter`` (an adapter, no full weights)."""
    folder = Path(path)
    return (folder / ADAPTER_CONFIG).is_file() and not (folder / "model.safetensors").exists()


def trained_outside_adapter(key: str) -> bool:
    """Heads, weighter and the backbone's new parameters (mask token): what is not the frozen base."""
    return not key.startswith("backbone.") or (LORA_MARK not in key and key.endswith(TRAINABLE_BACKBONE))


def adapter_folder(source: str | os.PathLike[str], hub_kwargs: dict[str, Any]) -> Path:
    """The local folder of an adapter: ``source`` itself, or its Hub repository's files downloaded into
    the Hub cache; every file of :data:`ADAPTER_FILES` must be there."""
    folder = Path(source)
    if not folder.is_dir():
        folder = _download(str(source), hub_kwargs)
    missing = [name for name in ADAPTER_FILES if not (folder / name).is_file()]
    if missing:
        raise AdapterError(f"{source}: not an adapter folder, missing {', '.join(missing)}")
    return folder


def base_of(folder: Path, base_model: str | None) -> str:
    """The base backbone to load the adapter onto: ``base_model``, else the one the adapter names."""
    named = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    base = base_model or named
    if not base:
        raise AdapterError(f"{folder / ADAPTER_CONFIG}: names no base_model_name_or_path; pass base_model=")
    return str(base)


def apply_adapter(model: nn.Module, folder: Path, *, fresh_weighter: bool) -> None:
    """Load the adapter and the heads of ``folder`` onto ``model`` (built on the base with the folder's
    config, LoRA included), then freeze the base. ``fresh_weighter``: the model's weighter replaces the
    saved one, whose state is left aside.

    Raises:
        AdapterError: weights that do not fit the model, naming the keys.
    """
    from safetensors.torch import load_file

    peft = _peft()
    backbone: Any = model.backbone
    adapter = load_file(folder / ADAPTER_WEIGHTS)
    if not all(k.startswith(PEFT_PREFIX) for k in adapter):
        raise AdapterError(
            f"{folder / ADAPTER_WEIGHTS}: keys do not start with {PEFT_PREFIX!r} (not peft's format)"
        )
    loaded = peft.set_peft_model_state_dict(backbone, {k[len(PEFT_PREFIX) :]: v for k, v in adapter.items()})
    unexpected = list(getattr(loaded, "unexpected_keys", []))
    adapter_keys = {k for k in backbone.state_dict() if LORA_MARK in k}
    absent = sorted(k for k in getattr(loaded, "missing_keys", []) if k in adapter_keys)
    if unexpected or absent:
        raise AdapterError(
            f"{folder / ADAPTER_WEIGHTS}: does not fit the model: unexpected {unexpected}, missing {absent}"
        )
    heads = load_file(folder / HEADS_WEIGHTS)
    if fresh_weighter:  # another weighter: the saved one's state does not apply
        heads = {k: v for k, v in heads.items() if not k.startswith("weighter.")}
    result = model.load_state_dict(heads, strict=False)
    fresh = ("weighter.",) if fresh_weighter else ()  # a replaced weighter starts afresh
    absent = sorted(k for k in result.missing_keys if trained_outside_adapter(k) and not k.startswith(fresh))
    if result.unexpected_keys or absent:
        raise AdapterError(
            f"{folder / HEADS_WEIGHTS}: does not fit the model: unexpected {result.unexpected_keys}, missing {absent}"
        )
    freeze_base(backbone)


def _download(repo_id: str, hub_kwargs: dict[str, Any]) -> Path:
    """The adapter files of a Hub repository, downloaded into the Hub cache; their folder."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    from .hub_tokens import hub_errors_redacted

    paths = []
    with hub_errors_redacted(hub_kwargs.get("token")):
        for name in ADAPTER_FILES:
            try:
                paths.append(Path(hf_hub_download(repo_id, name, **hub_kwargs)))
            except EntryNotFoundError as exc:
                raise AdapterError(f"{repo_id}: not an adapter repository, no {name}") from exc
    return paths[0].parent
