"""The adapter-only form of a LoRA model: the trained weights without the frozen base they sit on.

A LoRA model's ``save_pretrained`` folder holds the whole model (the frozen backbone too).
:func:`save_adapter` writes only what training changed, plus what rebuilds the rest::

    config.json                 the MTLConfig (tasks, weighting, lora, backbone shape)
    adapter_config.json         peft's LoraConfig, ``base_model_name_or_path`` naming the base backbone
    adapter_model.safetensors   the backbone's LoRA weights, in peft's own format: peft's
                                ``PeftModel.from_pretrained(base_backbone, folder)`` loads them too
    heads.safetensors           the task heads, the weighter and the backbone's mask token
    preprocessor_config.json    the image processor, when given

:func:`load_adapter` (and ``MTLModel.from_pretrained`` / ``AutoModel.from_pretrained`` on such a local
folder) loads the base backbone named in ``adapter_config.json`` (a Hub id or a folder) with
:meth:`~mtl_hf.MTLModel.from_backbone`, then the adapter and the heads onto it: the same outputs as the
model that was saved. ``mtl-hf push`` shares such a folder, and its model card says it is an adapter
and names the base. For a Hub repository, call :func:`load_adapter` with the repository id.

Needs ``pip install 'mtl-hf[lora]'`` (peft).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import MtlHfError
from .lora import LORA_MARK, TRAINABLE_BACKBONE, _peft, freeze_base

if TYPE_CHECKING:
    from .modeling_mtl import MTLModel

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
    """A local folder written by :func:`save_adapter` (an adapter, no full weights)."""
    folder = Path(path)
    return (folder / ADAPTER_CONFIG).is_file() and not (folder / "model.safetensors").exists()


def save_adapter(
    model: MTLModel,
    directory: str | os.PathLike[str],
    *,
    base_model: str | None = None,
    processor: Any = None,
) -> Path:
    """Write ``model``'s adapter-only folder (module docstring) to ``directory``, atomically: it appears
    complete or not at all (an existing folder is replaced only once the new one is written).

    Args:
        base_model: The base backbone (Hub id or folder) the adapter loads onto; default: the one the
            model was built from (``MTLModel.from_backbone`` records it).
        processor: An image processor to save with it.

    Raises:
        AdapterError: the model has no LoRA adapter, or no base backbone is known.
    """
    from safetensors.torch import save_file

    peft = _peft()
    if not getattr(model.config, "lora", None):
        raise AdapterError(
            "the model has no LoRA adapter (config.lora is empty); save it with save_pretrained"
        )
    base = base_model or getattr(model.config.backbone_config, "_name_or_path", "") or None
    if base is None:
        raise AdapterError(
            "no base backbone is known: an adapter needs the pretrained backbone it was trained on "
            "(build the model with MTLModel.from_backbone, or pass base_model=)"
        )
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        model.config.save_pretrained(staging)
        lora_config = copy.deepcopy(model.backbone.peft_config["default"])
        lora_config.base_model_name_or_path = str(base)
        lora_config.inference_mode = True
        lora_config.save_pretrained(str(staging))
        adapter = peft.get_peft_model_state_dict(model.backbone)
        save_file(
            {PEFT_PREFIX + k: v.detach().contiguous() for k, v in adapter.items()},
            staging / ADAPTER_WEIGHTS,
            metadata={"format": "pt"},
        )
        save_file(
            {
                k: v.detach().contiguous()
                for k, v in model.state_dict().items()
                if _trained_outside_adapter(k)
            },
            staging / HEADS_WEIGHTS,
            metadata={"format": "pt"},
        )
        if processor is not None:
            processor.save_pretrained(staging)
        if target.exists():
            aside = target.parent / f".old-{target.name}-{os.getpid()}"
            os.replace(target, aside)
            os.replace(staging, target)
            shutil.rmtree(aside)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _trained_outside_adapter(key: str) -> bool:
    """Heads, weighter and the backbone's new parameters (mask token): what is not the frozen base."""
    return not key.startswith("backbone.") or (LORA_MARK not in key and key.endswith(TRAINABLE_BACKBONE))


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


def load_adapter(
    source: str | os.PathLike[str],
    *,
    base_model: str | None = None,
    weighting: dict[str, Any] | None = None,
    **hub_kwargs: Any,
) -> MTLModel:
    """The model of an adapter folder (or Hub repository): its base backbone, then the adapter and heads.

    Args:
        source: A folder written by :func:`save_adapter`, or a Hub repository holding one.
        base_model: Load onto this backbone (Hub id or folder) instead of the one the adapter names.
        weighting: A weighting to use instead of the saved one (it only matters for more training).
        **hub_kwargs: ``revision``, ``token``, ``cache_dir``, ``local_files_only`` for the Hub.

    Raises:
        AdapterError: a file is missing, or the weights do not fit the base (naming the keys).
    """
    from safetensors.torch import load_file

    from .configuration_mtl import MTLConfig
    from .modeling_mtl import MTLModel

    peft = _peft()
    folder = Path(source)
    if not folder.is_dir():
        folder = _download(str(source), hub_kwargs)
    missing = [name for name in ADAPTER_FILES if not (folder / name).is_file()]
    if missing:
        raise AdapterError(f"{source}: not an adapter folder, missing {', '.join(missing)}")
    config = MTLConfig.from_pretrained(folder)
    named = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    base = base_model or named
    if not base:
        raise AdapterError(f"{folder / ADAPTER_CONFIG}: names no base_model_name_or_path; pass base_model=")
    model = MTLModel.from_backbone(
        str(base),
        tasks=config.tasks,
        weighting=weighting if weighting is not None else config.weighting,
        view_layout=config.view_layout,
        lora=config.lora,
        num_channels=getattr(config.backbone_config, "num_channels", None),
    )
    adapter = load_file(folder / ADAPTER_WEIGHTS)
    if not all(k.startswith(PEFT_PREFIX) for k in adapter):
        raise AdapterError(
            f"{folder / ADAPTER_WEIGHTS}: keys do not start with {PEFT_PREFIX!r} (not peft's format)"
        )
    loaded = peft.set_peft_model_state_dict(
        model.backbone, {k[len(PEFT_PREFIX) :]: v for k, v in adapter.items()}
    )
    unexpected = list(getattr(loaded, "unexpected_keys", []))
    adapter_keys = {k for k in model.backbone.state_dict() if LORA_MARK in k}
    absent = sorted(k for k in getattr(loaded, "missing_keys", []) if k in adapter_keys)
    if unexpected or absent:
        raise AdapterError(
            f"{folder / ADAPTER_WEIGHTS}: does not fit the model: unexpected {unexpected}, missing {absent}"
        )
    heads = load_file(folder / HEADS_WEIGHTS)
    if weighting is not None:  # another weighter: the saved one's state does not apply
        heads = {k: v for k, v in heads.items() if not k.startswith("weighter.")}
    result = model.load_state_dict(heads, strict=False)
    fresh = ("weighter.",) if weighting is not None else ()  # a replaced weighter starts afresh
    absent = sorted(k for k in result.missing_keys if _trained_outside_adapter(k) and not k.startswith(fresh))
    if result.unexpected_keys or absent:
        raise AdapterError(
            f"{folder / HEADS_WEIGHTS}: does not fit the model: unexpected {result.unexpected_keys}, missing {absent}"
        )
    freeze_base(model.backbone)
    return model.eval()
