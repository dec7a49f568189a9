"""Configuration of :class:`~mtl_hf.MTLModel`: a backbone config, the tasks and the loss weighting."""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .heads import HEADS
from .options import OptionsError, to_dict
from .registry import UnknownNameError
from .weighting import WEIGHTERS

# DINO ViT-S/16 (Caron et al. 2021; ``facebook/dino-vits16``), the paper's backbone.
DINO_VIT_S16: dict[str, Any] = {
    "hidden_size": 384,
    "num_hidden_layers": 12,
    "num_attention_heads": 6,
    "intermediate_size": 1536,
    "image_size": 224,
    "patch_size": 16,
    "encoder_stride": 16,
    "num_channels": 3,
    "qkv_bias": True,
    "layer_norm_eps": 1e-6,
}

DEFAULT_TASKS: dict[str, dict[str, Any]] = {
    "classification": {"type": "binary_classification"},
    "mim": {"type": "mim"},
}

SUPPORTED_BACKBONES = ("vit", "dinov2", "dinov2_with_registers")

ViewLayout = Literal["two_pass", "concat"]


class MTLConfig(PreTrainedConfig):
    r"""Configuration of a multi-task model: one backbone shared by named task heads.

    ``MTLConfig()`` describes the paper's setup: a DINO ViT-S/16 backbone at 224 px, a binary
    classification task ``"classification"`` and a SimMIM task ``"mim"``, fixed weights of 1.

    Args:
        backbone_config (`PreTrainedConfig` or `dict`, *optional*, defaults to DINO ViT-S/16):
            The shared encoder: a transformers config, or a dict with its ``model_type``. Supported:
            ``"vit"`` (DINO v1 checkpoints are ViT checkpoints), ``"dinov2"``, ``"dinov2_with_registers"``.
        tasks (`dict[str, dict]`, *optional*, defaults to ``{"classification": binary, "mim": mim}``):
            ``{task_name: {"type": head_type, **head_options}}``. Task names are yours; the head types
            come from :data:`mtl_hf.heads.HEADS` (built in: ``binary_classification``,
            ``multiclass_classification``, ``multilabel_classification``, ``mim``; more from plugins).
            Unknown option keys or mistyped values raise ``OptionsError`` (a ``ValueError``) naming ``tasks.<name>.<key>``.
            The stored value has every option filled in with its default.
        weighting (`dict`, *optional*, defaults to ``{"type": "fixed"}``):
            ``{"type": weighter_type, **options}``, from :data:`mtl_hf.weighting.WEIGHTERS`.
            ``fixed`` takes ``weights: {task_name: lambda}`` (missing tasks get 1.0).
        view_layout (`str`, *optional*, defaults to ``"two_pass"``):
            How the clean view (classification) and the masked view (MIM) go through the backbone when
            both are needed: ``"two_pass"``, one backbone call per view, or ``"concat"``, one call on
            both views concatenated along the batch. Results are the same; speed and memory differ by
            device (``benchmarks/`` measures them).
        head_sources (`dict[str, str]`, *optional*):
            Filled in automatically: ``{head_type: "distribution version"}`` for heads that come from
            plugins, so a model loaded without its plugin can say which package to install.
        weighter_source (`str`, *optional*):
            Filled in automatically: ``"distribution version"`` when the weighter comes from a plugin.
        task_order (`list[str]`, *optional*):
            Filled in automatically: the order of ``tasks`` (kept across ``save_pretrained``).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated normal initialisation of head weights.
    """

    model_type = "mtl_vit"
    # transformers.Trainer gathers every other output as predictions; evaluation needs the logits only.
    keys_to_ignore_at_inference = [  # noqa: RUF012
        "task_losses",
        "task_weights",
        "reconstructions",
        "bool_masked_pos",
        "last_hidden_state",
        "hidden_states",
        "attentions",
    ]
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="vit", init_kwargs=DINO_VIT_S16),
    }

    backbone_config: dict | PreTrainedConfig | None = None
    tasks: dict | None = None
    weighting: dict | None = None
    view_layout: str = "two_pass"
    head_sources: dict | None = None
    weighter_source: str | None = None
    task_order: list | None = None
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs: Any) -> None:
        if isinstance(self.backbone_config, dict):
            model_type = self.backbone_config.get("model_type")
            if model_type is None:
                raise OptionsError(
                    "backbone_config: a dict needs a 'model_type' key, one of "
                    + ", ".join(SUPPORTED_BACKBONES)
                )
        super().__post_init__(**kwargs)
        backbone_type = getattr(self.backbone_config, "model_type", None)
        if backbone_type not in SUPPORTED_BACKBONES:
            raise OptionsError(
                f"backbone_config: model_type {backbone_type!r} is not supported; use one of "
                + ", ".join(SUPPORTED_BACKBONES)
            )
        if self.view_layout not in ("two_pass", "concat"):
            raise OptionsError(f"view_layout: must be 'two_pass' or 'concat', got {self.view_layout!r}")
        self.tasks = self._resolve_tasks(DEFAULT_TASKS if self.tasks is None else self.tasks)
        # config.json is written with sorted keys: the recorded order keeps heads and outputs in the
        # order the user gave.
        if self.task_order is not None and sorted(self.task_order) == sorted(self.tasks):
            self.tasks = {name: self.tasks[name] for name in self.task_order}
        self.task_order = list(self.tasks)
        self.weighting = self._resolve_weighting(
            {"type": "fixed"} if self.weighting is None else self.weighting
        )

    # -- validation ------------------------------------------------------------------------------
    def _resolve_tasks(self, tasks: Any) -> dict[str, dict[str, Any]]:
        if not isinstance(tasks, dict) or not tasks:
            raise OptionsError(f"tasks: expected a non-empty mapping of task name -> options, got {tasks!r}")
        recorded = dict(self.head_sources or {})
        resolved: dict[str, dict[str, Any]] = {}
        for name, spec in tasks.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise OptionsError(
                    f"tasks: task name {name!r} must be a Python identifier (letters, digits, _)"
                )
            if not isinstance(spec, dict) or "type" not in spec:
                raise OptionsError(f"tasks.{name}: expected a mapping with a 'type' key, got {spec!r}")
            spec = copy.deepcopy(spec)
            head_type = spec.pop("type")
            try:
                head_cls = HEADS.get(head_type)
            except UnknownNameError as exc:
                hint = (
                    f" It was provided by {recorded[head_type]!r}: install that distribution."
                    if head_type in recorded
                    else ""
                )
                raise OptionsError(f"tasks.{name}.type: {exc}{hint}") from None
            options = head_cls.parse_options(name, spec)
            resolved[name] = {"type": head_type, **to_dict(options)}
            source = HEADS.source_of(head_type)
            if source.distribution is not None:
                recorded[head_type] = f"{source.distribution} {source.version}"
        self.head_sources = recorded or None
        return resolved

    def _resolve_weighting(self, weighting: Any) -> dict[str, Any]:
        if not isinstance(weighting, dict) or "type" not in weighting:
            raise OptionsError(f"weighting: expected a mapping with a 'type' key, got {weighting!r}")
        spec = copy.deepcopy(weighting)
        kind = spec.pop("type")
        try:
            weighter_cls = WEIGHTERS.get(kind)
        except UnknownNameError as exc:
            recorded = self.weighter_source
            hint = f" It was provided by {recorded!r}: install that distribution." if recorded else ""
            raise OptionsError(f"weighting.type: {exc}{hint}") from None
        options = weighter_cls.parse_options(spec, list(self.tasks or {}))
        source = WEIGHTERS.source_of(kind)
        if source.distribution is not None:
            self.weighter_source = f"{source.distribution} {source.version}"
        return {"type": kind, **to_dict(options)}

    # -- conveniences ----------------------------------------------------------------------------
    @property
    def task_names(self) -> list[str]:
        return list(self.tasks or {})

    def tasks_of_type(self, *head_types: str) -> list[str]:
        """Names of the tasks whose head type is one of ``head_types``."""
        return [n for n, spec in (self.tasks or {}).items() if spec["type"] in head_types]
