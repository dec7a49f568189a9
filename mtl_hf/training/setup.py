"""Setting a run up: the Accelerator, the model its strategy trains, and the state of its output folder."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.utils import ProjectConfiguration, broadcast_object_list

from ..configuration_mtl import DINO_VIT_S16, MTLConfig
from ..data.channels import data_channels
from ..heads import TaskHead
from ..modeling_mtl import MTLModel
from ..options import OptionsError, from_dict
from ..run_folder import RunFolder, RunFolderError
from .strategies import get_strategy
from .trackers import tracker_names

if TYPE_CHECKING:
    from .config import RunConfig


def make_accelerator(config: RunConfig) -> Accelerator:
    """The run's Accelerator: accumulation, trackers and a seeded sampler from the config; precision,
    processes and the rest from the launcher (``accelerate launch``, ``accelerate config``).

    Raises:
        TrackerError: ``training.report_to`` names an unknown tracker or one whose package is missing.
    """
    cfg = config.training
    return Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with=tracker_names(cfg.report_to) or None,
        project_config=ProjectConfiguration(
            project_dir=config.output_dir, logging_dir=str(RunFolder(config.output_dir).tracker_logs)
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
        # Heads outside the current phase (MIM while fine-tuning) receive no gradient.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def build_model(config: RunConfig) -> MTLModel:
    """The model a run trains: pretrained backbone (``model.backbone``) or a fresh one, carrying the tasks
    and weighting its strategy asks for."""
    section = config.model
    strategy = get_strategy(config.training.strategy)
    tasks = strategy.model_tasks(section.tasks if section.tasks is not None else MTLConfig().tasks or {})
    weighting = strategy.model_weighting(section.weighting)
    channels = section.num_channels or data_channels(config.data)
    if section.backbone is not None:
        model = MTLModel.from_backbone(
            section.backbone,
            tasks=tasks,
            weighting=weighting,
            view_layout=section.view_layout,
            lora=section.lora,
            num_channels=channels,
        )
    else:
        model = MTLModel(
            MTLConfig(
                backbone_config=with_channels(section.backbone_config, channels),
                tasks=tasks,
                weighting=weighting,
                view_layout=section.view_layout,
                lora=section.lora,
            )
        )
    if section.attn_implementation is not None:
        model.set_attn_implementation(section.attn_implementation)
    if config.training.freeze_backbone:
        model.backbone.requires_grad_(False)
    if config.training.gradient_checkpointing:
        model.activation_checkpointing_enable()
    return model


def fit_heads_to_training_data(
    model: MTLModel, train: Any, task_columns: Mapping[str, str]
) -> dict[str, Any]:
    """Let each head adapt to its task's targets in the training split (:meth:`TaskHead.fit_training_targets`:
    the regression head's standardisation, say) and record what it set in the model's config, so that
    ``save_pretrained`` keeps it; return ``{task: options set}``.

    Args:
        model: The model being set up.
        train: The training split (a ``datasets.Dataset``, before any image transform).
        task_columns: ``{task: column}`` of the supervised tasks.
    """
    fitted = {}
    for task, column in task_columns.items():
        head = model.head(task)
        if type(head).fit_training_targets is TaskHead.fit_training_targets:
            continue  # nothing to fit: leave the column unread
        values = train.with_format(None)[column]
        rows = [
            [math.nan if v is None else float(v) for v in (r if isinstance(r, list) else [r])] for r in values
        ]
        updates = head.fit_training_targets(np.asarray(rows, dtype=np.float64).reshape(len(rows), -1))
        if updates:
            model.config.tasks[task] = {**model.config.tasks[task], **updates}  # type: ignore[index]
            fitted[task] = updates
    return fitted


def check_hub_options(config: RunConfig) -> None:
    """Fail now, not after training, on a bad model-card option of the push that ends the run."""
    if config.hub.repo_id is not None:
        from ..hub import ModelCardOptions

        from_dict(ModelCardOptions, config.hub.card, "hub.card")


@dataclass(frozen=True)
class RunStart:
    """How a run begins in its folder.

    Attributes:
        resume: ``False`` for a fresh start, else ``True`` (the newest intact checkpoint) or a checkpoint.
        run_id: The identity of the run: new on a fresh start, the folder's on resume.
    """

    resume: str | bool
    run_id: str | None


def start_in_folder(
    run: RunFolder, accelerator: Accelerator, resume: str | bool, overwrite: bool
) -> RunStart:
    """Check that a run may start in ``run`` as asked, and make the folder ready (every process calls it,
    the main process holding the run's lock).

    A finished run is kept unless ``overwrite``; an unfinished one needs ``resume`` or ``overwrite``.
    Overwriting removes the previous run's checkpoints and outputs first (so that nothing of it can be
    resumed or reported), unless an unfinished run is resumed. Leftovers of writes a killed run
    interrupted are removed.

    Raises:
        RunFolderError: the folder holds a run that may not be replaced, saying which flag to pass.
    """
    finished = run.is_finished()
    if finished and not overwrite:
        raise RunFolderError(
            f"{run.path} holds a finished run; pass --overwrite to train again there, or choose another output_dir"
        )
    if not resume and run.latest_checkpoint() is not None and not overwrite:
        raise RunFolderError(
            f"{run.path} holds checkpoints of an unfinished run: pass --resume to continue it or --overwrite to start afresh"
        )
    fresh = not resume or finished
    accelerator.wait_for_everyone()  # every process has read the folder before it changes
    if accelerator.is_main_process:
        for leftover in run.remove_interrupted_writes():
            accelerator.print(f"Removed {leftover}, left by a run killed while writing it")
        if fresh and overwrite:
            run.clear_outputs()
    run_id = [uuid.uuid4().hex if fresh else run.run_id()]
    broadcast_object_list(run_id)
    accelerator.wait_for_everyone()
    return RunStart(resume=False if fresh else resume, run_id=run_id[0])


def with_channels(backbone_config: Mapping[str, Any] | None, channels: int | None) -> dict[str, Any] | None:
    """A fresh backbone's config dict with ``num_channels`` set to ``channels``.

    Raises:
        OptionsError: the config sets a different ``num_channels`` explicitly.
    """
    if channels is None:
        return dict(backbone_config) if backbone_config is not None else None
    if backbone_config is None:
        return {"model_type": "vit", **DINO_VIT_S16, "num_channels": channels}
    given = backbone_config.get("num_channels")
    if given is not None and int(given) != channels:
        raise OptionsError(
            f"model.backbone_config.num_channels: {given}, but the data gives {channels} channels; "
            f"remove it (or set model.num_channels: {channels})"
        )
    return {**backbone_config, "num_channels": channels}
