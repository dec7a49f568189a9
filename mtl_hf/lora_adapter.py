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
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .adapter_format import (
    ADAPTER_CONFIG,
    ADAPTER_FILES,
    ADAPTER_WEIGHTS,
    HEADS_WEIGHTS,
    PEFT_PREFIX,
    AdapterError,
    is_adapter_folder,
    trained_outside_adapter,
)
from .lora import _peft

if TYPE_CHECKING:
    from .modeling_mtl import MTLModel

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_FILES",
    "ADAPTER_WEIGHTS",
    "HEADS_WEIGHTS",
    "PEFT_PREFIX",
    "AdapterError",
    "is_adapter_folder",
    "load_adapter",
    "save_adapter",
]


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
            {k: v.detach().contiguous() for k, v in model.state_dict().items() if trained_outside_adapter(k)},
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


def load_adapter(
    source: str | os.PathLike[str],
    *,
    base_model: str | None = None,
    weighting: dict[str, Any] | None = None,
    **hub_kwargs: Any,
) -> MTLModel:
    """The model of an adapter folder (or Hub repository): its base backbone, then the adapter and heads.

    The same as :meth:`mtl_hf.MTLModel.from_adapter` (see there for the arguments).

    Raises:
        AdapterError: a file is missing, or the weights do not fit the base (naming the keys).
    """
    from .modeling_mtl import MTLModel

    return MTLModel.from_adapter(source, base_model=base_model, weighting=weighting, **hub_kwargs)
