"""The models, optimizers and the one batch every case uses, and the model FLOPs of a case."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtl_hf import MTLConfig, MTLModel
from mtl_hf.masking import random_block_mask

from .cases import OURS, Case
from .steps import Run, mode_of

Forward = Callable[[bool], torch.Tensor]
"""``forward(train)``: with ``train`` the loss (labels given), else the classification logits."""


class Workbench:
    """The models, optimizers and the one batch every case uses.

    Args:
        backbone: ViT config values (``hidden_size``, ``image_size``, ...), e.g. ``SIZES["vits16"]``.
        batch_size: Images per call; the batch is random normal pixels with alternating 0/1 labels.
        device: Where models and batch live.
        cases: The cases to prepare (only their models are built; ``stl``'s backbone weights are
            copied into every other model so that all start from the same weights).
        compile_models: Run every model through ``torch.compile``.
        seed: Seeds the weights and the batch.
    """

    def __init__(
        self,
        backbone: dict[str, Any],
        batch_size: int,
        device: torch.device,
        *,
        cases: Iterable[Case],
        compile_models: bool = False,
        seed: int = 0,
    ) -> None:
        from transformers import ViTConfig, ViTForImageClassification, ViTForMaskedImageModeling

        torch.manual_seed(seed)
        self.device = device
        self.backbone = dict(backbone)
        self.batch_size = batch_size
        size = int(backbone["image_size"])
        channels = int(backbone["num_channels"])
        self.patch = int(backbone["patch_size"])
        self.grid = (size // self.patch, size // self.patch)
        self.pixel_values = torch.randn(batch_size, channels, size, size, device=device)
        self.labels = (torch.arange(batch_size, device=device) % 2).float()
        wanted = {c.model for c in cases} - {"matmul"}
        vit_kwargs: dict[str, Any] = {k: v for k, v in backbone.items() if k != "model_type"}
        vit_kwargs["num_labels"] = 1
        vit_config = ViTConfig(**vit_kwargs)
        cls_task = {"tumour": {"type": "binary_classification"}}
        tasks = {
            "stl": cls_task,
            "stl_twin": cls_task,
            "mtl": {**cls_task, "mim": {"type": "mim"}},
            "mtl_mae": {**cls_task, "mae": {"type": "mae"}},
        }
        self.models: dict[str, Any] = {}
        reference: MTLModel | None = None
        for base in (*OURS, "stl_twin"):
            if base in wanted or reference is None:
                config = MTLConfig(backbone_config={"model_type": "vit", **backbone}, tasks=tasks[base])
                model = MTLModel(config)
                if reference is None:
                    reference = model
                else:
                    model.backbone.load_state_dict(reference.backbone.state_dict())
                if base in wanted:
                    self.models[base] = model
        assert reference is not None
        for twin in ("hf_cls", "hf_cls_twin"):
            if twin in wanted:
                peer = ViTForImageClassification(vit_config)
                _copy_backbone(reference, peer.vit)
                self.models[twin] = peer
        if "hf_mim" in wanted:
            peer_mim = ViTForMaskedImageModeling(vit_config)
            _copy_backbone(reference, peer_mim.vit)
            self.models["hf_mim"] = peer_mim
        if "timm_cls" in wanted:
            self.models["timm_cls"] = timm_vit(backbone)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        for name, module in self.models.items():
            module.to(device)
            params = [p for p in module.parameters() if p.requires_grad]
            fused = all(p.is_floating_point() for p in params)
            self.optimizers[name] = torch.optim.AdamW(params, lr=1e-4, fused=fused)
        self.runners: dict[str, Any] = dict(self.models)
        self._flops: dict[tuple[str, bool], float] = {}
        if compile_models:
            self.runners = {n: torch.compile(m) for n, m in self.models.items()}

    def sim_mim_mask(self, batch_size: int) -> torch.Tensor:
        """SimMIM's block mask (32-px blocks, ratio 0.6), as our ``mim`` head draws it."""
        return random_block_mask(batch_size, self.grid, self.patch, 32, 0.6, device=self.device)

    # -- the cases ------------------------------------------------------------------------------
    def case(self, case: Case) -> tuple[Run, Run]:
        """``(setup, run)``: ``setup`` (untimed) puts the model in the case's state, ``run`` is timed."""
        return self.setup(case), mode_of(case).build(self, case)

    def setup(self, case: Case) -> Run:
        """Training or eval mode by the case's step mode; our model's view layout and checkpointing."""
        if case.model == "matmul":
            return lambda: None
        model = self.models[case.model]
        trains = mode_of(case).trains

        def setup() -> None:
            model.train(trains)
            if isinstance(model, MTLModel):
                model.config.view_layout = case.view_layout
                if case.checkpointing:
                    model.activation_checkpointing_enable()
                elif model.is_activation_checkpointing:
                    model.activation_checkpointing_disable()

        return setup

    def forward(self, model: str, runner: Any = None, n: int | None = None) -> Forward:
        """``forward(train)`` of ``model`` on the batch (its first ``n`` images), through its runner
        (compiled when asked) unless ``runner`` is given."""
        runner = self.runners[model] if runner is None else runner
        x, y = self.pixel_values[:n], self.labels[:n]
        if model in ("hf_cls", "hf_cls_twin"):
            return lambda train: _bce(runner(pixel_values=x).logits, y)
        if model == "hf_mim":
            return lambda train: runner(pixel_values=x, bool_masked_pos=self.sim_mim_mask(len(x))).loss
        if model == "timm_cls":
            return lambda train: _bce(runner(x), y)

        def ours(train: bool) -> torch.Tensor:
            out = runner(pixel_values=x, labels={"tumour": y} if train else None)
            return out.loss if train else out.logits["tumour"]

        return ours

    def matmul_shape(self) -> tuple[int, int]:
        """Side of the ceiling's square matrices and matmuls per call."""
        return (4096, 8) if self.device.type != "cpu" else (1024, 2)

    def images_of(self, case: Case) -> int:
        return 0 if case.model == "matmul" else self.batch_size

    def count_flops(self, case: Case) -> float | None:
        """Model FLOPs of one call of ``case``: forward (and backward, when its mode trains) of one image
        with eager attention, times the batch size; no recomputation (MFU counts model FLOPs), no
        optimizer. bf16, checkpointing and the view layout do not change them; cached per model and
        whether the mode trains. ``None`` for timm's model and for modes that run no model."""
        if case.model == "matmul":
            n, reps = self.matmul_shape()
            return 2.0 * n**3 * reps
        if case.model == "timm_cls" or case.mode == "idle":
            return None
        trains = mode_of(case).trains
        key = (case.model, trains)
        if key not in self._flops:
            self._flops[key] = self._count_flops(case.model, trains) * self.batch_size
        return self._flops[key]

    def _count_flops(self, name: str, trains: bool) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        model: Any = self.models[name]
        self.setup(Case(name, mode="train" if trains else "infer"))()  # no checkpointing, two passes
        forward = self.forward(name, model, 1)
        previous = model.config._attn_implementation
        model.set_attn_implementation("eager")
        try:
            with FlopCounterMode(display=False) as counter:
                if trains:
                    forward(True).backward()
                else:
                    with torch.inference_mode():
                        forward(False)
            return float(counter.get_total_flops())
        finally:
            model.set_attn_implementation(previous)
            model.zero_grad(set_to_none=True)


def _bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits[:, 0].float(), labels)


def _copy_backbone(source: nn.Module, target: nn.Module) -> None:
    backbone: Any = source.backbone
    result = target.load_state_dict(backbone.state_dict(), strict=False)
    if result.missing_keys or any(not k.endswith("mask_token") for k in result.unexpected_keys):
        raise RuntimeError(f"backbone copy mismatch: {result}")


def timm_available() -> bool:
    try:
        import timm  # noqa: F401
    except Exception:  # timm missing, or broken by its torchvision dependency
        return False
    return True


def timm_vit(backbone: dict[str, Any]) -> nn.Module:
    """timm's ``VisionTransformer`` with the shape of ``backbone`` (a ViT config dict), one output."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=backbone["image_size"],
        patch_size=backbone["patch_size"],
        in_chans=backbone["num_channels"],
        num_classes=1,
        embed_dim=backbone["hidden_size"],
        depth=backbone["num_hidden_layers"],
        num_heads=backbone["num_attention_heads"],
        mlp_ratio=backbone["intermediate_size"] / backbone["hidden_size"],
        qkv_bias=backbone.get("qkv_bias", True),
    )
