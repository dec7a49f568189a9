"""``MTLModel``: a transformers ``PreTrainedModel`` whose ViT / DINOv2 backbone is shared by task heads.

One forward call runs the backbone on up to two views of the batch and every active head on its view:

* the **clean view** (the image as given) feeds classification heads and any head with ``view="clean"``;
* the **masked view** (patch embeddings at ``bool_masked_pos`` replaced by the backbone's mask token)
  feeds masked-image-modeling heads;
* the **visible view** (MAE, He et al. 2022) feeds heads with ``view="visible"``: the backbone's
  embeddings are computed for the whole image, then only the prefix tokens and the patches that
  ``bool_masked_pos`` leaves visible go through the encoder layers and final norm, so the pass costs
  about the visible share of a full one (a quarter at MAE's 75 % masking).

One ``bool_masked_pos`` per call serves the masked and the visible views (drawn by the first active
head that needs one, when not given).

``config.view_layout`` decides how: ``"two_pass"`` calls the backbone once per view; ``"concat"`` calls
it once on both views stacked along the batch. Both give the same outputs (up to float rounding); which
is faster depends on the device (see ``benchmarks/``).

The per-task losses are combined by the model's weighter (``config.weighting``) into ``loss``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, can_return_tuple

from .backbone import (
    attention_implementation,
    build_backbone,
    image_size_of,
    load_backbone,
    num_prefix_tokens,
    patch_size_of,
)
from .channels import adapt_state_dict_channels
from .configuration_mtl import MTLConfig
from .heads import HEADS, BackboneFeatures, BackboneSpec, HeadOutput, HeadOutputError, TaskHead
from .lora import LORA_MARK, apply_lora, base_weight_names, freeze_base
from .weighting import WEIGHTERS, LossWeighter


@dataclass
class MTLModelOutput(ModelOutput):
    """Output of :class:`MTLModel`.

    With ``return_dict=False`` (or ``config.return_dict=False``) the model returns the fields that are
    not ``None``, in this order, as a tuple (``ModelOutput.to_tuple``).

    Attributes:
        loss: The weighted total over tasks that had a loss in this call; ``None`` if none had, except
            when every task given labels had none present in the batch and gradients are on: then a
            zero attached to the graph, so that each process of a distributed run back-propagates.
        last_hidden_state: ``(B, P + N, D)`` final tokens of the clean view, if it ran.
        logits: ``{task: logits}`` for every classification-type head that ran; binary heads give ``(B,)``.
        reconstructions: ``{task: (B, C, H, W)}`` for masked-image-modeling heads that ran.
        task_losses: ``{task: scalar loss}`` for the tasks whose loss was computed: a task whose labels
            mark every sample of the batch as missing (NaN, ``IGNORE_INDEX``) has none.
        task_weights: ``{task: weight}`` the weighter gave each of those tasks (detached).
        bool_masked_pos: ``(B, num_patches)`` the mask of the masked view, if one ran.
        hidden_states: Per-layer tokens of the clean view (embeddings first), when
            ``output_hidden_states`` is true; with a list of layer indices, the others are ``None``.
        attentions: Per-layer attention maps of the clean view, when ``output_attentions=True``.
    """

    loss: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    logits: dict[str, torch.Tensor] | None = None
    reconstructions: dict[str, torch.Tensor] | None = None
    task_losses: dict[str, torch.Tensor] | None = None
    task_weights: dict[str, torch.Tensor] | None = None
    bool_masked_pos: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor | None, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class MTLPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading conventions shared by mtl-hf models."""

    config_class = MTLConfig
    config: MTLConfig
    base_model_prefix = "mtl"
    main_input_name = "pixel_values"
    input_modalities = "image"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ViTEmbeddings", "ViTLayer", "Dinov2Embeddings", "Dinov2Layer"]  # noqa: RUF012
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # The weighter's state (log-variances, loss history, ...) only serves training: a model loaded with
    # another weighter (its own not installed, or ``from_pretrained(..., weighting=...)``) leaves the
    # saved state unused and starts the new one from its initialisation, silently.
    _keys_to_ignore_on_load_unexpected = [r"^weighter\."]  # noqa: RUF012
    _keys_to_ignore_on_load_missing = [r"^weighter\."]  # noqa: RUF012

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike[str] | None,
        *model_args: Any,
        allow_pickle: bool = False,
        **kwargs: Any,
    ) -> Any:
        """``PreTrainedModel.from_pretrained``, loading weights from safetensors only.

        A local folder whose only weights are pickles (``pytorch_model.bin``), or whose safetensors
        index points at a pickle or outside the folder, is refused with an explanation
        (:func:`mtl_hf.security.check_weights_source`; a Hub repository's index is checked before any
        shard is downloaded); from the Hub, ``use_safetensors=True`` makes transformers refuse a
        repository without safetensors weights. ``AutoModel.from_pretrained``
        comes here too. A local folder written by :func:`mtl_hf.lora_adapter.save_adapter` (a LoRA
        adapter and the heads, no full weights) is loaded onto the base backbone it names
        (:meth:`from_adapter`).
        ``allow_pickle=True`` lifts the refusal for a source you trust; transformers then
        still unpickles with ``weights_only=True``.

        The weighter only trains: ``weighting={"type": ..., **options}`` replaces the saved one, and a
        saved weighter that is not installed here is replaced by ``fixed`` with a
        :class:`~mtl_hf.configuration_mtl.WeighterReplacedWarning` (see :meth:`MTLConfig.from_dict`);
        the saved weighter's parameters and buffers are then left unused.

        Raises:
            mtl_hf.security.UnsafeCheckpointError: pickle-only weights, or ``weights_only=False`` /
                ``use_safetensors=False`` asked without ``allow_pickle=True``.
        """
        from .adapter_format import is_adapter_folder
        from .hub_tokens import hub_errors_redacted
        from .security import UnsafeCheckpointError, check_weights_source

        source = pretrained_model_name_or_path
        if source is not None and is_adapter_folder(source):
            return MTLModel.from_adapter(source, weighting=kwargs.get("weighting"))  # onto the base it names
        if not allow_pickle:
            for key in ("weights_only", "use_safetensors"):
                if kwargs.get(key) is False:
                    raise UnsafeCheckpointError(
                        str(source),
                        f"{key}=False loads pickles; pass allow_pickle=True too if you trust the source",
                    )
            kwargs["use_safetensors"] = True
        with hub_errors_redacted(kwargs.get("token")):
            if source is not None:
                check_weights_source(source, allow_pickle=allow_pickle, **kwargs)
            loaded = super().from_pretrained(source, *model_args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info=True: a pair
        if getattr(model.config, "lora", None):
            freeze_base(cast(nn.Module, model.backbone))  # loading made every parameter trainable again
        return loaded

    def _initialize_weights(self, module: nn.Module, is_custom_code: bool = False) -> None:
        """transformers treats a model defined outside its package as custom code and then skips every
        module whose own parameters are all initialised: vacuously, every module without parameters of
        its own. A head's or weighter's ``init_parameters`` covers its whole subtree, so heads and
        weighters are always visited (after their submodules: the hook has the last word; parameters
        loaded from a checkpoint are left alone by the ``transformers.initialization`` functions)."""
        if isinstance(module, (LossWeighter, TaskHead)) and not getattr(module, "_is_hf_initialized", False):
            self._init_weights(module)
            setattr(module, "_is_hf_initialized", True)  # noqa: B010 (a flag transformers reads)
            return
        super()._initialize_weights(module, is_custom_code)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Heads: truncated normal (std ``initializer_range``) for linear and conv weights, zero biases,
        unit layer norms; weighters initialise their own parameters. The backbone keeps its own scheme."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            init.trunc_normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)):
            if module.weight is not None:
                init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (LossWeighter, TaskHead)):
            module.init_parameters()


class MTLModel(MTLPreTrainedModel):
    """A DINO ViT backbone shared by named task heads, trained with a weighted sum of task losses.

    Example::

        >>> import torch
        >>> from mtl_hf import MTLConfig, MTLModel
        >>> config = MTLConfig(
        ...     backbone_config={"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2,
        ...                      "num_attention_heads": 2, "intermediate_size": 64, "image_size": 64},
        ...     tasks={"tumour": {"type": "binary_classification"}, "mim": {"type": "mim"}},
        ...     weighting={"type": "fixed", "weights": {"mim": 0.5}},
        ... )
        >>> model = MTLModel(config)
        >>> out = model(torch.randn(2, 3, 64, 64), labels={"tumour": torch.tensor([0, 1])})
        >>> sorted(out.task_losses)  # training mode: MIM runs on its own masked view
        ['mim', 'tumour']
        >>> _ = model.eval()
        >>> model(torch.randn(2, 3, 64, 64)).logits["tumour"].shape  # inference: one clean pass
        torch.Size([2])
    """

    def __init__(self, config: MTLConfig) -> None:
        super().__init__(config)
        backbone_config: Any = config.backbone_config
        self.backbone = build_backbone(backbone_config)
        self.patch_size = patch_size_of(backbone_config)
        self.num_prefix_tokens = num_prefix_tokens(backbone_config)
        self.spec = BackboneSpec(
            hidden_size=backbone_config.hidden_size,
            patch_size=self.patch_size,
            num_channels=backbone_config.num_channels,
            num_hidden_layers=backbone_config.num_hidden_layers,
            image_size=image_size_of(backbone_config),
        )
        self.heads = nn.ModuleDict(
            {
                name: HEADS.get(spec["type"])(name, config.task_options(name), self.spec)
                for name, spec in (config.tasks or {}).items()
            }
        )
        weighter_cls = WEIGHTERS.get((config.weighting or {"type": "fixed"})["type"])
        self.weighter = weighter_cls(config.task_names, config.weighter_options())
        self.post_init()
        if config.lora:  # after post_init: the adapters keep peft's initialisation (B = 0)
            apply_lora(self.backbone, config.lora)

    # -- construction from a pretrained backbone -------------------------------------------------
    @classmethod
    def from_adapter(
        cls,
        source: str | os.PathLike[str],
        *,
        base_model: str | None = None,
        weighting: dict[str, Any] | None = None,
        **hub_kwargs: Any,
    ) -> MTLModel:
        """The model of a LoRA adapter folder (or Hub repository) written by
        :func:`mtl_hf.lora_adapter.save_adapter`: its base backbone (:meth:`from_backbone`), then the
        adapter and the heads onto it, the base frozen: the same outputs as the model that was saved.

        Args:
            source: An adapter folder, or a Hub repository holding one.
            base_model: Load onto this backbone (Hub id or folder) instead of the one the adapter names.
            weighting: A weighting to use instead of the saved one (it only matters for more training).
            **hub_kwargs: ``revision``, ``token``, ``cache_dir``, ``local_files_only`` for the Hub.

        Raises:
            mtl_hf.lora_adapter.AdapterError: a file is missing, or the weights do not fit the base
                (naming the keys).
        """
        from .adapter_format import adapter_folder, apply_adapter, base_of

        folder = adapter_folder(source, hub_kwargs)
        config = MTLConfig.from_pretrained(folder)
        model = cls.from_backbone(
            base_of(folder, base_model),
            tasks=config.tasks,
            weighting=weighting if weighting is not None else config.weighting,
            view_layout=config.view_layout,
            lora=config.lora,
            num_channels=getattr(config.backbone_config, "num_channels", None),
        )
        apply_adapter(model, folder, fresh_weighter=weighting is not None)
        return model.eval()

    @classmethod
    def from_backbone(
        cls,
        name_or_path: str,
        tasks: Mapping[str, Mapping[str, Any]] | None = None,
        weighting: Mapping[str, Any] | None = None,
        *,
        backbone_overrides: Mapping[str, Any] | None = None,
        num_channels: int | None = None,
        **kwargs: Any,
    ) -> MTLModel:
        """A model whose backbone weights come from a pretrained checkpoint and whose heads are new.

        Args:
            name_or_path: Hub id (e.g. ``"facebook/dino-vits16"``) or local folder of a ViT or DINOv2
                checkpoint (safetensors).
            tasks, weighting: As in :class:`MTLConfig`.
            backbone_overrides: Backbone config values to change (e.g. ``{"hidden_dropout_prob": 0.1}``);
                shape-changing values make the checkpoint unloadable.
            num_channels: Input channels of the model (e.g. 4 for the BraTS modalities) when they differ
                from the checkpoint's: its patch embedding is adapted as timm's ``adapt_input_conv``
                does (:func:`mtl_hf.channels.adapt_input_conv`) and ``backbone_config.num_channels``
                records the new count.
            **kwargs: Other :class:`MTLConfig` arguments (``view_layout``) and Hub arguments
                (``revision``, ``cache_dir``, ``token``, ``local_files_only``).
        """
        hub_keys = ("revision", "cache_dir", "token", "local_files_only", "force_download")
        hub_kwargs = {k: kwargs.pop(k) for k in hub_keys if k in kwargs}
        from .hub_tokens import hub_errors_redacted

        with hub_errors_redacted(hub_kwargs.get("token")):
            backbone_config = AutoConfig.from_pretrained(name_or_path, **hub_kwargs)
        for key, value in (backbone_overrides or {}).items():
            setattr(backbone_config, key, value)
        checkpoint_config = copy.deepcopy(backbone_config)
        if num_channels is not None:
            backbone_config.num_channels = num_channels
        config = MTLConfig(
            backbone_config=backbone_config,
            tasks=dict(tasks) if tasks is not None else None,
            weighting=dict(weighting) if weighting is not None else None,
            **kwargs,
        )
        model = cls(config)
        pretrained = load_backbone(name_or_path, checkpoint_config, **hub_kwargs)
        state = adapt_state_dict_channels(pretrained.state_dict(), num_channels)
        if config.lora:
            state = base_weight_names(model.backbone, state)
        result = model.backbone.load_state_dict(state, strict=False)
        # The mask token is ours to learn (DINO checkpoints have none), so are LoRA adapters; anything
        # else must match.
        missing = [k for k in result.missing_keys if not k.endswith("mask_token") and LORA_MARK not in k]
        if missing or result.unexpected_keys:
            raise ValueError(
                f"backbone checkpoint {name_or_path!r} does not match its config: "
                f"missing {missing}, unexpected {result.unexpected_keys}"
            )
        backbone_config._name_or_path = str(name_or_path)
        return model

    # -- conveniences --------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def shared_parameters(self) -> list[nn.Parameter]:
        """The parameters every task shares: the backbone's (for gradient-based weighters)."""
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def head(self, name: str) -> TaskHead:
        """The head of task ``name``."""
        return cast(TaskHead, self.heads[name])

    def view_groups(self, tasks: Sequence[str]) -> list[list[str]]:
        """``tasks`` grouped by the view their heads read, in the order forward runs the views (clean,
        masked, visible); empty groups left out."""
        groups = {
            view: [n for n in tasks if self.head(n).view == view] for view in ("clean", "masked", "visible")
        }
        return [group for group in groups.values() if group]

    def grid_size(self, pixel_values: torch.Tensor) -> tuple[int, int]:
        return pixel_values.shape[-2] // self.patch_size, pixel_values.shape[-1] // self.patch_size

    # -- forward ---------------------------------------------------------------------------------
    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: Mapping[str, torch.Tensor] | None = None,
        bool_masked_pos: torch.Tensor | None = None,
        tasks: Sequence[str] | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | list[int] | None = None,
        loss_terms: Callable[[Mapping[str, torch.Tensor]], Mapping[str, tuple[torch.Tensor, torch.Tensor]]]
        | None = None,
        **kwargs: Any,
    ) -> MTLModelOutput:
        r"""Run the backbone and the active heads; combine the task losses.

        Args:
            pixel_values: ``(B, C, H, W)`` normalised images (see :class:`~mtl_hf.MTLImageProcessor`);
                ``C`` must equal the backbone's channels and ``H``, ``W`` be multiples of its patch size.
            labels: ``{task: labels}``. Binary: ``(B,)`` or ``(B, 1)`` of 0/1; multi-class: ``(B,)``
                class indices; multi-label: ``(B, L)`` of 0/1. A sample without a label for a task carries
                NaN (float labels) or ``IGNORE_INDEX`` (integer labels): the task's loss covers the
                labelled samples only (:meth:`TaskHead.labelled`), and a batch without any has no loss
                for it. A supervised task whose name is absent
                is skipped; with ``labels=None`` every clean-view head runs and returns logits only.
            bool_masked_pos: ``(B, num_patches)`` bool, True = masked, for the masked view. If not given
                and a masked-view head runs, its head draws one per sample (SimMIM block masking).
            tasks: Names of the tasks to run, overriding the default choice: by default supervised heads
                run as described under ``labels`` and masked-view heads run in training mode or when
                ``bool_masked_pos`` is given. So in eval mode ``model(pixel_values)`` costs one backbone
                pass and returns every classification head's logits.
            output_attentions: Return the clean view's attention maps (the backbone switches to eager
                attention for this call only: SDPA does not expose them). Defaults to
                ``config.output_attentions``.
            output_hidden_states: Return the clean view's per-layer tokens: ``True`` for all of them, or a
                list of indices into them (negative ones count from the end; the others come back as
                ``None``). Defaults to ``config.output_hidden_states``.
            return_dict: ``False`` returns a tuple instead of an :class:`MTLModelOutput` (see there);
                defaults to ``config.return_dict``.
            loss_terms: By default the weighter combines the task losses into ``loss``. A training step
                that back-propagates one view at a time passes its weighter's ``view_terms`` here
                (``{name: loss} -> {name: (weight, term)}``, called once per call, also when no task
                has a loss, so that the weighter may synchronise processes): ``loss`` is then the sum
                of this call's terms and ``task_weights`` their weights, and the step combines the
                views itself. Terms are taken inside ``forward`` so that DDP sees the weighter's
                parameters used.
        """
        if output_attentions is None:
            output_attentions = bool(self.config.output_attentions)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        self._check_pixel_values(pixel_values)
        batch_size = pixel_values.shape[0]
        grid = self.grid_size(pixel_values)
        active = self._active_tasks(labels, tasks, bool_masked_pos)
        checked_labels = {}
        for name in active:
            if labels is not None and name in labels:
                checked_labels[name] = self.head(name).check_labels(labels[name], batch_size)

        clean = [n for n in active if self.head(n).view == "clean"]
        masked = [n for n in active if self.head(n).view == "masked"]
        visible = [n for n in active if self.head(n).view == "visible"]
        need_mask = [n for n in active if self.head(n).view != "clean"]
        if need_mask:
            if bool_masked_pos is None:
                bool_masked_pos = self.head(need_mask[0]).sample_mask(batch_size, grid, pixel_values.device)
            else:
                bool_masked_pos = self._check_mask(bool_masked_pos, batch_size, grid)
        want_clean = bool(clean) or not need_mask or bool(output_attentions) or bool(output_hidden_states)
        heads_need_hidden = any(self.head(n).requires_hidden_states for n in active)

        clean_features, masked_features, attentions = self._encode(
            pixel_values,
            bool_masked_pos if masked else None,
            want_clean=want_clean,
            output_attentions=bool(output_attentions),
            output_hidden_states=True if heads_need_hidden else (output_hidden_states or False),
        )
        visible_features = None
        if visible:
            assert bool_masked_pos is not None
            visible_features = self._encode_visible(pixel_values, bool_masked_pos, heads_need_hidden)
        views = {"clean": clean_features, "masked": masked_features, "visible": visible_features}

        outputs: dict[str, HeadOutput] = {}
        for name in active:
            features = views[self.head(name).view]
            assert features is not None
            outputs[name] = self._run_head(name, features, checked_labels.get(name))

        task_losses = {n: o.loss for n, o in outputs.items() if o.loss is not None}
        loss = task_weights = None
        if loss_terms is not None:  # called without losses too: the weighter may synchronise processes
            terms = loss_terms(task_losses)
            if terms:
                loss = torch.stack([term for _, term in terms.values()]).sum()
                task_weights = {n: weight.detach() for n, (weight, _) in terms.items()}
        elif task_losses:
            weighted = self.weighter(task_losses)
            loss, task_weights = weighted.loss, weighted.weights
        if loss is None and checked_labels and torch.is_grad_enabled():
            # Every labelled task of this call is absent from the batch: a zero attached to the graph,
            # so that this process back-propagates (and joins DDP's all-reduce) like the others.
            ran = [f.last_hidden_state for f in views.values() if f is not None]
            loss = torch.stack([(h * 0).sum() for h in ran]).sum()
        logits = {n: o.logits for n, o in outputs.items() if o.logits is not None}
        reconstructions = {n: o.reconstruction for n, o in outputs.items() if o.reconstruction is not None}
        return MTLModelOutput(
            loss=loss,
            last_hidden_state=clean_features.last_hidden_state if clean_features is not None else None,
            logits=logits or None,
            reconstructions=reconstructions or None,
            task_losses=task_losses or None,
            task_weights=task_weights,
            bool_masked_pos=bool_masked_pos if need_mask else None,
            hidden_states=selected_layers(
                clean_features.hidden_states if clean_features is not None else None, output_hidden_states
            ),
            attentions=attentions,
        )

    # -- pieces of forward -------------------------------------------------------------------------
    def _run_head(self, name: str, features: BackboneFeatures, labels: torch.Tensor | None) -> HeadOutput:
        """Task ``name``'s head on ``features``; with labels, its loss over the labelled samples only.

        Every sample labelled: one call, as without missing labels. Otherwise the prediction comes from
        the whole batch without labels and without gradient (the head is then unused by this call's
        loss, so DDP, which runs with ``find_unused_parameters``, gives it a zero gradient on this
        process and the all-reduce averages as for any task), and the loss, when some samples are
        labelled, from the head on those samples alone (:meth:`BackboneFeatures.select`).
        """
        head = self.head(name)
        if labels is None:
            return self._checked(name, head(features, None))
        present = head.labelled(labels)
        if bool(present.all()):
            return self._checked(name, head(features, labels))
        with torch.no_grad():
            output = head(features, None)
        if bool(present.any()):
            output.loss = self._checked(name, head(features.select(present), labels[present])).loss
        return output

    def _checked(self, name: str, output: HeadOutput) -> HeadOutput:
        loss = output.loss
        if loss is not None and not (isinstance(loss, torch.Tensor) and loss.dim() == 0):
            shape = (
                f"a tensor of shape {tuple(loss.shape)}"
                if isinstance(loss, torch.Tensor)
                else type(loss).__name__
            )
            raise HeadOutputError(
                f"task {name!r}: head {type(self.head(name)).__name__} returned a loss that is {shape}; "
                "a head's loss must be a 0-dim tensor (reduce per-sample losses, e.g. with .mean())"
            )
        return output

    def _active_tasks(
        self,
        labels: Mapping[str, torch.Tensor] | None,
        tasks: Sequence[str] | None,
        bool_masked_pos: torch.Tensor | None,
    ) -> list[str]:
        if labels is not None:
            if not isinstance(labels, Mapping):
                raise TypeError(
                    f"labels must be a mapping {{task name: tensor}}, got {type(labels).__name__}; "
                    f"tasks are {', '.join(self.heads)}"
                )
            unknown = [k for k in labels if k not in self.heads]
            if unknown:
                raise ValueError(f"labels: no task named {unknown[0]!r}; tasks are {', '.join(self.heads)}")
        if tasks is not None:
            if isinstance(tasks, str):
                tasks = [tasks]
            unknown = [t for t in tasks if t not in self.heads]
            if unknown:
                raise ValueError(f"tasks: no task named {unknown[0]!r}; tasks are {', '.join(self.heads)}")
            return [n for n in self.heads if n in tasks]
        active = []
        for name, head in self.heads.items():
            if head.view != "clean":
                if self.training or bool_masked_pos is not None:
                    active.append(name)
            elif labels is None or not head.requires_labels or name in labels:
                active.append(name)
        return active

    def _encode(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None,
        *,
        want_clean: bool,
        output_attentions: bool,
        output_hidden_states: bool | list[int],
    ) -> tuple[BackboneFeatures | None, BackboneFeatures | None, tuple[torch.Tensor, ...] | None]:
        """Backbone passes for the views needed; returns (clean, masked, clean attentions)."""
        clean: BackboneFeatures | None = None
        masked: BackboneFeatures | None = None
        attentions: tuple[torch.Tensor, ...] | None = None
        if want_clean and bool_masked_pos is not None and self.config.view_layout == "concat":
            both = torch.cat([pixel_values, pixel_values])
            mask = torch.cat([torch.zeros_like(bool_masked_pos), bool_masked_pos])
            out = self._backbone(both, mask, output_attentions, output_hidden_states)
            b = pixel_values.shape[0]
            hidden = out.hidden_states
            clean = self._features(
                out.last_hidden_state[:b], pixel_values, None, batch_rows(hidden, slice(b))
            )
            masked = self._features(
                out.last_hidden_state[b:], pixel_values, bool_masked_pos, batch_rows(hidden, slice(b, None))
            )
            attentions = (
                tuple(a[:b] for a in out.attentions) if output_attentions and out.attentions else None
            )
            return clean, masked, attentions
        if want_clean:
            out = self._backbone(pixel_values, None, output_attentions, output_hidden_states)
            clean = self._features(out.last_hidden_state, pixel_values, None, out.hidden_states)
            attentions = out.attentions if output_attentions else None
        if bool_masked_pos is not None:
            out = self._backbone(pixel_values, bool_masked_pos, False, output_hidden_states)
            masked = self._features(out.last_hidden_state, pixel_values, bool_masked_pos, out.hidden_states)
        return clean, masked, attentions

    def _backbone(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None,
        output_attentions: bool,
        output_hidden_states: bool | list[int],
    ) -> Any:
        kwargs: dict[str, Any] = {}
        if self.backbone.config.model_type == "vit":
            kwargs["interpolate_pos_encoding"] = tuple(pixel_values.shape[-2:]) != self.spec.image_size
        with attention_implementation(self.backbone, "eager" if output_attentions else None):
            return self.backbone(
                pixel_values=pixel_values,
                bool_masked_pos=bool_masked_pos,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                **kwargs,
            )

    def _encode_visible(
        self, pixel_values: torch.Tensor, bool_masked_pos: torch.Tensor, output_hidden_states: bool
    ) -> BackboneFeatures:
        """The visible view: embeddings (patch, position, CLS and registers) of the whole image, then the
        encoder layers and final layer norm on the prefix tokens and the visible patch tokens only."""
        backbone: Any = self.backbone
        layers = getattr(backbone, "layers", None)
        if layers is None:
            layers = getattr(getattr(backbone, "encoder", None), "layer", None)
        if layers is None or not hasattr(backbone, "embeddings") or not hasattr(backbone, "layernorm"):
            raise ValueError(
                f"backbone {type(backbone).__name__} does not expose embeddings, layers and layernorm; "
                "heads with view='visible' support ViT, DINOv2 and DINOv2 with registers"
            )
        kwargs: dict[str, Any] = {}
        if backbone.config.model_type == "vit":
            kwargs["interpolate_pos_encoding"] = tuple(pixel_values.shape[-2:]) != self.spec.image_size
        weight = backbone.embeddings.patch_embeddings.projection.weight
        embeddings = backbone.embeddings(pixel_values.to(weight.dtype), **kwargs)
        keep = visible_indices(bool_masked_pos)
        p = self.num_prefix_tokens
        index = keep.unsqueeze(-1).expand(-1, -1, embeddings.shape[-1])
        hidden = torch.cat([embeddings[:, :p], embeddings[:, p:].gather(1, index)], dim=1)
        states = [hidden] if output_hidden_states else None
        for layer in layers:
            hidden = layer(hidden, None)
            if states is not None:
                states.append(hidden)
        return BackboneFeatures(
            last_hidden_state=backbone.layernorm(hidden),
            num_prefix_tokens=p,
            grid_size=self.grid_size(pixel_values),
            pixel_values=pixel_values,
            bool_masked_pos=bool_masked_pos,
            hidden_states=tuple(states) if states is not None else None,
            visible_indices=keep,
        )

    def _features(
        self,
        last_hidden_state: torch.Tensor,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None,
        hidden_states: tuple[torch.Tensor | None, ...] | None,
    ) -> BackboneFeatures:
        return BackboneFeatures(
            last_hidden_state=last_hidden_state,
            num_prefix_tokens=self.num_prefix_tokens,
            grid_size=self.grid_size(pixel_values),
            pixel_values=pixel_values,
            bool_masked_pos=bool_masked_pos,
            # Complete whenever a head reads them: forward asks the backbone for every layer then.
            hidden_states=cast(tuple[torch.Tensor, ...] | None, hidden_states),
        )

    # -- input validation --------------------------------------------------------------------------
    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        if not isinstance(pixel_values, torch.Tensor):
            raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
        if pixel_values.dim() != 4:
            raise ValueError(f"pixel_values must have shape (B, C, H, W), got {tuple(pixel_values.shape)}")
        if not pixel_values.is_floating_point():
            raise ValueError(f"pixel_values must be floating point, got {pixel_values.dtype}")
        _b, c, h, w = pixel_values.shape
        if c != self.spec.num_channels:
            raise ValueError(
                f"pixel_values has {c} channel(s) but the backbone expects {self.spec.num_channels}; "
                "MTLImageProcessor converts grey and colour images to the backbone's channels"
            )
        p = self.patch_size
        if h % p or w % p or h == 0 or w == 0:
            raise ValueError(f"pixel_values size {h}x{w} is not a positive multiple of the patch size {p}")
        # The sum is finite whenever every value is (a cheap first test); only then is each value checked.
        if not torch.isfinite(pixel_values.sum()) and not torch.isfinite(pixel_values).all():
            raise ValueError("pixel_values contains NaN or inf")

    def _check_mask(self, mask: torch.Tensor, batch_size: int, grid: tuple[int, int]) -> torch.Tensor:
        expected = (batch_size, grid[0] * grid[1])
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != expected:
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"bool_masked_pos must have shape {expected} (batch, patches), got {shape}")
        if mask.dtype != torch.bool:
            raise ValueError(f"bool_masked_pos must be a bool tensor (True = masked), got {mask.dtype}")
        return mask


def selected_layers(
    hidden_states: tuple[torch.Tensor | None, ...] | None, requested: bool | list[int] | None
) -> tuple[torch.Tensor | None, ...] | None:
    """``hidden_states`` as ``output_hidden_states`` asked: all (``True``), none, or those at the given
    indices (negative ones count from the end) with ``None`` in place of the others."""
    if hidden_states is None or not requested:
        return None
    if requested is True:
        return hidden_states
    n = len(hidden_states)
    kept = {int(i) % n for i in requested}
    return tuple(h if i in kept else None for i, h in enumerate(hidden_states))


def batch_rows(
    hidden_states: tuple[torch.Tensor | None, ...] | None, rows: slice
) -> tuple[torch.Tensor | None, ...] | None:
    """The given rows (samples) of every captured hidden state."""
    if hidden_states is None:
        return None
    return tuple(None if h is None else h[rows] for h in hidden_states)


def visible_indices(bool_masked_pos: torch.Tensor) -> torch.Tensor:
    """``(B, V)`` grid positions, ascending, of the patches ``bool_masked_pos`` leaves visible.

    Raises:
        ValueError: if samples keep different numbers of visible patches (the visible view is one
            dense batch) or a sample keeps none.
    """
    counts = (~bool_masked_pos).sum(dim=1)
    kept = int(counts[0])
    if kept == 0 or not bool((counts == kept).all()):
        raise ValueError(
            "bool_masked_pos: the visible view needs the same positive number of visible patches in "
            f"every sample, got {sorted(set(counts.tolist()))}"
        )
    order = torch.argsort(bool_masked_pos.to(torch.int32), dim=1, stable=True)
    return order[:, :kept]


AutoModel.register(MTLConfig, MTLModel, exist_ok=True)
