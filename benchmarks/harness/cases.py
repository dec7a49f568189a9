"""What the harness measures: cases described by what they run, not by their names.

A :class:`Case` is a model (ours or a transformers peer), a step mode (``train``, ``infer``, or any mode
registered in :mod:`benchmarks.harness.steps`), a precision, activation checkpointing on or off and,
for our MTL model, the view layout. Its ``name`` (``mtl_ckpt_bf16``, ``hf_cls_infer``) is derived from
those fields for tables, JSON and ``--cases``; nothing parses it back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from mtl_hf.configuration_mtl import DINO_VIT_S16

Precision = Literal["fp32", "bf16"]
ViewLayout = Literal["two_pass", "concat"]

SIZES: dict[str, dict[str, Any]] = {
    "vits16": dict(DINO_VIT_S16),
    # ViT-Ti's width at half its depth, 112 px: quick, and still deep and wide enough next to the MAE
    # head's fixed 2-block, 128-wide decoder for the step ratios to resemble ViT-S/16's.
    "small": {
        **DINO_VIT_S16,
        "hidden_size": 192,
        "num_hidden_layers": 6,
        "num_attention_heads": 3,
        "intermediate_size": 768,
        "image_size": 112,
    },
}
DEFAULT_BATCH = {"vits16": 8, "small": 16}
DEFAULT_MEMORY_BATCH = {"vits16": 16, "small": 32}

MODELS: dict[str, str] = {
    "hf_cls": "transformers ViTForImageClassification, BCE",
    "hf_cls_twin": "a second, identical hf_cls (A/A control: the noise floor)",
    "hf_mim": "transformers ViTForMaskedImageModeling (SimMIM)",
    "timm_cls": "timm VisionTransformer, BCE",
    "stl": "ours: classification only",
    "stl_twin": "a second, identical stl (A/A control of ours)",
    "mtl": "ours: classification + SimMIM",
    "mtl_mae": "ours: classification + MAE (75 % masked)",
    "matmul": "square matmul (the ceiling)",
}
"""The models a case can run on, with what they are."""

MODE_PHRASES = {"infer": "forward only, inference mode", "idle": "model and optimizer built, no step"}

OURS = ("stl", "mtl", "mtl_mae")
"""The models that are ``MTLModel`` instances (view layout and checkpointing apply to them)."""


@dataclass(frozen=True)
class Case:
    """One thing timed or measured.

    Attributes:
        model: A key of :data:`MODELS`.
        mode: A step mode of :data:`benchmarks.harness.steps.STEP_MODES` (``train``: forward, loss,
            backward, fused AdamW step; ``infer``: forward under ``torch.inference_mode``; ``ceiling``:
            the matmul; ``idle``: nothing, for the memory baseline).
        precision: ``fp32``, or ``bf16`` autocast as ``accelerate launch --mixed_precision bf16`` applies it.
        checkpointing: Activation checkpointing of our backbone.
        view_layout: Our MTL model's ``view_layout`` (``concat``: both views in one batch).
    """

    model: str
    mode: str = "train"
    precision: Precision = "fp32"
    checkpointing: bool = False
    view_layout: ViewLayout = "two_pass"

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; known: {', '.join(MODELS)}")

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    @property
    def name(self) -> str:
        """``model[_concat][_ckpt][_<mode>][_bf16]`` (no mode suffix for ``train``); ``matmul_<precision>``."""
        if self.model == "matmul":
            return f"matmul_{self.precision}"
        parts = [self.model]
        if self.view_layout != "two_pass":
            parts.append(self.view_layout)
        if self.checkpointing:
            parts.append("ckpt")
        if self.mode != "train":
            parts.append(self.mode)
        if self.bf16:
            parts.append("bf16")
        return "_".join(parts)

    @property
    def description(self) -> str:
        parts = [
            MODELS[self.model] if self.model != "matmul" else f"square {self.precision} matmul (the ceiling)"
        ]
        if self.view_layout == "concat":
            parts.append("both views in one concatenated pass")
        if self.checkpointing:
            parts.append("activation checkpointing")
        if self.mode not in ("train", "ceiling"):
            parts.append(MODE_PHRASES.get(self.mode, f"{self.mode} step"))
        if self.bf16 and self.model != "matmul":
            parts.append("bf16 autocast")
        return "; ".join(parts)

    def variant(self, **changes: Any) -> Case:
        """This case with some fields changed (``case.variant(precision="bf16")``)."""
        return dataclasses.replace(self, **changes)


def _cases(*cases: Case) -> dict[str, Case]:
    return {c.name: c for c in cases}


_TRAINED = [Case(m) for m in ("hf_cls", "hf_cls_twin", "hf_mim", "timm_cls", "stl", "stl_twin", "mtl")]
TRAIN_CASES = _cases(
    *_TRAINED,
    Case("mtl", view_layout="concat"),
    Case("mtl_mae"),
    *(Case(m, mode="views") for m in ("mtl", "mtl_mae")),
    *(Case(m, checkpointing=True) for m in OURS),
    *(Case(m, precision="bf16") for m in ("hf_cls", *OURS)),
)
INFERENCE_CASES = _cases(
    *(Case(m, mode="infer") for m in ("hf_cls", "hf_cls_twin", "stl", "mtl")),
    *(Case(m, mode="infer", precision="bf16") for m in ("hf_cls", "stl")),
)
CEILING_CASES = _cases(Case("matmul", mode="ceiling"), Case("matmul", mode="ceiling", precision="bf16"))
SPEED_CASES = {**TRAIN_CASES, **INFERENCE_CASES, **CEILING_CASES}
"""Every case the speed suite knows, by name (``--cases`` picks from them)."""

IDLE = Case("stl", mode="idle")
"""The memory baseline: imports, STL model and optimizer built, no step."""
MEMORY_CASES = _cases(
    IDLE,
    Case("hf_cls"),
    *(Case(m) for m in OURS),
    *(Case(m, mode="views") for m in ("mtl", "mtl_mae")),
    Case("mtl", view_layout="concat"),
    *(Case(m, checkpointing=True) for m in OURS),
)
QUICK_MEMORY_CASES = _cases(
    IDLE,
    Case("stl"),
    Case("mtl"),
    Case("mtl_mae"),
    Case("mtl", mode="views"),
    Case("stl", checkpointing=True),
    Case("mtl", checkpointing=True),
)
MEMORY_GOALS = {"mtl / stl": 1.8, "mtl_views / stl": 1.15, "mtl_ckpt / stl": 1.1}
"""Goals of memory ratios (peak of the first case over the second's)."""

ALL_CASES = {**SPEED_CASES, **MEMORY_CASES}


def case_named(name: str, table: dict[str, Case] = ALL_CASES) -> Case:
    """The case called ``name`` in ``table``; ``ValueError`` listing the names otherwise."""
    if name not in table:
        raise ValueError(f"unknown case {name!r}; choose from {', '.join(sorted(table))}")
    return table[name]


@dataclass(frozen=True)
class RatioSpec:
    """A ratio to report: time of ``numerator`` over the summed times of ``denominators`` (an images/s
    ratio, ``higher_is_better``, is the time ratio upside down), with its goal (``None``: reported only)."""

    label: str
    numerator: Case
    denominators: tuple[Case, ...]
    goal: float | None = None
    higher_is_better: bool = False


_HF, _STL, _MTL, _MAE = Case("hf_cls"), Case("stl"), Case("mtl"), Case("mtl_mae")
_MIM, _CONCAT = Case("hf_mim"), Case("mtl", view_layout="concat")
_HF_INFER = Case("hf_cls", mode="infer")
_VIEWS = Case("mtl", mode="views")
RATIO_SPECS: list[RatioSpec] = [
    RatioSpec("hf_cls_twin step / hf_cls step (A/A control)", Case("hf_cls_twin"), (_HF,)),
    RatioSpec("stl_twin step / stl step (A/A control)", Case("stl_twin"), (_STL,)),
    RatioSpec("stl step / hf_cls step", _STL, (_HF,), 1.02),
    RatioSpec(
        "hf_cls_twin infer img/s / hf_cls infer img/s (A/A)",
        _HF_INFER,
        (Case("hf_cls_twin", mode="infer"),),
        higher_is_better=True,
    ),
    RatioSpec("stl infer img/s / hf_cls infer img/s", _HF_INFER, (Case("stl", mode="infer"),), 0.98, True),
    RatioSpec("mtl (two_pass) step / (hf_cls + hf_mim) steps", _MTL, (_HF, _MIM), 1.02),
    RatioSpec("mtl (concat) step / (hf_cls + hf_mim) steps", _CONCAT, (_HF, _MIM)),
    RatioSpec("mtl (concat) / mtl (two_pass)", _CONCAT, (_MTL,)),
    RatioSpec("mtl (views one by one) step / (hf_cls + hf_mim) steps", _VIEWS, (_HF, _MIM), 1.02),
    RatioSpec("mtl (views one by one) / mtl (two_pass, joint)", _VIEWS, (_MTL,)),
    RatioSpec("mtl (views one by one) step / stl step", _VIEWS, (_STL,)),
    RatioSpec("mtl_mae step / stl step", _MAE, (_STL,), 1.4),
    RatioSpec("mtl_mae (views one by one) step / stl step", Case("mtl_mae", mode="views"), (_STL,), 1.4),
    RatioSpec("mtl (two_pass) step / stl step", _MTL, (_STL,)),
    RatioSpec("hf_mim step / hf_cls step", _MIM, (_HF,)),
    RatioSpec("timm_cls step / hf_cls step", Case("timm_cls"), (_HF,)),
    *(
        RatioSpec(f"{c.name}_ckpt / {c.name} (checkpointing cost)", c.variant(checkpointing=True), (c,))
        for c in (_STL, _MTL, _MAE)
    ),
    *(RatioSpec(f"{c.name} bf16 / fp32", c.variant(precision="bf16"), (c,)) for c in (_HF, _STL, _MTL, _MAE)),
    RatioSpec(
        "stl infer bf16 / fp32", Case("stl", mode="infer", precision="bf16"), (Case("stl", mode="infer"),)
    ),
    RatioSpec(
        "stl bf16 step / hf_cls bf16 step",
        _STL.variant(precision="bf16"),
        (_HF.variant(precision="bf16"),),
        1.02,
    ),
]
"""The ratios of the speed suite; a ratio whose cases did not run is left out."""
