"""The training configuration: typed sections read from YAML, overridable from the command line.

A run is described by one YAML file (see ``configs/``) with the sections below; every key can be
overridden on the command line as ``--training.lr 3e-4`` or ``optimizer.lr=3e-4``. Unknown keys and
wrong types fail before anything runs, naming the dotted key.

Example::

    output_dir: runs/brats-mtl
    model:
      backbone: facebook/dino-vits16      # Hub id or local folder (safetensors), or leave out and give
      tasks:                               #   backbone_config for a freshly initialised backbone
        tumour: {type: binary_classification}
        mim: {type: mim, mask_ratio: 0.6}
      weighting: {type: fixed, weights: {mim: 1.0}}
    data: {...}                            # see mtl_hf.data
    training: {strategy: mtl, epochs: 30, batch_size: 32}
    optimizer: {lr: 5.0e-4, weight_decay: 0.05, layer_decay: 0.75}
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..options import OptionsError, from_dict, to_dict
from ..safe_yaml import YamlSyntaxError, load_yaml, read_yaml


@dataclass
class ModelSection:
    """The model: a pretrained or fresh backbone, the tasks and the weighting (see ``MTLConfig``).

    Attributes:
        backbone: Hub id or folder of a pretrained ViT / DINOv2 checkpoint (loaded with
            ``MTLModel.from_backbone``); ``None`` builds a fresh backbone from ``backbone_config``.
        backbone_config: Backbone config dict (with ``model_type``) used when ``backbone`` is ``None``;
            ``None`` means DINO ViT-S/16.
        tasks: ``{name: {type: head, ...options}}``; ``None`` means the paper's two tasks.
        weighting: ``{type: weighter, ...options}``; ``None`` means fixed weights of 1.
        view_layout: ``"two_pass"`` or ``"concat"`` (see ``MTLConfig``).
        attn_implementation: ``"sdpa"`` (default when ``None``), ``"eager"`` or another transformers backend.
        lora: ``{r, alpha, dropout, target_modules}``: LoRA adapters on a frozen backbone, heads fully
            trained (see :mod:`mtl_hf.lora`); ``None`` trains the whole backbone.
        num_channels: Input channels of the model; ``None`` (default): the data's when it has several
            (BraTS modalities, CT windows), else the backbone's. A pretrained backbone's patch
            embedding is adapted to them (``MTLModel.from_backbone(num_channels=...)``).
    """

    backbone: str | None = None
    backbone_config: dict[str, Any] | None = None
    tasks: dict[str, dict[str, Any]] | None = None
    weighting: dict[str, Any] | None = None
    view_layout: Literal["two_pass", "concat"] = "two_pass"
    attn_implementation: str | None = None
    lora: dict[str, Any] | None = None
    num_channels: int | None = None


@dataclass
class TrainingSection:
    """How to train.

    Attributes:
        strategy: ``"stl"`` (supervised tasks alone), ``"pretrain"`` (self-supervised tasks for
            ``pretrain_epochs``, then the supervised tasks from those weights with a fresh optimizer
            state and schedule) or ``"mtl"`` (all tasks jointly through the weighter).
        epochs: Epochs of supervised (or joint) training.
        pretrain_epochs: Epochs of the self-supervised phase of ``pretrain``.
        batch_size: Per-process batch size.
        eval_batch_size: Per-process batch size for validation and test (default: ``batch_size``).
        gradient_accumulation_steps: Micro-batches per optimizer step.
        max_grad_norm: Clip the global gradient norm to this value; ``None`` disables clipping.
        seed: Seed for everything (weights, sampling, masks, augmentation).
        num_workers: Dataloader worker processes (each limited to one thread).
        freeze_backbone: Train heads only (a linear probe).
        gradient_checkpointing: Recompute activations in backward to save memory.
        view_schedule: ``"sequential"`` (default): with a weighter that allows it (the loss-based ones),
            back-propagate each view (clean, masked, visible) as soon as its forward pass is done, so
            memory peaks at one view's activations; the gradient is the joint one. ``"joint"``: every
            view forward, then one backward (gradient-based weighters always run so). See
            :mod:`mtl_hf.training.view_schedule`.
        monitor: Task whose validation metric selects the best model (default: the first supervised task):
            the head's selection metric (:meth:`~mtl_hf.heads.TaskHead.selection_metric`: ROC AUC for a
            classification task, mean Dice for ``segmentation``, RMSE (lower is better) for ``regression``).
        early_stopping_patience: Stop after this many evaluations without improvement; ``None`` never stops.
        save_every_steps: Also checkpoint every this many optimizer steps (epochs always end with one).
        keep_checkpoints: How many of the newest checkpoints to keep.
        max_nonfinite_steps: Stop after this many consecutive steps with a NaN or inf loss (each is skipped).
        on_data_error: What a training sample that cannot be read does mid-run (a corrupt image, see
            :mod:`mtl_hf.training.faults`): ``"stop"`` (default) stops with a resumable checkpoint and an
            error naming the sample; ``"skip"`` leaves it out of its batch, counted in
            ``trainer_state.json`` and listed in ``data_errors.jsonl``. A data-loader worker that dies
            always stops the run with a resumable checkpoint.
        max_skipped_samples: With ``on_data_error: skip``, stop once more samples than this were skipped.
        log_every_steps: Write training metrics every this many optimizer steps.
        report_to: Experiment trackers that receive every ``metrics.jsonl`` row and the run's figures,
            by Accelerate's names: ``[tensorboard]``, ``[wandb, mlflow]``, ``all`` (every installed one)
            or ``none``; a comma-separated string is read as a list (``--training.report_to
            tensorboard,wandb``). See :mod:`mtl_hf.training.trackers`.
        bootstrap_resamples: Resamples for the test-set ROC AUC interval.
        confidence_level: Level of the test-set intervals.
    """

    strategy: Literal["stl", "pretrain", "mtl"] = "mtl"
    epochs: int = 10
    pretrain_epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int | None = None
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0
    seed: int = 0
    num_workers: int = 0
    freeze_backbone: bool = False
    gradient_checkpointing: bool = False
    view_schedule: Literal["joint", "sequential"] = "sequential"
    monitor: str | None = None
    early_stopping_patience: int | None = None
    save_every_steps: int | None = None
    keep_checkpoints: int = 2
    max_nonfinite_steps: int = 5
    on_data_error: Literal["stop", "skip"] = "stop"
    max_skipped_samples: int = 100
    log_every_steps: int = 10
    report_to: list[str] | str = field(default_factory=list)
    bootstrap_resamples: int = 1000
    confidence_level: float = 0.95

    def __post_init__(self) -> None:
        if isinstance(self.report_to, str):
            self.report_to = [name.strip() for name in self.report_to.split(",") if name.strip()]
        for name in ("epochs", "batch_size", "gradient_accumulation_steps", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("pretrain_epochs", "num_workers", "max_nonfinite_steps", "max_skipped_samples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be positive, got {self.max_grad_norm}")
        if not 0.0 < self.confidence_level < 1.0:
            raise ValueError(f"confidence_level must be in (0, 1), got {self.confidence_level}")


@dataclass
class OptimizerSection:
    """AdamW with decoupled weight decay, skipping biases and norms, with layer-wise lr decay.

    Attributes:
        lr: Peak learning rate of the heads (and of the last backbone layer).
        weight_decay: Decoupled weight decay for weight matrices (not biases, norms, tokens or embeddings).
        betas: Adam's betas.
        eps: Adam's epsilon.
        layer_decay: Backbone layer ``i`` of ``L`` gets ``lr * layer_decay ** (L + 1 - i)``, embeddings
            ``lr * layer_decay ** (L + 1)`` (BEiT / DINO fine-tuning); 1.0 disables it.
        implementation: ``"auto"`` (fused where torch supports it, else foreach), ``"fused"``,
            ``"foreach"`` or ``"loop"``.
    """

    lr: float = 5e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    layer_decay: float = 1.0
    implementation: Literal["auto", "fused", "foreach", "loop"] = "auto"

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}")


@dataclass
class ScheduleSection:
    """Learning-rate schedule, restarted at each training phase.

    Attributes:
        name: ``"cosine"``, ``"linear"`` (both to zero) or ``"constant"``, after warm-up.
        warmup_ratio: Share of a phase's steps spent warming up linearly from zero.
        warmup_steps: Warm-up steps; overrides ``warmup_ratio`` when given.
    """

    name: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = 0.05
    warmup_steps: int | None = None


@dataclass
class HubSection:
    """Push the run to the Hugging Face Hub when it finishes (``mtl-hf push`` does the same later).

    Attributes:
        repo_id: Repository to create or update, e.g. ``my-lab/brats-mtl``; ``None`` pushes nothing.
        private: Create the repository as private.
        revision: Branch to push to (created if missing).
        commit_message: Commit message (default: generated).
        card: Model-card options (``license``, ``datasets``, ``dataset_name``, ``base_model``, ``tags``,
            ``model_name``, ``description``; see ``mtl_hf.hub.ModelCardOptions``).
        adapter_only: For a LoRA run (``model.lora``): push only the adapter and the heads, which load
            onto the pretrained ``model.backbone`` (see :mod:`mtl_hf.lora_adapter`).

    The token comes from ``HF_TOKEN`` or ``hf auth login``, never from this file.
    """

    repo_id: str | None = None
    private: bool = False
    revision: str | None = None
    commit_message: str | None = None
    card: dict[str, Any] = field(default_factory=dict)
    adapter_only: bool = False


@dataclass
class RunConfig:
    """A whole training run.

    Attributes:
        output_dir: Where checkpoints, the best model, logs and results go.
        model, training, optimizer, schedule: See their sections.
        data: The data source, validated by ``mtl_hf.data`` (see its documentation).
        task_columns: ``{task: data column}`` feeding each supervised task its labels, e.g.
            ``{tumour: tumour}`` for BraTS slices; the column ``mask`` gives a segmentation task the
            slices' lesion masks (``{tumour: tumour, lesion: mask}``).
        hub: Optional push of the finished run to the Hub (see :class:`HubSection`).
        cache_dir: Where the Arrow cache of the data source goes (default: ``$MTL_HF_CACHE`` or
            ``~/.cache/mtl_hf``).
    """

    output_dir: str
    model: ModelSection = field(default_factory=ModelSection)
    data: dict[str, Any] = field(default_factory=dict)
    task_columns: dict[str, str] = field(default_factory=dict)
    cache_dir: str = field(default_factory=lambda: default_cache_dir())
    training: TrainingSection = field(default_factory=TrainingSection)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    hub: HubSection = field(default_factory=HubSection)


def default_cache_dir() -> str:
    import os

    return os.environ.get("MTL_HF_CACHE") or str(Path.home() / ".cache" / "mtl_hf")


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config, apply command-line overrides, and validate everything.

    Args:
        path: YAML file; ``None`` starts from defaults (then ``output_dir`` must be overridden).
        overrides: ``["training.lr=3e-4", "--model.view_layout", "concat", ...]``.

    Raises:
        OptionsError: naming the file and the dotted key of anything invalid.
    """
    raw: dict[str, Any] = {}
    where = "command line"
    if path is not None:
        where = str(path)
        loaded = read_yaml(path, "config file")
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise OptionsError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
        raw = loaded
    raw = apply_overrides(raw, overrides)
    try:
        return from_dict(RunConfig, raw)
    except OptionsError as exc:
        raise OptionsError(f"{where}: {exc}") from None


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Set dotted keys in a copy of ``raw`` from ``key=value`` or ``--key value`` items (values are YAML)."""
    result = copy.deepcopy(dict(raw))
    items = list(overrides)
    i = 0
    while i < len(items):
        item = items[i]
        if item.startswith("--"):
            key = item[2:]
            if "=" in key:
                key, text = key.split("=", 1)
            elif i + 1 < len(items):
                i += 1
                text = items[i]
            else:
                raise OptionsError(f"{item}: missing a value")
        elif "=" in item:
            key, text = item.split("=", 1)
        else:
            raise OptionsError(f"{item!r}: overrides look like key=value or --key value")
        set_dotted(result, key, parse_value(text, f"command line: {key}"))
        i += 1
    return result


def parse_value(text: str, where: str = "command line") -> Any:
    """A command-line value as YAML; numbers YAML 1.1 misses (``3e-4``) become floats; text that is not
    YAML stays a string. Read with :func:`~mtl_hf.safe_yaml.load_yaml`, so a value is bounded as a file is.

    Raises:
        OptionsError: naming ``where``: the value is valid YAML but too large or deep (an alias bomb).
    """
    try:
        value = load_yaml(text, where)
    except YamlSyntaxError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    if not all(parts):
        raise OptionsError(f"{key!r}: not a dotted key")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise OptionsError(f"{'.'.join(parts[: i + 1])}: is a value, cannot set {key}")
        node = child
    node[parts[-1]] = value


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML (what ``config.yaml`` in a run folder holds)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)
