"""LoRA on the backbone (Hu et al. 2021, through ``peft``): small low-rank updates of chosen backbone
layers train, the pretrained backbone weights stay frozen, and every task head trains fully.

``MTLConfig(lora={"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]})``
(``model.lora`` in a training YAML) makes :class:`~mtl_hf.MTLModel` inject LoRA layers
(``peft.inject_adapter_in_model``) into the backbone's linear layers whose names end with one of
``target_modules`` (ViT and DINOv2 names in transformers 5: ``q_proj``, ``k_proj``, ``v_proj``,
``o_proj``, ``mlp.fc1``, ``mlp.fc2``; the default adapts the queries and values, as the LoRA paper). A LoRA layer computes ``W x + (alpha / r) B A x`` with ``A``
``(r, in)`` random and ``B`` ``(out, r)`` zero at the start, so a fresh adapter leaves the backbone's
outputs unchanged. The backbone's other parameters are frozen except its mask token (new, and needed
by masked image modeling).

Saving and loading: ``save_pretrained`` writes ``config.json`` (with ``lora``) and one safetensors file
holding the frozen base weights (as ``...base_layer.weight``), the adapter (``...lora_A`` /
``...lora_B``) and the heads; ``from_pretrained`` / ``AutoModel`` rebuild the same layers and load it
back exactly. :func:`merged_model` returns a plain model with each ``W + (alpha / r) B A`` folded into
``W`` (no ``lora`` in its config, no peft needed to load it): save that for deployment (``mtl-hf
export``, ``mtl-hf app``). :func:`adapter_state_dict` is the adapter alone.

Needs ``pip install 'mtl-hf[lora]'`` (peft).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .extras import import_extra

LORA_MARK = "lora_"
"""Every adapter parameter's name holds it (``lora_A``, ``lora_B``)."""
TRAINABLE_BACKBONE = ("mask_token",)
"""Backbone parameters that stay trainable under LoRA: the mask token is new (no pretrained value)."""


@dataclass
class LoraOptions:
    """LoRA hyperparameters (``model.lora``).

    Attributes:
        r: Rank of the update.
        alpha: Scale numerator: the update is multiplied by ``alpha / r``.
        dropout: Dropout on the adapter's input.
        target_modules: Suffixes of the backbone's linear layer names that get an adapter.
    """

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"lora.r: must be a positive integer, got {self.r!r}")
        if not self.alpha > 0:
            raise ValueError(f"lora.alpha: must be positive, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout: must be in [0, 1), got {self.dropout!r}")
        if not self.target_modules or not all(isinstance(m, str) and m for m in self.target_modules):
            raise ValueError(
                f"lora.target_modules: a non-empty list of layer names, got {self.target_modules!r}"
            )


def parse_lora(raw: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``model.lora`` checked and filled with defaults (errors name ``lora.<key>``), or ``None``."""
    if raw is None:
        return None
    from .options import from_dict

    return asdict(from_dict(LoraOptions, dict(raw), "lora"))


def _peft() -> Any:
    return import_extra("peft", feature="LoRA", extra="lora")


def apply_lora(backbone: nn.Module, lora: Mapping[str, Any]) -> nn.Module:
    """Inject LoRA layers into ``backbone`` in place and freeze its other parameters (module docstring).

    Raises:
        mtl_hf.options.OptionsError: if no layer of the backbone matches ``target_modules``.
    """
    peft = _peft()
    options = LoraOptions(**lora)
    names = [n for n, m in backbone.named_modules() if isinstance(m, nn.Linear)]
    if not any(n == t or n.endswith(f".{t}") for n in names for t in options.target_modules):
        from .options import OptionsError

        examples = sorted({".".join(n.split(".")[-2:]) for n in names})[:8]
        raise OptionsError(
            f"lora.target_modules: no linear layer of the backbone matches {options.target_modules}; "
            f"layer names end like {', '.join(examples)}"
        )
    config = peft.LoraConfig(
        r=options.r,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=list(options.target_modules),
        bias="none",
    )
    peft.inject_adapter_in_model(config, backbone)
    freeze_base(backbone)
    return backbone


def freeze_base(backbone: nn.Module) -> None:
    """Only the adapters and :data:`TRAINABLE_BACKBONE` of a LoRA backbone train. Called when the
    adapters are injected and again after ``from_pretrained``, whose loading resets the flags."""
    for name, param in backbone.named_parameters():
        param.requires_grad = LORA_MARK in name or name.endswith(TRAINABLE_BACKBONE)


def base_weight_names(backbone: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A plain backbone's ``state_dict`` renamed for ``backbone`` with LoRA layers: a wrapped layer's
    ``X.weight`` and ``X.bias`` become ``X.base_layer.weight`` and ``X.base_layer.bias``."""
    own = set(backbone.state_dict())
    renamed = {}
    for key, value in state_dict.items():
        prefix, _, leaf = key.rpartition(".")
        wrapped = f"{prefix}.base_layer.{leaf}"
        renamed[wrapped if key not in own and wrapped in own else key] = value
    return renamed


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's parameters alone (``{name: tensor}``, names as in the model's ``state_dict``)."""
    return {k: v for k, v in model.state_dict().items() if LORA_MARK in k}


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts of ``model``."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


@torch.no_grad()
def merged_model(model: Any) -> Any:
    """A copy of an :class:`~mtl_hf.MTLModel` with LoRA whose adapters are folded into the backbone's
    weights: a plain model (config without ``lora``) with the same outputs in eval mode."""
    peft = _peft()
    if not getattr(model.config, "lora", None):
        raise ValueError("the model has no LoRA adapter to merge (config.lora is empty)")
    state: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if isinstance(module, peft.tuners.lora.LoraLayer):
            base = module.get_base_layer()
            state[f"{name}.weight"] = base.weight + module.get_delta_weight("default").to(base.weight.dtype)
            if base.bias is not None:
                state[f"{name}.bias"] = base.bias.clone()
    for key, value in model.state_dict().items():
        if LORA_MARK in key or ".base_layer." in key:
            continue
        state[key] = value
    config = copy.deepcopy(model.config)
    config.lora = None
    merged = type(model)(config)
    missing, unexpected = merged.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"merging LoRA: missing {missing}, unexpected {unexpected}")
    return merged.to(model.dtype).train(model.training)
