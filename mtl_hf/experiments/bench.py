"""``mtl-hf bench``: speed and memory of mtl-hf models against transformers' own ViT models.

Every configuration trains (or runs inference) on the same backbone config, batch, inputs and
backbone weights, in one process. Cases are interleaved round by round, in a new random order each
round, so that the load of a shared machine hits them all alike; each ratio is the median over rounds
of the per-round ratio (the ratio of the fastest calls is given too). Peers:

* ``hf_cls``: ``transformers.ViTForImageClassification`` (one logit, BCE-with-logits loss), and
  ``hf_cls_twin``, an identical second copy whose ratio to ``hf_cls`` is the run's noise floor;
* ``hf_mim``: ``transformers.ViTForMaskedImageModeling`` (SimMIM) with the same block masks as ours;
* ``timm_cls``: ``timm``'s ``VisionTransformer`` of the same shape, when timm is installed.

Ours: ``stl`` (one binary classification head), ``mtl`` (classification + SimMIM, ``two_pass`` and
``concat`` view layouts), ``mtl_mae`` (classification + the MAE head, 75 % of patches hidden from the
encoder), each also with activation checkpointing (``_ckpt``) and under bf16 autocast (``_bf16``),
which is what ``accelerate launch --mixed_precision bf16`` applies (``torch.autocast`` with bfloat16
on the Accelerate device). Every training step is forward, loss, backward and a fused AdamW step.

Clock: wall-clock time, or the process's CPU time (``--clock``; the default for a one-thread CPU run,
where it ignores the time other processes take from us). Minor page faults per call are recorded too.

Suites (``--suites``):

* ``speed``: the interleaved timings above, plus the measured matmul ceiling (fp32 and bf16) that
  gives each case's MFU (model FLOPs per second over that ceiling; FLOPs counted once per case with
  ``torch.utils.flop_counter`` and eager attention);
* ``overhead``: what our code adds per call where compute vanishes (a one-layer, 32-wide ViT), and the
  input check that grows with the batch;
* ``memory``: peak RSS (CPU) or peak allocated memory (GPU) of two training steps, each case in a
  fresh process;
* ``optimizer``: one AdamW step over the backbone's parameters: fused, foreach and the plain loop;
* ``precision``: what bf16 autocast changes on one batch (logits, losses, gradients vs fp32).

Examples::

    mtl-hf bench --quick --threads 1                        # small ViT, under a minute
    mtl-hf bench --size vits16 --threads 2 --json out.json  # DINO ViT-S/16 at 224 px, a few minutes

Timings depend on the machine's other load: set ``--threads`` deliberately (on a busy machine more
threads than free cores make every step slower, often by far) and read the ratios, which are robust.
``benchmarks/README.md`` holds the latest tables and how they were taken.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..configuration_mtl import DINO_VIT_S16

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

TRAIN_CASES = (
    "hf_cls",
    "hf_cls_twin",
    "hf_mim",
    "timm_cls",
    "stl",
    "mtl",
    "mtl_concat",
    "mtl_mae",
    "stl_ckpt",
    "mtl_ckpt",
    "mtl_mae_ckpt",
    "hf_cls_bf16",
    "stl_bf16",
    "mtl_bf16",
    "mtl_mae_bf16",
)
INFERENCE_CASES = (
    "hf_cls_infer",
    "hf_cls_twin_infer",
    "stl_infer",
    "mtl_infer",
    "hf_cls_infer_bf16",
    "stl_infer_bf16",
)
CEILING_CASES = ("matmul_fp32", "matmul_bf16")
MEMORY_CASES = (
    "idle",
    "hf_cls",
    "stl",
    "mtl",
    "mtl_concat",
    "mtl_mae",
    "stl_ckpt",
    "mtl_ckpt",
    "mtl_mae_ckpt",
)
MEMORY_GOALS = {"mtl / stl": 1.8, "mtl_ckpt / stl": 1.1}
QUICK_MEMORY_CASES = ("idle", "stl", "mtl", "mtl_mae", "stl_ckpt", "mtl_ckpt")
SUITES = ("speed", "overhead", "memory", "optimizer", "precision")

DESCRIPTIONS = {
    "hf_cls": "transformers ViTForImageClassification, BCE",
    "hf_cls_twin": "a second, identical hf_cls (A/A control: the noise floor)",
    "hf_mim": "transformers ViTForMaskedImageModeling (SimMIM)",
    "timm_cls": "timm VisionTransformer, BCE",
    "stl": "ours: classification only",
    "mtl": "ours: classification + SimMIM, two passes",
    "mtl_concat": "ours: classification + SimMIM, one concatenated pass",
    "mtl_mae": "ours: classification + MAE (75 % masked)",
    "stl_ckpt": "stl with activation checkpointing",
    "mtl_ckpt": "mtl with activation checkpointing",
    "mtl_mae_ckpt": "mtl_mae with activation checkpointing",
    "hf_cls_bf16": "hf_cls under bf16 autocast",
    "stl_bf16": "stl under bf16 autocast",
    "mtl_bf16": "mtl under bf16 autocast",
    "mtl_mae_bf16": "mtl_mae under bf16 autocast",
    "hf_cls_infer": "hf_cls forward, inference mode",
    "hf_cls_twin_infer": "hf_cls_twin forward, inference mode",
    "stl_infer": "stl forward, inference mode",
    "mtl_infer": "mtl model forward (eval: one clean pass)",
    "hf_cls_infer_bf16": "hf_cls_infer under bf16 autocast",
    "stl_infer_bf16": "stl_infer under bf16 autocast",
    "matmul_fp32": "square fp32 matmul (the ceiling)",
    "matmul_bf16": "square bf16 matmul (the ceiling)",
    "idle": "imports, STL model and optimizer built, no step",
}


# -- results -------------------------------------------------------------------------------------------
@dataclass
class Timing:
    """One case's timings: seconds per call over the measured rounds, by the run's primary clock
    (``clock``: ``"wall"``, or ``"cpu"``, the process's CPU time) and by the other one."""

    name: str
    description: str
    times_s: list[float]
    images: int
    clock: str = "wall"
    other_times_s: list[float] | None = None
    flops: float | None = None
    """Model FLOPs of one call (no recomputation counted), ``None`` where not counted."""
    page_faults: list[int] | None = None
    """Minor page faults of the process during each call (memory the allocator had returned to the
    OS and the step had to fault in again, zeroed page by page)."""
    ceiling: str | None = None
    """Which matmul ceiling its MFU is taken against (``matmul_fp32`` or ``matmul_bf16``)."""

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def images_per_s(self) -> float:
        return self.images / self.median_s


@dataclass
class Ratio:
    """A measured ratio with its goal (``None``: reported only), by the primary clock (``value``: the
    median of per-round ratios, ``value_of_min``: the ratio of the fastest calls) and by the other."""

    name: str
    value: float
    value_of_min: float
    goal: float | None = None
    higher_is_better: bool = False
    clock: str = "wall"
    other_value: float | None = None

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        return self.value >= self.goal if self.higher_is_better else self.value <= self.goal


@dataclass
class BenchReport:
    """Everything one ``mtl-hf bench`` run measured, as written to JSON."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    overhead: dict[str, Any] = field(default_factory=dict)
    precision: dict[str, Any] = field(default_factory=dict)


# -- the device ------------------------------------------------------------------------------------
def bench_device(force_cpu: bool = False) -> torch.device:
    """The device Accelerate would train on (``PartialState().device``), or the CPU when forced."""
    if force_cpu:
        return torch.device("cpu")
    from accelerate import PartialState

    return PartialState().device


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so that wall-clock time covers them (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type != "cpu" and hasattr(torch, "accelerator") and torch.accelerator.is_available():
        torch.accelerator.synchronize()


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast as Accelerate applies it for ``--mixed_precision bf16``, or nothing."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def machine_info(device: torch.device, threads: int) -> dict[str, Any]:
    """What ran the benchmark: CPU model, cores, torch threads, load, library versions, GPU."""
    import transformers

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "host": platform.node(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "device": str(device),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# -- models and steps -------------------------------------------------------------------------------------
class Workbench:
    """The models, optimizers and the one batch every case uses.

    Args:
        backbone: ViT config values (``hidden_size``, ``image_size``, ...), e.g. ``SIZES["vits16"]``.
        batch_size: Images per call; the batch is random normal pixels with alternating 0/1 labels.
        device: Where models and batch live.
        names: The cases to prepare (only their models are built; ``stl``'s backbone weights are
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
        names: Sequence[str],
        compile_models: bool = False,
        seed: int = 0,
    ) -> None:
        from transformers import ViTConfig, ViTForImageClassification, ViTForMaskedImageModeling

        from .. import MTLConfig, MTLModel
        from ..masking import random_block_mask

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
        self._block_mask = random_block_mask
        bases = {base_model(n) for n in names}
        vit_kwargs: dict[str, Any] = {k: v for k, v in backbone.items() if k != "model_type"}
        vit_kwargs["num_labels"] = 1
        vit_config = ViTConfig(**vit_kwargs)
        cls_task = {"tumour": {"type": "binary_classification"}}
        tasks = {
            "stl": cls_task,
            "mtl": {**cls_task, "mim": {"type": "mim"}},
            "mtl_mae": {**cls_task, "mae": {"type": "mae"}},
        }
        self.models: dict[str, Any] = {}
        reference: MTLModel | None = None
        for base in ("stl", "mtl", "mtl_mae"):
            if base in bases or reference is None:
                config = MTLConfig(backbone_config={"model_type": "vit", **backbone}, tasks=tasks[base])
                model = MTLModel(config)
                if reference is None:
                    reference = model
                else:
                    model.backbone.load_state_dict(reference.backbone.state_dict())
                if base in bases:
                    self.models[base] = model
        assert reference is not None
        for twin in ("hf_cls", "hf_cls_twin"):
            if twin in bases:
                peer = ViTForImageClassification(vit_config)
                _copy_backbone(reference, peer.vit)
                self.models[twin] = peer
        if "hf_mim" in bases:
            peer_mim = ViTForMaskedImageModeling(vit_config)
            _copy_backbone(reference, peer_mim.vit)
            self.models["hf_mim"] = peer_mim
        if "timm_cls" in bases:
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
        return self._block_mask(batch_size, self.grid, self.patch, 32, 0.6, device=self.device)

    # -- the cases ------------------------------------------------------------------------------
    def case(self, name: str) -> tuple[Callable[[], None], Callable[[], None]]:
        """``(setup, run)`` for case ``name``: ``setup`` (untimed) puts the model in the right mode."""
        device = self.device
        bf16 = name.endswith("_bf16")
        if name.startswith("matmul_"):
            return self._matmul(torch.bfloat16 if bf16 else torch.float32)
        base = base_model(name)
        model, runner = self.models[base], self.runners[base]
        inference = "_infer" in name
        checkpointing = "_ckpt" in name
        layout = "concat" if name.startswith("mtl_concat") else "two_pass"

        def setup() -> None:
            model.train(not inference)
            if hasattr(model, "config") and hasattr(model.config, "view_layout"):
                model.config.view_layout = layout
            if hasattr(model, "activation_checkpointing_enable"):
                if checkpointing:
                    model.activation_checkpointing_enable()
                elif model.is_activation_checkpointing:
                    model.activation_checkpointing_disable()

        forward = self._forward(base, runner, self.pixel_values, self.labels)
        if inference:

            def run() -> None:
                with torch.inference_mode(), autocast(device, bf16):
                    forward(False)

            return setup, run
        optimizer = self.optimizers[base]

        def step() -> None:
            with autocast(device, bf16):
                loss = forward(True)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return setup, step

    def _forward(
        self, base: str, runner: Any, x: torch.Tensor, y: torch.Tensor
    ) -> Callable[[bool], torch.Tensor]:
        if base in ("hf_cls", "hf_cls_twin"):
            return lambda train: _bce(runner(pixel_values=x).logits, y)
        if base == "hf_mim":
            return lambda train: runner(pixel_values=x, bool_masked_pos=self.sim_mim_mask(len(x))).loss
        if base == "timm_cls":
            return lambda train: _bce(runner(x), y)

        def ours(train: bool) -> torch.Tensor:
            out = runner(pixel_values=x, labels={"tumour": y} if train else None)
            return out.loss if train else out.logits["tumour"]

        return ours

    def _matmul(self, dtype: torch.dtype) -> tuple[Callable[[], None], Callable[[], None]]:
        n = 4096 if self.device.type != "cpu" else 1024
        a = torch.randn(n, n, device=self.device, dtype=dtype)
        b = torch.randn(n, n, device=self.device, dtype=dtype)
        reps = 8 if self.device.type != "cpu" else 2

        def run() -> None:
            for _ in range(reps):
                torch.mm(a, b)

        return lambda: None, run

    def matmul_flops(self) -> float:
        n = 4096 if self.device.type != "cpu" else 1024
        reps = 8 if self.device.type != "cpu" else 2
        return 2.0 * n**3 * reps

    def images_of(self, name: str) -> int:
        return 0 if name.startswith("matmul_") else self.batch_size

    def count_flops(self, name: str) -> float | None:
        """Model FLOPs of one call of case ``name``: forward (and backward) of one image with eager
        attention, times the batch size; no recomputation (MFU counts model FLOPs), no optimizer.
        bf16, checkpointing and the view layout do not change them; cached per model and mode."""
        if name.startswith("matmul_"):
            return self.matmul_flops()
        base = base_model(name)
        if base == "timm_cls":
            return None
        inference = "_infer" in name
        key = (base, inference)
        if key not in self._flops:
            self._flops[key] = self._count_flops(base, inference) * self.batch_size
        return self._flops[key]

    def _count_flops(self, base: str, inference: bool) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        model: Any = self.models[base]
        setup, _ = self.case(base + ("_infer" if inference else ""))
        setup()
        forward = self._forward(base, model, self.pixel_values[:1], self.labels[:1])
        previous = model.config._attn_implementation
        model.set_attn_implementation("eager")
        try:
            with FlopCounterMode(display=False) as counter:
                if inference:
                    with torch.inference_mode():
                        forward(False)
                else:
                    forward(True).backward()
            return float(counter.get_total_flops())
        finally:
            model.set_attn_implementation(previous)
            model.zero_grad(set_to_none=True)


def base_model(name: str) -> str:
    """The model a case runs on: ``mtl_ckpt_bf16`` -> ``mtl``; ``mtl_concat`` -> ``mtl``."""
    for suffix in ("_bf16", "_ckpt", "_infer"):
        name = name.replace(suffix, "")
    return "mtl" if name == "mtl_concat" else name


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


# -- the speed suite -----------------------------------------------------------------------------------
def run_interleaved(
    bench: Workbench, names: Sequence[str], rounds: int, warmup: int, progress: bool = True
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[int]]]:
    """Seconds per call of every case, wall-clock and process CPU time, and minor page faults
    per call: ``warmup`` unrecorded rounds
    then ``rounds`` recorded ones; each round runs every case once, in a new random order (seeded),
    so that no case always follows the same other case (what ran just before, e.g. a heavy bf16
    matmul or a large free, can slow a step down)."""
    from tqdm import tqdm

    cases = {n: bench.case(n) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu_times: dict[str, list[float]] = {n: [] for n in names}
    faults: dict[str, list[int]] = {n: [] for n in names}
    shuffler = random.Random(0)
    for r in tqdm(range(warmup + rounds), desc="rounds", disable=not progress):
        order = list(names)
        shuffler.shuffle(order)
        for name in order:
            setup, run = cases[name]
            setup()
            synchronize(bench.device)
            faults_start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            synchronize(bench.device)
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
                cpu_times[name].append(time.process_time() - cpu_start)
                faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_start)
    return times, cpu_times, faults


def paired_ratio(
    times: dict[str, list[float]], numerator: str, denominators: Sequence[str]
) -> tuple[float, float]:
    """(median over rounds of ``t[num] / sum(t[den])``, ratio of the fastest calls)."""
    per_round = [
        times[numerator][r] / sum(times[d][r] for d in denominators) for r in range(len(times[numerator]))
    ]
    fastest = min(times[numerator]) / sum(min(times[d]) for d in denominators)
    return statistics.median(per_round), fastest


RATIO_SPECS: list[tuple[str, str, tuple[str, ...], float | None, bool]] = [
    # (label, numerator, denominators, goal, higher is better)
    ("hf_cls_twin step / hf_cls step (A/A control)", "hf_cls_twin", ("hf_cls",), None, False),
    ("stl step / hf_cls step", "stl", ("hf_cls",), 1.02, False),
    (
        "hf_cls_twin infer img/s / hf_cls infer img/s (A/A)",
        "hf_cls_infer",
        ("hf_cls_twin_infer",),
        None,
        True,
    ),
    ("stl infer img/s / hf_cls infer img/s", "hf_cls_infer", ("stl_infer",), 0.98, True),
    ("mtl (two_pass) step / (hf_cls + hf_mim) steps", "mtl", ("hf_cls", "hf_mim"), 1.02, False),
    ("mtl (concat) step / (hf_cls + hf_mim) steps", "mtl_concat", ("hf_cls", "hf_mim"), None, False),
    ("mtl (concat) / mtl (two_pass)", "mtl_concat", ("mtl",), None, False),
    ("mtl_mae step / stl step", "mtl_mae", ("stl",), 1.4, False),
    ("mtl (two_pass) step / stl step", "mtl", ("stl",), None, False),
    ("hf_mim step / hf_cls step", "hf_mim", ("hf_cls",), None, False),
    ("timm_cls step / hf_cls step", "timm_cls", ("hf_cls",), None, False),
    ("stl_ckpt / stl (checkpointing cost)", "stl_ckpt", ("stl",), None, False),
    ("mtl_ckpt / mtl (checkpointing cost)", "mtl_ckpt", ("mtl",), None, False),
    ("mtl_mae_ckpt / mtl_mae (checkpointing cost)", "mtl_mae_ckpt", ("mtl_mae",), None, False),
    ("hf_cls bf16 / fp32", "hf_cls_bf16", ("hf_cls",), None, False),
    ("stl bf16 / fp32", "stl_bf16", ("stl",), None, False),
    ("mtl bf16 / fp32", "mtl_bf16", ("mtl",), None, False),
    ("mtl_mae bf16 / fp32", "mtl_mae_bf16", ("mtl_mae",), None, False),
    ("stl infer bf16 / fp32", "stl_infer_bf16", ("stl_infer",), None, False),
    ("stl bf16 step / hf_cls bf16 step", "stl_bf16", ("hf_cls_bf16",), 1.02, False),
]


def compute_ratios(
    times: dict[str, list[float]],
    other_times: dict[str, list[float]] | None = None,
    clock: str = "wall",
) -> list[Ratio]:
    ratios = []
    for label, num, dens, goal, higher in RATIO_SPECS:
        if num not in times or any(d not in times for d in dens):
            continue
        # An images/s ratio (higher is better) is a time ratio upside down: t_hf / t_ours.
        value, fastest = paired_ratio(times, num, dens)
        other = paired_ratio(other_times, num, dens)[0] if other_times is not None else None
        ratios.append(Ratio(label, value, fastest, goal, higher, clock, other))
    return ratios


def speed_suite(
    bench: Workbench,
    names: Sequence[str],
    rounds: int,
    warmup: int,
    count_flops: bool = True,
    clock: str = "wall",
) -> tuple[dict[str, Timing], list[Ratio]]:
    """Interleaved timings of ``names`` and the ratios of :data:`RATIO_SPECS`, by ``clock`` first.

    ``clock="cpu"`` (process CPU time) suits a CPU run with one torch thread on a shared machine: the
    time the process is descheduled in favour of others does not count, which wall-clock time cannot
    avoid. With several threads CPU time adds up their spin-waiting: use wall-clock time there and on
    accelerators."""
    wall, cpu, faults = run_interleaved(bench, names, rounds, warmup)
    primary, other = (cpu, wall) if clock == "cpu" else (wall, cpu)
    timings: dict[str, Timing] = {}
    for name in names:
        flops = bench.count_flops(name) if count_flops else None
        ceiling = None
        if not name.startswith("matmul_"):
            ceiling = "matmul_bf16" if name.endswith("_bf16") else "matmul_fp32"
        timings[name] = Timing(
            name,
            DESCRIPTIONS[name],
            primary[name],
            bench.images_of(name),
            clock=clock,
            other_times_s=other[name],
            flops=flops,
            ceiling=ceiling,
            page_faults=faults[name],
        )
    return timings, compute_ratios(primary, other, clock)


def mfu(timing: Timing, timings: dict[str, Timing]) -> float | None:
    """Model FLOP/s of ``timing`` over the matmul ceiling measured in the same rounds."""
    if timing.flops is None or timing.ceiling is None or timing.ceiling not in timings:
        return None
    ceiling = timings[timing.ceiling]
    assert ceiling.flops is not None
    return (timing.flops / timing.median_s) / (ceiling.flops / ceiling.median_s)


# -- the memory suite -----------------------------------------------------------------------------------
def memory_child(case: str, size: str, batch_size: int, threads: int, force_cpu: bool) -> dict[str, Any]:
    """Run in a fresh process: build case ``case``, two training steps (none for ``idle``); peak memory."""
    torch.set_num_threads(threads)
    device = bench_device(force_cpu)
    base = "stl" if case == "idle" else case
    bench = Workbench(SIZES[size], batch_size, device, names=[base])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if case != "idle":
        setup, step = bench.case(case)
        setup()
        for _ in range(2):
            step()
        synchronize(device)
    result: dict[str, Any] = {"case": case, "batch_size": batch_size}
    if device.type == "cuda":
        result["peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    # Linux reports KiB, macOS bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    return result


def memory_suite(
    cases: Sequence[str], size: str, batch_size: int, threads: int, force_cpu: bool, parallel: int
) -> dict[str, Any]:
    """Each case in its own process (up to ``parallel`` at once: peak memory does not depend on
    timing); ratios of peaks, and of peaks above the ``idle`` process's."""
    from tqdm import tqdm

    def one(case: str) -> dict[str, Any]:
        command = [sys.executable, "-m", "mtl_hf.experiments.bench", "--memory-child", case, "--size", size]
        command += ["--memory-batch-size", str(batch_size), "--threads", str(threads)]
        if force_cpu:
            command.append("--cpu")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"memory case {case!r} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        results = list(tqdm(pool.map(one, cases), total=len(cases), desc="memory"))
    by_case = {r["case"]: r for r in results}
    key = "peak_allocated_mb" if "peak_allocated_mb" in results[0] else "peak_rss_mb"
    summary: dict[str, Any] = {"metric": key, "batch_size": batch_size, "cases": by_case, "ratios": {}}
    idle = by_case.get("idle", {}).get(key, 0.0) if key == "peak_rss_mb" else 0.0
    pairs = [(case, "stl") for case in by_case if case not in ("idle", "stl")]
    pairs += [(case, "stl_ckpt") for case in ("mtl_ckpt", "mtl_mae_ckpt")]
    for case, reference in pairs:
        if case not in by_case or reference not in by_case:
            continue
        peak, ref = by_case[case][key], by_case[reference][key]
        summary["ratios"][f"{case} / {reference}"] = {
            "peak": peak / ref,
            "above_idle": (peak - idle) / (ref - idle) if ref > idle else None,
        }
    return summary


# -- the overhead suite ------------------------------------------------------------------------------------
def overhead_suite(
    backbone: dict[str, Any], batch_size: int, device: torch.device, reps: int = 200
) -> dict[str, Any]:
    """What our code adds per call, measured where compute vanishes: ours vs the peers on a one-layer,
    32-wide ViT with a 2 x 2 patch grid and one image (training-mode forward with labels, and eval
    forward), median microseconds over interleaved calls; plus the input check that grows with the
    batch (``torch.isfinite(pixel_values).all()`` at the benchmark's batch and image size). Unlike
    step ratios, these barely move with the machine's load."""
    patch = int(backbone["patch_size"])
    tiny = {
        **backbone,
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": 2 * patch,
    }
    work = Workbench(tiny, 1, device, names=["hf_cls", "hf_mim", "stl", "mtl", "mtl_mae"])
    x, y = work.pixel_values, work.labels
    # name -> (model to put in train or eval mode first, or None; train?; the timed call)
    calls: dict[str, tuple[Any, bool, Callable[[], Any]]] = {}
    for base in ("hf_cls", "hf_mim", "stl", "mtl", "mtl_mae"):
        forward = work._forward(base, work.models[base], x, y)
        calls[f"{base} train forward"] = (work.models[base], True, functools.partial(forward, True))
    for base in ("hf_cls", "stl"):
        forward = work._forward(base, work.models[base], x, y)
        calls[f"{base} eval forward"] = (work.models[base], False, functools.partial(forward, False))
    size = int(backbone["image_size"])
    images = torch.randn(batch_size, int(backbone["num_channels"]), size, size, device=device)
    calls["input check"] = (None, False, lambda: bool(torch.isfinite(images).all()))
    # The same answer in one reduction pass: a sum is finite exactly when no element is NaN or inf,
    # unless finite values overflow float32 (then the full check decides).
    calls["input check, one-pass sum"] = (None, False, lambda: bool(torch.isfinite(images.sum())))
    times: dict[str, list[float]] = {n: [] for n in calls}
    with torch.no_grad():
        for _ in range(reps):
            for name, (model, train, call) in calls.items():
                if model is not None:
                    model.train(train)
                synchronize(device)
                start = time.perf_counter()
                call()
                synchronize(device)
                times[name].append(time.perf_counter() - start)
    us = {n: 1e6 * statistics.median(t) for n, t in times.items()}
    return {
        "microseconds": us,
        "stl - hf_cls, train forward": us["stl train forward"] - us["hf_cls train forward"],
        "stl - hf_cls, eval forward": us["stl eval forward"] - us["hf_cls eval forward"],
        "mtl - (hf_cls + hf_mim), train forward": us["mtl train forward"]
        - us["hf_cls train forward"]
        - us["hf_mim train forward"],
        "input check at the benchmark batch": us["input check"],
    }


# -- the optimizer suite ----------------------------------------------------------------------------------
def optimizer_suite(
    backbone: dict[str, Any], device: torch.device, rounds: int, warmup: int
) -> dict[str, Any]:
    """ms per AdamW step over the backbone's parameters (random gradients), implementations interleaved."""
    from transformers import ViTConfig, ViTModel

    model = ViTModel(
        ViTConfig(**{k: v for k, v in backbone.items() if k != "model_type"}), add_pooling_layer=False
    )
    params = [p.detach().to(device).requires_grad_() for p in model.parameters()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    variants: dict[str, dict[str, Any]] = {
        "fused": {"fused": True},
        "foreach": {"foreach": True},
        "loop": {"foreach": False},
    }
    optimizers = {}
    for name, kwargs in variants.items():
        try:
            optimizers[name] = torch.optim.AdamW(params, lr=1e-4, **kwargs)
        except (RuntimeError, ValueError) as exc:  # e.g. no fused kernel for this device
            optimizers[name] = None  # type: ignore[assignment]
            print(f"AdamW {name} unavailable: {exc}", file=sys.stderr)
    live = {n: o for n, o in optimizers.items() if o is not None}
    times: dict[str, list[float]] = {n: [] for n in live}
    names = list(live)
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = time.perf_counter()
            live[name].step()
            synchronize(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    fastest = min(statistics.median(t) for t in times.values())
    return {
        "parameters": sum(p.numel() for p in params),
        "ms_per_step": {n: 1e3 * statistics.median(t) for n, t in times.items()},
        "relative_to_fastest": {n: statistics.median(t) / fastest for n, t in times.items()},
        "default_choice": "fused (mtl_hf.training.optim.build_optimizer, implementation='auto')",
    }


# -- the precision suite ------------------------------------------------------------------------------------
def precision_suite(bench: Workbench) -> dict[str, Any]:
    """bf16 autocast vs fp32 on one batch and one mask: max |Δ| of logits and reconstructions,
    relative Δ of each loss, cosine similarity of the backbone gradients."""
    out: dict[str, Any] = {}
    x, y = bench.pixel_values, bench.labels
    for base in ("stl", "mtl", "mtl_mae"):
        if base not in bench.models:
            continue
        model: Any = bench.models[base]
        model.train()
        model.config.view_layout = "two_pass"
        mask = None
        needs_mask = [n for n in model.config.task_names if model.head(n).view != "clean"]
        if needs_mask:
            mask = model.head(needs_mask[0]).sample_mask(bench.batch_size, bench.grid, bench.device)
        results = []
        for bf16 in (False, True):
            model.zero_grad(set_to_none=True)
            with autocast(bench.device, bf16):
                o = model(pixel_values=x, labels={"tumour": y}, bool_masked_pos=mask)
            o.loss.backward()
            o.logits = {t: v.detach() for t, v in o.logits.items()}
            o.task_losses = {t: v.detach() for t, v in o.task_losses.items()}
            o.reconstructions = {t: v.detach() for t, v in (o.reconstructions or {}).items()}
            grad = torch.cat(
                [p.grad.flatten().float() for p in model.backbone.parameters() if p.grad is not None]
            )
            results.append((o, grad))
        model.zero_grad(set_to_none=True)
        (ref, g32), (low, g16) = results
        entry: dict[str, Any] = {
            "logits_max_abs_diff": float(
                (ref.logits["tumour"].float() - low.logits["tumour"].float()).abs().max()
            ),
            "logits_max_abs": float(ref.logits["tumour"].abs().max()),
            "loss_rel_diff": {
                t: float((low.task_losses[t].float() - v.float()).abs() / v.float().abs().clamp_min(1e-12))
                for t, v in ref.task_losses.items()
            },
            "grad_cosine": float(F.cosine_similarity(g32.double(), g16.double(), dim=0)),
        }
        for t, r in (ref.reconstructions or {}).items():
            entry[f"reconstruction_max_abs_diff/{t}"] = float(
                (r.float() - low.reconstructions[t].float()).abs().max()
            )
        out[base] = entry
    return out


def layout_advice(ratio: Ratio, margin: float = 0.03) -> str:
    """Which ``MTLConfig.view_layout`` to use here, from the measured concat / two-pass step ratio:
    ``concat`` only when it wins by more than ``margin`` on both the median and the fastest calls
    (its one large batch costs more peak memory)."""
    wins = ratio.value < 1 - margin and ratio.value_of_min < 1 - margin
    choice = "concat" if wins else "two_pass"
    return (
        f"View layout for this device: `{choice}` (concat / two_pass step = {ratio.value:.3f} median, "
        f"{ratio.value_of_min:.3f} fastest; concat is chosen only when it wins by more than "
        f"{100 * margin:.0f} % on both, since it holds both views' activations in one batch)."
    )


CLOCK_NAMES = {"wall": "wall-clock time", "cpu": "process CPU time"}


# -- output -----------------------------------------------------------------------------------------------
def format_report(report: BenchReport, timings: dict[str, Timing], ratios: list[Ratio]) -> str:
    m = report.machine
    lines = [
        f"## {m['cpu']} ({m['cpu_count']} cores), device {m['device']}"
        + (f" ({m['gpu']})" if "gpu" in m else ""),
        "",
        f"size {report.settings['size']}, batch {report.settings['batch_size']}, torch threads "
        f"{m['torch_threads']}, rounds {report.settings['rounds']} (+{report.settings['warmup']} warm-up), "
        f"load average {m['loadavg_start']} at start, {m.get('loadavg_end')} at end; "
        f"torch {m['torch']}, transformers {m['transformers']}",
        "",
    ]
    if timings:
        clock = next(iter(timings.values())).clock
        other = "wall" if clock == "cpu" else "cpu"
        lines += [
            f"Times by {CLOCK_NAMES[clock]} (and median by {CLOCK_NAMES[other]}); MFU by {CLOCK_NAMES[clock]}.",
            "",
            f"| case | what | median ms | min ms | median ms ({other}) | img/s | GFLOP/call | MFU | "
            "page faults/call |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for t in timings.values():
            u = mfu(t, timings)
            other_ms = f"{1e3 * statistics.median(t.other_times_s):.1f}" if t.other_times_s else "-"
            lines.append(
                f"| {t.name} | {t.description} | {1e3 * t.median_s:.1f} | {1e3 * t.min_s:.1f} | {other_ms} | "
                + (f"{t.images_per_s:.1f}" if t.images else "-")
                + " | "
                + (f"{t.flops / 1e9:.1f}" if t.flops else "-")
                + " | "
                + (f"{100 * u:.0f} %" if u is not None else "-")
                + (f" | {statistics.median(t.page_faults):.0f}" if t.page_faults else " | -")
                + " |"
            )
        lines += [
            "",
            f"| ratio (same run) | median of per-round ({clock}) | of fastest ({clock}) | "
            f"median of per-round ({other}) | goal | met ({clock} median) |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for r in ratios:
            goal = "-" if r.goal is None else ("≥ " if r.higher_is_better else "≤ ") + f"{r.goal:.2f}"
            met = "-" if r.met is None else ("yes" if r.met else "NO")
            other_value = f"{r.other_value:.3f}" if r.other_value is not None else "-"
            lines.append(
                f"| {r.name} | {r.value:.3f} | {r.value_of_min:.3f} | {other_value} | {goal} | {met} |"
            )
        layout = next((r for r in ratios if r.name == "mtl (concat) / mtl (two_pass)"), None)
        if layout is not None:
            lines += ["", layout_advice(layout)]
    if report.memory:
        mem = report.memory
        unit = "peak allocated" if mem["metric"] == "peak_allocated_mb" else "peak RSS"
        lines += ["", f"Memory ({unit}, batch {mem['batch_size']}, each case in a fresh process):", ""]
        lines += ["| case | what | MB |", "|---|---|---:|"]
        for case, r in mem["cases"].items():
            lines.append(f"| {case} | {DESCRIPTIONS[case]} | {r[mem['metric']]:.0f} |")
        lines += ["", "| memory ratio | of peaks | of peaks above idle | goal |", "|---|---:|---:|---:|"]
        for name, ratio in mem["ratios"].items():
            above = f"{ratio['above_idle']:.2f}" if ratio.get("above_idle") is not None else "-"
            limit = MEMORY_GOALS.get(name)
            lines.append(f"| {name} | {ratio['peak']:.2f} | {above} | {f'≤ {limit}' if limit else '-'} |")
    if report.overhead:
        o = report.overhead
        lines += ["", "Fixed cost per call (one-layer 32-wide ViT, one 2x2-patch image; median µs):", ""]
        lines += ["| call | µs |", "|---|---:|"]
        lines += [f"| {name} | {value:.0f} |" for name, value in o["microseconds"].items()]
        for key in (
            "stl - hf_cls, train forward",
            "stl - hf_cls, eval forward",
            "mtl - (hf_cls + hf_mim), train forward",
        ):
            share = ""
            step = {"train": "stl", "eval": "stl_infer", "mtl": "mtl"}
            case = step["mtl"] if key.startswith("mtl") else step["eval" if "eval" in key else "train"]
            if case in timings:
                extra = o[key] + o["input check at the benchmark batch"]
                share = (
                    f" (with the input check: {100 * extra * 1e-6 / timings[case].median_s:.2f} % of {case})"
                )
            lines.append(f"| {key} | {o[key]:+.0f}{share} |")
    if report.optimizer:
        opt = report.optimizer
        lines += ["", f"AdamW step over {opt['parameters'] / 1e6:.1f} M parameters:", ""]
        lines += ["| implementation | ms | / fastest |", "|---|---:|---:|"]
        for name, ms in opt["ms_per_step"].items():
            lines.append(f"| {name} | {ms:.1f} | {opt['relative_to_fastest'][name]:.2f} |")
    if report.precision:
        lines += ["", "bf16 autocast vs fp32, same batch and mask:", ""]
        lines += [
            "| model | max abs Δ logits (max abs logit) | rel Δ loss per task | grad cosine |",
            "|---|---:|---|---:|",
        ]
        for base, p in report.precision.items():
            losses = ", ".join(f"{t} {v:.1e}" for t, v in p["loss_rel_diff"].items())
            lines.append(
                f"| {base} | {p['logits_max_abs_diff']:.2e} ({p['logits_max_abs']:.2f}) | {losses} | "
                f"{p['grad_cosine']:.4f} |"
            )
    return "\n".join(lines)


# -- the command --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtl-hf bench",
        description=(
            "Measure training-step and inference speed, memory, the AdamW step and bf16 autocast of mtl-hf "
            "models against transformers' ViTForImageClassification / ViTForMaskedImageModeling (and timm "
            "when installed) on the same config, batch and inputs, interleaved in one process; print "
            "median times, MFU and same-run ratios with their goals."
        ),
        epilog=(
            "On a shared machine set --threads to the cores really free: extra threads spin-wait and "
            "slow every step. Ratios are robust to load; absolute times are not."
        ),
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="vits16", help="model size (default vits16)")
    parser.add_argument(
        "--quick", action="store_true", help="small size, few rounds: under a minute on a CPU"
    )
    parser.add_argument("--batch-size", type=int, help="batch size (default 8 for vits16, 16 for small)")
    parser.add_argument("--threads", type=int, help="torch threads (default: os.cpu_count())")
    parser.add_argument("--rounds", type=int, help="measured rounds (default 3; 5 with --quick)")
    parser.add_argument("--warmup", type=int, default=1, help="unrecorded warm-up rounds (default 1)")
    parser.add_argument(
        "--suites",
        help=f"comma-separated, from {', '.join(SUITES)} (default: all; --quick: all but memory, "
        "whose fresh processes take a minute of their own)",
    )
    parser.add_argument("--cases", help="comma-separated speed cases (default: all available)")
    parser.add_argument(
        "--memory-batch-size", type=int, help="batch of the memory suite (default 16 vits16, 32 small)"
    )
    parser.add_argument("--memory-parallel", type=int, default=2, help="memory processes at once (default 2)")
    parser.add_argument(
        "--clock",
        choices=("auto", "wall", "cpu"),
        default="auto",
        help="clock of the step times and ratios: process CPU time or wall-clock time (default auto: CPU "
        "time for a one-thread CPU run, which ignores time lost to other processes, else wall-clock)",
    )
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 autocast cases")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model before timing")
    parser.add_argument("--no-flops", action="store_true", help="skip FLOP counting (and MFU)")
    parser.add_argument(
        "--cpu", action="store_true", help="run on the CPU even when an accelerator is present"
    )
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    return parser


def default_cases(device: torch.device, bf16: bool) -> list[str]:
    names = [n for n in TRAIN_CASES + INFERENCE_CASES + CEILING_CASES if bf16 or not n.endswith("_bf16")]
    if not timm_available():
        names.remove("timm_cls")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    size = "small" if args.quick else args.size
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    memory_batch = args.memory_batch_size or DEFAULT_MEMORY_BATCH[size]
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, size, memory_batch, threads, args.cpu)))
        return 0
    default_suites = [s for s in SUITES if s != "memory"] if args.quick else list(SUITES)
    suites = [s.strip() for s in args.suites.split(",") if s.strip()] if args.suites else default_suites
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        print(
            f"error: --suites: unknown suite {unknown[0]!r}; choose from {', '.join(SUITES)}", file=sys.stderr
        )
        return 2
    device = bench_device(args.cpu)
    clock = args.clock
    if clock == "auto":
        clock = "cpu" if device.type == "cpu" and threads == 1 else "wall"
    batch_size = args.batch_size or DEFAULT_BATCH[size]
    rounds = args.rounds or (5 if args.quick else 3)
    bf16 = not args.no_bf16
    names = default_cases(device, bf16)
    if args.cases:
        names = [c.strip() for c in args.cases.split(",") if c.strip()]
        valid = set(TRAIN_CASES + INFERENCE_CASES + CEILING_CASES)
        bad = [c for c in names if c not in valid]
        if bad:
            print(
                f"error: --cases: unknown case {bad[0]!r}; choose from {', '.join(sorted(valid))}",
                file=sys.stderr,
            )
            return 2
    report = BenchReport(
        machine=machine_info(device, threads),
        settings={
            "size": size,
            "backbone": SIZES[size],
            "batch_size": batch_size,
            "rounds": rounds,
            "warmup": args.warmup,
            "suites": suites,
            "compile": args.compile,
            "bf16": bf16,
            "clock": clock,
        },
    )
    timings: dict[str, Timing] = {}
    ratios: list[Ratio] = []
    if "memory" in suites:
        cases = QUICK_MEMORY_CASES if args.quick else MEMORY_CASES
        report.memory = memory_suite(cases, size, memory_batch, threads, args.cpu, args.memory_parallel)
    needs_models = "speed" in suites or "precision" in suites
    if needs_models:
        bench = Workbench(SIZES[size], batch_size, device, names=names, compile_models=args.compile)
        if "precision" in suites:
            report.precision = precision_suite(bench)
        if "speed" in suites:
            timings, ratios = speed_suite(
                bench, names, rounds, args.warmup, count_flops=not args.no_flops, clock=clock
            )
            report.timings = {
                n: {**asdict(t), "median_s": t.median_s, "min_s": t.min_s, "mfu": mfu(t, timings)}
                for n, t in timings.items()
            }
            report.ratios = [{**asdict(r), "met": r.met} for r in ratios]
        del bench
    if "overhead" in suites:
        report.overhead = overhead_suite(SIZES[size], batch_size, device)
    if "optimizer" in suites:
        report.optimizer = optimizer_suite(SIZES[size], device, rounds=max(rounds, 5) * 2, warmup=2)
    report.machine["loadavg_end"] = (
        [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    )
    print(format_report(report, timings, ratios))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(report), indent=2, default=_jsonable) + "\n")
        print(f"\nwrote {args.json}")
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return repr(value)


if __name__ == "__main__":
    sys.exit(main())
