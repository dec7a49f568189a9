"""Load a trained model and its image processor from a folder, a training run or a Hub id."""

from __future__ import annotations

import logging
import os
from typing import Any

from transformers import AutoImageProcessor, AutoModel

from ..errors import MtlHfError
from ..hub_tokens import hub_errors_redacted, known_tokens, redact
from ..image_processing_mtl import MTLImageProcessor
from ..modeling_mtl import MTLModel
from ..run_folder import RunFolder
from ..security import check_weights_source
from .errors import ModelNotFoundError, NotAnMtlModelError

logger = logging.getLogger(__name__)

HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only")


def resolve_model_path(name_or_path: str | os.PathLike[str]) -> str:
    """``name_or_path`` itself, or its ``best_model/`` folder when it is a training run's output folder."""
    return RunFolder.model_folder(name_or_path)


def model_display_name(name_or_path: str | os.PathLike[str]) -> str:
    """A short name for tables and figures: the run folder's name for ``run/best_model``, else the last
    path component (or the Hub id)."""
    return RunFolder.display_name(name_or_path)


def load_model_and_processor(
    model: str | os.PathLike[str] | MTLModel,
    image_processor: MTLImageProcessor | None = None,
    *,
    allow_pickle: bool = False,
    **hub_kwargs: Any,
) -> tuple[MTLModel, MTLImageProcessor]:
    """The model (``AutoModel.from_pretrained``) and its processor (``AutoImageProcessor.from_pretrained``).

    Args:
        model: A loaded :class:`~mtl_hf.MTLModel`, a ``save_pretrained`` folder, a training run's output
            folder (its ``best_model/`` is used) or a Hub id.
        image_processor: Use this processor instead of loading one. A folder without
            ``preprocessor_config.json`` gets a default processor for the backbone's image size and
            channels (with a warning), as does a loaded model passed without one.
        allow_pickle: Accept a folder whose weights are a pickle (``pytorch_model.bin``); refused by
            default because unpickling can run code (see :mod:`mtl_hf.security`).
        **hub_kwargs: ``revision``, ``cache_dir``, ``token``, ``local_files_only``.

    Raises:
        mtl_hf.security.UnsafeCheckpointError: the folder holds only pickle weights.
        mtl_hf.inference.errors.NotAnMtlModelError: the folder or Hub id holds a model of another kind.
        mtl_hf.inference.errors.ModelNotFoundError: ``model`` is neither a folder nor found on the Hub.
    """
    unknown = set(hub_kwargs) - set(HUB_KWARGS)
    if unknown:
        raise TypeError(
            f"unexpected argument(s) {', '.join(sorted(unknown))}; allowed: {', '.join(HUB_KWARGS)}"
        )
    with hub_errors_redacted(hub_kwargs.get("token")):  # no access token in any error or warning
        if isinstance(model, MTLModel):
            loaded = model
            source = None
        else:
            source = resolve_model_path(model)
            safety = {"allow_pickle": True} if allow_pickle else {"use_safetensors": True}
            try:
                # checked before transformers picks a class: a plain ViT folder or repository too
                check_weights_source(source, allow_pickle=allow_pickle, **hub_kwargs)
                loaded_any = AutoModel.from_pretrained(source, **safety, **hub_kwargs)
            except OSError as err:
                if isinstance(err, MtlHfError) or os.path.exists(source):
                    raise  # names the file it could not use
                raise ModelNotFoundError(
                    f"{source}: not a folder here, and the Hub did not give it: {err}"
                ) from err
            if not isinstance(loaded_any, MTLModel):
                raise NotAnMtlModelError(
                    f"{source}: expected an mtl-hf model (model_type 'mtl_vit'), got {type(loaded_any).__name__}"
                )
            loaded = loaded_any
        if image_processor is None and source is not None:
            try:
                image_processor = AutoImageProcessor.from_pretrained(source, **hub_kwargs)
            except (OSError, ValueError) as err:
                reason = redact(str(err), known_tokens(hub_kwargs.get("token")))
                logger.warning(
                    "%s: no image processor found (%s); using defaults for the backbone", source, reason
                )
    if image_processor is None:
        image_processor = MTLImageProcessor.for_backbone(loaded.config.backbone_config)
    if not isinstance(image_processor, MTLImageProcessor):
        raise TypeError(f"expected an MTLImageProcessor, got {type(image_processor).__name__}")
    return loaded, image_processor
