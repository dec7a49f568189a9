"""Configuration of :class:`~mtl_hf.MTLModel`: a backbone config, the tasks and the loss weighting."""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .heads import HEADS
from .lora import parse_lora
from .options import OptionsError, to_dict
from .registry import AmbiguousNameError, RegistryLookupError, UnknownNameError
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

FALLBACK_WEIGHTING: dict[str, Any] = {"type": "fixed"}
"""What a saved model loads with when its weighter is not available here (a weighter only trains)."""


class WeighterReplacedWarning(UserWarning):
    """A saved model's weighter is not available (its plugin is not installed, or broken): the model was
    loaded with :data:`FALLBACK_WEIGHTING` instead, which is all inference needs."""


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
            Unknown option keys or mistyped values raise ``OptionsError`` (a ``ValueError``) naming
            ``tasks.<name>.<key>``. Stored as given; :attr:`resolved_tasks` fills in every default.
        weighting (`dict`, *optional*, defaults to ``{"type": "fixed"}``):
            ``{"type": weighter_type, **options}``, from :data:`mtl_hf.weighting.WEIGHTERS`.
            ``fixed`` takes ``weights: {task_name: lambda}`` (missing tasks get 1.0). Stored as given;
            :attr:`resolved_weighting` fills in every default.
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
        lora (`dict`, *optional*):
            ``{"r", "alpha", "dropout", "target_modules"}``: train LoRA adapters on the backbone (frozen
            otherwise) instead of the whole backbone; heads train fully. Checked, stored as given;
            missing keys take :class:`mtl_hf.lora.LoraOptions`' defaults. See :mod:`mtl_hf.lora`.
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
    lora: dict | None = None

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> Any:
        """``PreTrainedConfig.from_dict``, the way every saved config is read (``from_pretrained``,
        ``AutoConfig``, ``AutoModel``), with two differences for the weighting, which only training uses:

        * ``weighting=`` among ``kwargs`` (as in ``MTLModel.from_pretrained(path, weighting={...})``)
          replaces the saved weighting before the config is built, so a saved weighter that is not
          installed is never looked up;
        * otherwise a saved weighter that cannot be loaded here (its plugin is not installed, or fails
          to load) is replaced by ``{"type": "fixed"}``, with a :class:`WeighterReplacedWarning`.

        A weighter named in a config built directly (``MTLConfig(weighting=...)``) must exist.
        """
        config_dict = dict(config_dict)
        if "weighting" in kwargs:
            config_dict["weighting"] = kwargs.pop("weighting")
            config_dict["weighter_source"] = None
        else:
            config_dict.update(available_weighting(config_dict))
        return super().from_dict(config_dict, **kwargs)

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
        tasks = copy.deepcopy(DEFAULT_TASKS if self.tasks is None else self.tasks)
        self._check_tasks(tasks)
        # config.json is written with sorted keys: the recorded order keeps heads and outputs in the
        # order the user gave.
        if self.task_order is not None and sorted(self.task_order) == sorted(tasks):
            tasks = {name: tasks[name] for name in self.task_order}
        self.tasks = tasks
        self.task_order = list(tasks)
        self.weighting = copy.deepcopy({"type": "fixed"} if self.weighting is None else self.weighting)
        self._weighter_options(self.weighting)
        self.lora = copy.deepcopy(self.lora)
        parse_lora(self.lora)  # checked here; stored as given (mtl_hf.lora fills in the defaults)

    # -- validation ------------------------------------------------------------------------------
    def _check_tasks(self, tasks: Any) -> None:
        """Validate every task (raising :class:`OptionsError` naming the key) and record plugin sources."""
        if not isinstance(tasks, dict) or not tasks:
            raise OptionsError(f"tasks: expected a non-empty mapping of task name -> options, got {tasks!r}")
        recorded = dict(self.head_sources or {})
        for name, spec in tasks.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise OptionsError(
                    f"tasks: task name {name!r} must be a Python identifier (letters, digits, _)"
                )
            self._head_options(name, spec)
            source = HEADS.source_of(spec["type"])
            if source.distribution is not None:
                recorded[spec["type"]] = f"{source.distribution} {source.version}"
        self.head_sources = recorded or None

    def _head_options(self, name: str, spec: Any) -> Any:
        """The parsed options of task ``name`` (a head's options dataclass)."""
        if not isinstance(spec, dict) or "type" not in spec:
            raise OptionsError(f"tasks.{name}: expected a mapping with a 'type' key, got {spec!r}")
        try:
            return parse_head_options(name, spec)
        except RegistryLookupError as exc:
            recorded = self.head_sources or {}
            hint = (
                f" It was provided by {recorded[spec['type']]!r}: install that distribution."
                if spec["type"] in recorded
                else ""
            )
            raise OptionsError(f"tasks.{name}.type: {exc}{hint}") from None

    def _weighter_options(self, weighting: Any) -> Any:
        """The parsed options of the weighter (its options dataclass); records a plugin's source."""
        if not isinstance(weighting, dict) or "type" not in weighting:
            raise OptionsError(f"weighting: expected a mapping with a 'type' key, got {weighting!r}")
        try:
            parsed = parse_weighter_options(weighting, list(self.tasks or {}))
        except RegistryLookupError as exc:
            recorded = self.weighter_source
            hint = f" It was provided by {recorded!r}: install that distribution." if recorded else ""
            raise OptionsError(f"weighting.type: {exc}{hint}") from None
        source = WEIGHTERS.source_of(weighting["type"])
        if source.distribution is not None:
            self.weighter_source = f"{source.distribution} {source.version}"
        return parsed

    def task_options(self, name: str) -> Any:
        """The options dataclass the head of task ``name`` is built with (defaults filled in)."""
        return self._head_options(name, (self.tasks or {})[name])

    def weighter_options(self) -> Any:
        """The options dataclass the weighter is built with (defaults filled in)."""
        return self._weighter_options(self.weighting or {"type": "fixed"})

    @property
    def resolved_tasks(self) -> dict[str, dict[str, Any]]:
        """``tasks`` with every option filled in with its default: what the heads are built with."""
        return {
            name: {"type": spec["type"], **to_dict(self.task_options(name))}
            for name, spec in (self.tasks or {}).items()
        }

    @property
    def resolved_weighting(self) -> dict[str, Any]:
        """``weighting`` with every option filled in with its default: what the weighter is built with."""
        return {"type": (self.weighting or {"type": "fixed"})["type"], **to_dict(self.weighter_options())}

    # -- conveniences ----------------------------------------------------------------------------
    @property
    def task_names(self) -> list[str]:
        return list(self.tasks or {})

    def tasks_of_type(self, *head_types: str) -> list[str]:
        """Names of the tasks whose head type is one of ``head_types``."""
        return [n for n, spec in (self.tasks or {}).items() if spec["type"] in head_types]


def available_weighting(config: Mapping[str, Any]) -> dict[str, Any]:
    """``{}`` when the weighter of the saved ``config`` (a ``config.json`` dict) can be loaded here, else
    ``{"weighting": {"type": "fixed"}, "weighter_source": None}`` after a :class:`WeighterReplacedWarning`
    saying what was missing and what to install. A name several plugins provide is left to the config's
    own check, which names them."""
    weighting = config.get("weighting") or {}
    name = weighting.get("type") if isinstance(weighting, Mapping) else None
    if not isinstance(name, str):
        return {}
    try:
        WEIGHTERS.get(name)
    except AmbiguousNameError:
        return {}
    except UnknownNameError as exc:
        source = config.get("weighter_source")
        provided = (
            f" (it was provided by {source!r}: install that distribution to train on with it)"
            if source
            else ""
        )
        warnings.warn(
            f"weighting.type: the saved weighter {name!r} is not available here{provided}; the model is "
            f"loaded with weighting {FALLBACK_WEIGHTING} instead, which inference does not use. Pass "
            f"weighting={{...}} to from_pretrained to choose another. Cause: {exc}",
            WeighterReplacedWarning,
            stacklevel=3,
        )
        return {"weighting": dict(FALLBACK_WEIGHTING), "weighter_source": None}
    return {}


def resolve_saved_options(config: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``(tasks, weighting)`` of a saved ``config.json`` (a plain dict) with every option filled in with
    its default, for describing a model without loading it. A head or weighter that is not registered
    here (its plugin is not installed) or whose options do not parse is kept as saved."""
    tasks = dict(config.get("tasks") or {})
    for name, spec in tasks.items():
        with contextlib.suppress(Exception):
            tasks[name] = {"type": spec["type"], **to_dict(parse_head_options(name, spec))}
    weighting = dict(config.get("weighting") or {"type": "fixed"})
    with contextlib.suppress(Exception):
        weighting = {"type": weighting["type"], **to_dict(parse_weighter_options(weighting, list(tasks)))}
    # keys sorted, as in config.json
    return {name: dict(sorted(spec.items())) for name, spec in tasks.items()}, dict(sorted(weighting.items()))


def parse_head_options(name: str, spec: dict[str, Any]) -> Any:
    """The options dataclass of task ``name`` whose spec is ``{"type": head_type, **options}``.

    Raises:
        RegistryLookupError: no usable head of that type is registered, or several and none is picked.
        OptionsError: an option is unknown or has the wrong type (named ``tasks.<name>.<key>``).
    """
    options = {k: v for k, v in spec.items() if k != "type"}
    return HEADS.get(spec["type"]).parse_options(name, copy.deepcopy(options))


def parse_weighter_options(weighting: dict[str, Any], task_names: list[str]) -> Any:
    """The options dataclass of the weighter ``{"type": weighter_type, **options}`` (errors as above)."""
    options = {k: v for k, v in weighting.items() if k != "type"}
    return WEIGHTERS.get(weighting["type"]).parse_options(copy.deepcopy(options), task_names)


AutoConfig.register(MTLConfig.model_type, MTLConfig, exist_ok=True)
