"""The training loop: ``train(config)`` runs one model with one strategy, top to bottom.

Set up (Accelerate, the model the strategy asks for, data, optimizer, the run folder), then the
strategy's phases (:mod:`mtl_hf.training.strategies`): every phase runs epochs of optimizer steps
(:class:`~mtl_hf.training.step.OptimizerStep`), every epoch ends with validation, the choice of the best
model (:class:`~mtl_hf.training.selection.ModelSelection`) and a checkpoint
(:class:`~mtl_hf.training.checkpointing.Checkpointer`); the run ends with the best model evaluated once
on the test split. Everything a resumed run needs is in the trainer state and the checkpoint.

Accelerate does all device work: mixed precision, gradient accumulation, DDP / FSDP come from the
launch configuration (``accelerate config``) or flags (``--mixed_precision bf16``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from ..atomic import replacing
from ..errors import MtlHfError
from ..modeling_mtl import MTLModel
from ..run_folder import RunFolder
from ..weighting import plot_weights
from .checkpointing import Checkpointer, RunLock
from .evaluation_loop import evaluate, write_test_outputs
from .faults import DataFaultMonitor, guard_training_data
from .inputs import TrainingData, build_training_data, check_data_source, make_loader
from .metrics_log import MetricsLog
from .optim import build_optimizer
from .plots import plot_training_curves
from .processes import agree_on_batches
from .report import SplitReport, test_metrics_lines
from .run_info import write_run_info
from .selection import ModelSelection
from .setup import build_model, check_hub_options, make_accelerator, start_in_folder
from .state import TrainerState
from .step import OptimizerStep, StepResult, describe_culprit
from .strategies import Phase, get_strategy
from .trackers import log_figures, start_trackers

if TYPE_CHECKING:
    from accelerate import Accelerator

    from .config import RunConfig


@dataclass
class TrainResult:
    """What :func:`train` returns: where the outputs are, the trained model (the best model's weights
    when one was selected and tested, else the last step's; unwrapped) and the final trainer state."""

    output_dir: Path
    model: MTLModel
    state: TrainerState


class TrainingError(MtlHfError, RuntimeError):
    """Training cannot go on (e.g. too many consecutive non-finite losses); a checkpoint was kept."""


def train(
    config: RunConfig,
    data: TrainingData | None = None,
    *,
    resume: str | bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Run training as configured.

    Args:
        config: The validated run configuration.
        data: Prepared splits; built from ``config.data`` when ``None``.
        resume: ``True`` resumes from the newest intact checkpoint in ``output_dir``; a path from that one.
        overwrite: Allow starting afresh in a folder that holds a finished (or unfinished) run.
    """
    cfg = config.training
    accelerator = make_accelerator(config)
    set_seed(cfg.seed)
    run = RunFolder(config.output_dir)
    lock = RunLock(run.path) if accelerator.is_main_process else None
    try:
        if data is None:
            check_data_source(config)  # a missing data folder: said before a folder or a model is made
        if lock is not None:
            run.ensure_writable()  # a file, /proc, a read-only mount: say so before anything starts
        if lock is not None and lock.acquire().stale_owner is not None:
            accelerator.print(f"Taking over the stale lock of a run that is gone: {lock.stale_owner}")
        start = start_in_folder(run, accelerator, resume, overwrite)
        check_hub_options(config)

        # -- set-up: model, data, optimizer, loaders, all prepared by Accelerate -------------------------
        model = build_model(config)
        with accelerator.main_process_first():
            data = data if data is not None else build_training_data(config, model)
        splits = SplitReport.of(data)
        for line in [*splits.lines(), *(f"warning: {w}" for w in splits.warnings())]:
            accelerator.print(line)
        splits.check()  # an empty validation or test split stops the run here, before any training
        phases = get_strategy(cfg.strategy).plan(model.config, cfg)
        selection = ModelSelection.for_model(model, cfg.monitor, cfg.early_stopping_patience, cfg.seed)
        num_layers = model.config.backbone_config.num_hidden_layers  # type: ignore[union-attr]
        optimizer = build_optimizer(model, config.optimizer, num_layers)
        guarded = guard_training_data(data)  # a bad sample stops or is skipped as training.on_data_error says
        train_loader = make_loader(guarded.train, guarded, cfg.batch_size, shuffle=True, seed=cfg.seed, num_workers=cfg.num_workers)  # fmt: skip
        val_loader = make_loader(data.validation, data, _eval_batch(config), shuffle=False, seed=cfg.seed, num_workers=cfg.num_workers)  # fmt: skip
        model, optimizer, train_loader, val_loader = accelerator.prepare(
            model, optimizer, train_loader, val_loader
        )
        unwrapped: MTLModel = accelerator.unwrap_model(model)
        log = MetricsLog(run.path, enabled=accelerator.is_main_process)
        checkpointer = Checkpointer(run, accelerator, cfg.keep_checkpoints, cfg.gradient_accumulation_steps)
        data_faults = DataFaultMonitor(
            cfg.on_data_error,
            cfg.max_skipped_samples,
            log_path=run.data_errors_file if accelerator.is_main_process else None,
            echo=accelerator.print,
            sync=agree_on_batches(accelerator),
        )

        # -- resume, or record the start of a new run ----------------------------------------------------
        state = TrainerState(run_id=start.run_id)
        if start.resume:
            source, state = checkpointer.resume(start.resume, start.run_id)
            log.truncate_after(state.global_step)
            data_faults.truncate_log_after(state.global_step)
            accelerator.print(f"Resumed from {source} (step {state.global_step})")
        elif accelerator.is_main_process:
            record_start(run, config, data, log, start.run_id)
        start_trackers(accelerator, run, config, state.global_step if start.resume else None)

        # -- the phases of the strategy ------------------------------------------------------------------
        steps_per_epoch = math.ceil(len(train_loader) / cfg.gradient_accumulation_steps)
        step = OptimizerStep(accelerator, model, optimizer, config)
        progress = tqdm(
            total=sum(p.epochs for p in phases) * steps_per_epoch,
            initial=state.global_step,
            desc=cfg.strategy,
            disable=not accelerator.is_local_main_process,
        )
        while state.phase_index < len(phases) and not state.stopped_early:
            current, phase = state.phase_index, phases[state.phase_index]
            earlier_epochs = sum(p.epochs for p in phases[:current])
            step.start_phase(
                phase.epochs * steps_per_epoch, state.global_step - earlier_epochs * steps_per_epoch
            )
            while state.phase_index == current and not state.stopped_early:
                epoch = earlier_epochs + state.epoch_in_phase
                model.train()
                train_loader.set_epoch(epoch)
                loader = accelerator.skip_first_batches(train_loader, state.batches_in_epoch) if state.batches_in_epoch else train_loader  # fmt: skip
                on_fault = functools.partial(checkpointer.save_on_fault, state)
                for batch in data_faults.batches(loader, state, epoch, checkpoint=on_fault):
                    result = step.micro_batch(batch, phase.tasks)
                    state.batches_in_epoch += 1
                    if result is not None:
                        progress.update(1)
                        after_step(result, state, phase, epoch, config, log, accelerator, checkpointer)

                # -- end of epoch: validate, select, checkpoint ------------------------------------------
                step.weighter.on_epoch_end(epoch, state.pop_epoch_means())  # training losses of the epoch
                validate_and_select(
                    model, val_loader, phase, epoch, state, selection, checkpointer, data, log
                )
                state.end_epoch(phase.epochs)
                checkpointer.save(state)
        progress.close()

        # -- the test split, once, with the best model; then the run's final records ---------------------
        if data.test is not None and run.has_best_model():
            unwrapped.load_state_dict(MTLModel.from_pretrained(run.best_model).state_dict())
            test_loader = accelerator.prepare(make_loader(data.test, data, _eval_batch(config), shuffle=False, seed=cfg.seed, num_workers=cfg.num_workers))  # fmt: skip
            results = write_test_outputs(model, test_loader, val_loader, accelerator, run.path, selection.monitor, cfg)  # fmt: skip
            names = {t: unwrapped.head(t).output_names() for t in results}
            for line in [*test_metrics_lines(results, names), *(f"warning: {w}" for w in splits.warnings())]:
                accelerator.print(f"test: {line}")
        state.finished = True
        if accelerator.is_main_process:
            finish(run, config, state, accelerator)
        accelerator.wait_for_everyone()
        return TrainResult(output_dir=run.path, model=unwrapped, state=state)
    finally:
        accelerator.end_training()
        if lock is not None:
            lock.release()


def validate_and_select(
    model: torch.nn.Module,
    val_loader: Any,
    phase: Phase,
    epoch: int,
    state: TrainerState,
    selection: ModelSelection,
    checkpointer: Checkpointer,
    data: TrainingData,
    log: MetricsLog,
) -> None:
    """Evaluate on the validation split, log it, and save the model as ``best_model`` if it improved."""
    accelerator = checkpointer.accelerator
    metrics = evaluate(model, val_loader, accelerator, phase.tasks, seed=selection.seed)
    log.write({"step": state.global_step, "epoch": epoch, "split": "val", "phase": phase.name, **metrics})
    accelerator.log({f"val/{k}": v for k, v in metrics.items()}, step=state.global_step)
    best = selection.improved(metrics, phase, state)
    record = selection.record(best, state.global_step) if best is not None else None
    if record is not None and checkpointer.save_best(accelerator.unwrap_model(model), data.processor, record):
        state.best_metric, state.best_step = best, state.global_step
    if state.stopped_early:
        accelerator.print(f"Early stopping: no improvement in {state.evals_without_improvement} evaluations")


def after_step(
    result: StepResult,
    state: TrainerState,
    phase: Phase,
    epoch: int,
    config: RunConfig,
    log: MetricsLog,
    accelerator: Accelerator,
    checkpointer: Checkpointer,
) -> None:
    """Count the step, log it every ``log_every_steps``, stop after too many non-finite losses, and
    checkpoint every ``save_every_steps``."""
    cfg = config.training
    state.global_step += 1
    if result.applied:
        state.nonfinite_streak = 0
        state.nonfinite_culprits = {}
    else:
        state.nonfinite_streak += 1
        state.nonfinite_total += 1
        culprits = result.nonfinite_culprits()
        for culprit in culprits:
            state.nonfinite_culprits[culprit] = state.nonfinite_culprits.get(culprit, 0) + 1
        accelerator.print(
            f"step {state.global_step - 1}: non-finite loss of {', '.join(map(describe_culprit, culprits))}, step skipped "
            f"({state.nonfinite_streak} in a row, {state.nonfinite_total} in all)"
        )
    if result.finite:
        state.add_epoch_losses(result.task_losses)
    state.add_log_values({"loss": result.loss, **{f"loss/{k}": v for k, v in result.task_losses.items()}})
    if state.global_step % cfg.log_every_steps == 0:
        row: dict[str, Any] = {
            "step": state.global_step,
            "epoch": epoch,
            "split": "train",
            "phase": phase.name,
        }
        row |= state.pop_log_means()
        row |= {f"weight/{k}": v for k, v in result.weights.items()}
        row["lr"] = result.lr
        log.write(row)
        accelerator.log({k: v for k, v in row.items() if isinstance(v, float)}, step=state.global_step)
    if state.nonfinite_streak > cfg.max_nonfinite_steps:
        checkpointer.save(state)
        blamed = ", ".join(
            f"{describe_culprit(culprit)} in {count} of them"
            for culprit, count in sorted(state.nonfinite_culprits.items())
        )
        raise TrainingError(
            f"{state.nonfinite_streak} consecutive steps had a NaN or inf loss ({blamed}; limit "
            f"training.max_nonfinite_steps={cfg.max_nonfinite_steps}); stopped at step {state.global_step}. "
            "Lower the learning rate or check that task's data and head; the last checkpoint is kept."
        )
    if cfg.save_every_steps and state.global_step % cfg.save_every_steps == 0:
        checkpointer.save(state)


def record_start(
    run: RunFolder, config: RunConfig, data: TrainingData, log: MetricsLog, run_id: str | None
) -> None:
    """A fresh run's records: ``config.yaml``, ``run_info.json`` (with the run's identity), empty logs."""
    from .config import dump_config

    run.path.mkdir(parents=True, exist_ok=True)
    run.write_config(dump_config(config))
    write_run_info(run, config, data, run_id)
    log.path.unlink(missing_ok=True)
    run.data_errors_file.unlink(missing_ok=True)
    shutil.rmtree(run.tracker_logs, ignore_errors=True)  # a killed earlier start's events, like its log


def finish(run: RunFolder, config: RunConfig, state: TrainerState, accelerator: Accelerator) -> None:
    """Plots, the final trainer state (which marks the run finished) and the optional push to the Hub."""
    with replacing(run.plots / "training_curves.png") as tmp:
        plot_training_curves(run.metrics_file, tmp)
    with contextlib.suppress(ValueError), replacing(run.plots / "task_weights.png") as tmp:
        plot_weights(run.metrics_file, tmp)  # ValueError: a run too short to log any training row
    log_figures(accelerator, run.plots.glob("*.png"), state.global_step)
    run.write_trainer_state(state.to_json())
    hub = config.hub
    if hub.repo_id is not None:
        from ..hub import ModelCardOptions, push_to_hub
        from ..options import from_dict

        result = push_to_hub(
            run.path,
            hub.repo_id,
            private=hub.private or None,
            revision=hub.revision,
            commit_message=hub.commit_message,
            card=from_dict(ModelCardOptions, hub.card, "hub.card"),
            adapter_only=hub.adapter_only,
        )
        accelerator.print(f"Pushed the run to {result.repo_id}@{result.revision}: {result.commit_url}")


def _eval_batch(config: RunConfig) -> int:
    return config.training.eval_batch_size or config.training.batch_size
