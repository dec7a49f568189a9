"""The shared encoder: which transformers models can serve as backbone and how to build or load them.

A backbone must accept ``bool_masked_pos`` (replacing masked patch embeddings by a learnable mask
token, for masked image modeling) and return tokens after its final layer norm. ViT (DINO v1
checkpoints such as ``facebook/dino-vits16`` are ViT checkpoints) and DINOv2 do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import transformers
from transformers import PreTrainedConfig, PreTrainedModel

from .options import OptionsError


@dataclass(frozen=True)
class BackboneKind:
    """How to build one kind of backbone."""

    model_class_name: str
    """The transformers model class, by name: only the backbone a model uses gets imported."""
    init_kwargs: dict[str, Any]
    """Extra constructor arguments: no pooler (heads pool themselves), a mask token for MIM."""

    @property
    def model_class(self) -> type[PreTrainedModel]:
        return getattr(transformers, self.model_class_name)


BACKBONE_KINDS: dict[str, BackboneKind] = {
    "vit": BackboneKind("ViTModel", {"add_pooling_layer": False, "use_mask_token": True}),
    "dinov2": BackboneKind("Dinov2Model", {}),
    "dinov2_with_registers": BackboneKind("Dinov2WithRegistersModel", {}),
}


def backbone_kind(config: PreTrainedConfig) -> BackboneKind:
    try:
        return BACKBONE_KINDS[config.model_type]
    except KeyError:
        raise OptionsError(
            f"backbone model_type {config.model_type!r} is not supported; use one of {', '.join(BACKBONE_KINDS)}"
        ) from None


def build_backbone(config: PreTrainedConfig) -> PreTrainedModel:
    """A freshly initialised backbone for ``config``."""
    kind = backbone_kind(config)
    return kind.model_class(config, **kind.init_kwargs)


def load_backbone(name_or_path: str, config: PreTrainedConfig, **hub_kwargs: Any) -> PreTrainedModel:
    """The pretrained backbone at ``name_or_path`` (Hub id or folder), safetensors weights only: a
    folder or repository whose safetensors index points at a pickle shard, or outside, is refused
    (:func:`mtl_hf.security.check_weights_source`). An error holds no access token
    (:func:`mtl_hf.hub_tokens.hub_errors_redacted`)."""
    from .hub_tokens import hub_errors_redacted
    from .security import check_weights_source

    kind = backbone_kind(config)
    with hub_errors_redacted(hub_kwargs.get("token")):
        check_weights_source(name_or_path, **hub_kwargs)
        return kind.model_class.from_pretrained(
            name_or_path, config=config, use_safetensors=True, **kind.init_kwargs, **hub_kwargs
        )


def num_prefix_tokens(config: PreTrainedConfig) -> int:
    """Tokens before the patch tokens: CLS, plus register tokens for DINOv2 with registers."""
    return 1 + int(getattr(config, "num_register_tokens", 0) or 0)


def patch_size_of(config: PreTrainedConfig) -> int:
    p = config.patch_size
    if isinstance(p, (list, tuple)):
        if p[0] != p[1]:
            raise OptionsError(f"backbone patch_size must be square, got {p}")
        p = p[0]
    return int(p)


def image_size_of(config: PreTrainedConfig) -> tuple[int, int]:
    s = config.image_size
    return (int(s), int(s)) if isinstance(s, int) else (int(s[0]), int(s[1]))


@contextlib.contextmanager
def attention_implementation(model: PreTrainedModel, implementation: str | None) -> Iterator[None]:
    """Temporarily switch ``model``'s attention (e.g. to ``"eager"``, which returns attention maps)."""
    current = model.config._attn_implementation
    if implementation is None or implementation == current:
        yield
        return
    model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        model.set_attn_implementation(current)
