"""Train one model with one strategy: ``accelerate launch -m mtl_hf.train --config CONFIG.yaml [overrides]``.

The same code runs as ``mtl-hf train CONFIG.yaml [overrides]``. Read :func:`train` top to bottom: set
up Accelerate, build the data and the model, then run the strategy's phases (see
:mod:`mtl_hf.training.phases`); every epoch ends with validation and a checkpoint; the run ends with
the best model evaluated once on the test split.

Accelerate does all device work: mixed precision, gradient accumulation, DDP / FSDP come from the
launch configuration (``accelerate config``) or flags (``--mixed_precision bf16``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.utils import gather_object, set_seed
from tqdm.auto import tqdm

from .configuration_mtl import MTLConfig
from .data.errors import CacheWriteError, DataError
from .errors import MtlHfError
from .modeling_mtl import MTLModel
from .options import OptionsError, from_dict
from .security import UnsafeCheckpointError, check_training_checkpoint
from .training.checkpointing import (
    RunFolderError,
    RunLock,
    checkpoint_dir,
    commit_folder,
    latest_checkpoint,
    prune_checkpoints,
    read_state,
    write_atomically,
)
from .training.config import RunConfig, dump_config, load_config
from .training.evaluation_loop import evaluate, write_test_outputs
from .training.faults import (
    DATA_ERRORS_FILE,
    BatchAgreement,
    CheckpointWriteError,
    DataFaultError,
    DataFaultMonitor,
    at_step_boundary,
    checkpoint_write_guard,
    guard_training_data,
)
from .training.inputs import TrainingData, build_training_data, make_loader
from .training.metrics_log import MetricsLog
from .training.optim import build_optimizer, phase_lr_factor, set_learning_rates
from .training.phases import plan_phases, supervised_tasks, tasks_for_strategy
from .training.plots import plot_training_curves
from .training.run_info import write_run_info
from .training.state import TrainerState
from .weighting import BackwardContext, SharedFeatureRecorder, plot_weights

BEST_MODEL = "best_model"


@dataclass
class TrainResult:
    """What :func:`train` returns: where the outputs are, the trained model (weights of the last step,
    unwrapped; the best model is in ``output_dir / "best_model"``) and the final trainer state."""

    output_dir: Path
    model: MTLModel
    state: TrainerState


class TrainingError(MtlHfError, RuntimeError):
    """Training cannot go on (e.g. too many consecutive non-finite losses); a checkpoint was kept."""


def build_model(config: RunConfig) -> MTLModel:
    """The model a run trains: pretrained backbone (``model.backbone``) or a fresh one."""
    section = config.model
    tasks = tasks_for_strategy(
        section.tasks if section.tasks is not None else MTLConfig().tasks or {}, config.training.strategy
    )
    # STL trains one kind of task: its weighting is the plain sum (options naming dropped tasks would not apply).
    weighting = {"type": "fixed"} if config.training.strategy == "stl" else section.weighting
    if section.backbone is not None:
        model = MTLModel.from_backbone(
            section.backbone, tasks=tasks, weighting=weighting, view_layout=section.view_layout
        )
    else:
        config_ = MTLConfig(
            backbone_config=section.backbone_config,
            tasks=tasks,
            weighting=weighting,
            view_layout=section.view_layout,
        )
        model = MTLModel(config_)
    if section.attn_implementation is not None:
        model.set_attn_implementation(section.attn_implementation)
    if config.training.freeze_backbone:
        model.backbone.requires_grad_(False)
    if config.training.gradient_checkpointing:
        model.activation_checkpointing_enable()
    return model


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
        resume: ``True`` resumes from the newest checkpoint in ``output_dir``; a path resumes from that one.
        overwrite: Allow starting afresh in a folder that holds a finished run.
    """
    cfg = config.training
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with=cfg.trackers or None,
        project_dir=config.output_dir,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
        # Heads outside the current phase (MIM while fine-tuning) receive no gradient.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    set_seed(cfg.seed)
    out = Path(config.output_dir)
    lock = RunLock(out)
    if accelerator.is_main_process:
        lock.acquire()
        if lock.stale_owner is not None:
            accelerator.print(f"Taking over the stale lock of a run that is gone: {lock.stale_owner}")
    try:
        _check_output_dir(out, resume, overwrite)
        accelerator.wait_for_everyone()
        return _train(config, data, accelerator, out, resume)
    finally:
        accelerator.end_training()
        if accelerator.is_main_process:
            lock.release()


def _train(
    config: RunConfig, data: TrainingData | None, accelerator: Accelerator, out: Path, resume: str | bool
) -> TrainResult:
    cfg = config.training
    log = MetricsLog(out, enabled=accelerator.is_main_process)

    if config.hub.repo_id is not None:  # fail now, not after training, on a bad card option
        from .hub import ModelCardOptions

        from_dict(ModelCardOptions, config.hub.card, "hub.card")

    # -- data and model --------------------------------------------------------------------------
    model = build_model(config)
    with accelerator.main_process_first():
        data = data if data is not None else build_training_data(config, model)
    phases = plan_phases(model.config, cfg)
    monitor = cfg.monitor or supervised_tasks(model.config)[0]
    if monitor not in model.config.task_names:
        raise OptionsError(
            f"training.monitor: no task named {monitor!r}; tasks are {', '.join(model.config.task_names)}"
        )
    selection_metric = model.head(monitor).selection_metric()
    if selection_metric is None:
        scored = [t for t in model.config.task_names if model.head(t).selection_metric() is not None]
        raise OptionsError(
            f"training.monitor: task {monitor!r} has no validation metric to select the best model by; "
            f"tasks with one: {', '.join(scored) or 'none'}"
        )
    num_layers = model.config.backbone_config.num_hidden_layers  # type: ignore[union-attr]
    optimizer = build_optimizer(model, config.optimizer, num_layers)
    guarded = guard_training_data(data)  # a bad sample stops or is skipped as training.on_data_error says
    train_loader = make_loader(
        guarded.train, guarded, cfg.batch_size, shuffle=True, seed=cfg.seed, num_workers=cfg.num_workers
    )
    eval_batch = cfg.eval_batch_size or cfg.batch_size
    val_loader = make_loader(
        data.validation, data, eval_batch, shuffle=False, seed=cfg.seed, num_workers=cfg.num_workers
    )
    model, optimizer, train_loader, val_loader = accelerator.prepare(
        model, optimizer, train_loader, val_loader
    )
    unwrapped: MTLModel = accelerator.unwrap_model(model)
    data_faults = DataFaultMonitor(
        cfg.on_data_error,
        cfg.max_skipped_samples,
        log_path=out / DATA_ERRORS_FILE if accelerator.is_main_process else None,
        echo=accelerator.print,
        sync=_agree_on_batches(accelerator) if accelerator.num_processes > 1 else None,
    )

    steps_per_epoch = math.ceil(len(train_loader) / cfg.gradient_accumulation_steps)
    phase_steps = [p.epochs * steps_per_epoch for p in phases]

    # -- resume or start ---------------------------------------------------------------------------
    state = TrainerState()
    if resume:
        source = latest_checkpoint(out) if resume is True else Path(resume)
        if source is None:
            raise RunFolderError(f"{out}: --resume given but no complete checkpoint in {out / 'checkpoints'}")
        check_training_checkpoint(source)  # before accelerate unpickles anything in it
        accelerator.load_state(str(source))
        state = TrainerState.from_dict(read_state(source))
        log.truncate_after(state.global_step)
        data_faults.truncate_log_after(state.global_step)
        accelerator.print(f"Resumed from {source} (step {state.global_step})")
    else:
        if accelerator.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.yaml").write_text(dump_config(config))
            write_run_info(out, config, data)
            log.path.unlink(missing_ok=True)
            (out / DATA_ERRORS_FILE).unlink(missing_ok=True)
    if cfg.trackers:
        accelerator.init_trackers(
            out.name, config={"strategy": cfg.strategy, "seed": cfg.seed, "lr": config.optimizer.lr}
        )

    any_process = _max_over_processes(accelerator)

    def stop_together(failure: CheckpointWriteError | None, folder: Path, previous: Path | None) -> None:
        """Every process raises if any failed to write ``folder`` (a process left waiting at the next
        barrier for one that died would hang the whole job); this is also that barrier."""
        if any_process(int(failure is not None)) == 0:
            return
        if failure is not None:
            raise failure
        kept = f"{previous} is intact." if previous is not None else "No earlier complete copy exists."
        raise CheckpointWriteError(f"writing {folder} failed on another process (its error says why). {kept}")

    def save_checkpoint() -> None:
        final = checkpoint_dir(out, state.global_step)
        if accelerator.is_main_process:
            final.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: Path) -> None:
            accelerator.save_state(str(tmp), safe_serialization=True)
            if accelerator.is_main_process:
                state.save(tmp / "trainer_state.json")

        # Every rank writes into one temporary folder (each its own RNG state); rank 0 then renames it.
        tmp = final.parent / f".tmp-{final.name}"
        previous = latest_checkpoint(out)
        if accelerator.is_main_process and tmp.exists():
            shutil.rmtree(tmp)  # left by a run killed while saving: start from an empty folder
        accelerator.wait_for_everyone()
        failure = None
        try:
            with checkpoint_write_guard(final, tmp, previous):  # a full disk: say where, keep the previous
                write(tmp)
        except CheckpointWriteError as exc:
            failure = exc
        stop_together(failure, final, previous)
        if accelerator.is_main_process:
            commit_folder(tmp, final)
        if accelerator.is_main_process:
            prune_checkpoints(out, cfg.keep_checkpoints)
        accelerator.wait_for_everyone()

    def checkpoint_on_fault() -> Path | None:
        """A resumable checkpoint of the last completed step, if one can be taken here."""
        if not at_step_boundary(state.batches_in_epoch, cfg.gradient_accumulation_steps):
            return latest_checkpoint(out)
        save_checkpoint()
        return checkpoint_dir(out, state.global_step)

    def save_best(metric: float) -> None:
        if not all(torch.isfinite(p).all() for p in unwrapped.parameters()):
            accelerator.print(
                f"Not saving step {state.global_step} as best: the model has NaN or inf weights"
            )
            return
        if accelerator.is_main_process:

            def write(tmp: Path) -> None:
                unwrapped.save_pretrained(tmp, safe_serialization=True)
                data.processor.save_pretrained(tmp)
                (tmp / "selection.json").write_text(
                    json.dumps(
                        {
                            "monitor": monitor,
                            "metric": selection_metric,
                            "value": metric,
                            "step": state.global_step,
                        },
                        indent=2,
                    )
                )

        previous = out / BEST_MODEL if (out / BEST_MODEL).is_dir() else None
        failure = None
        if accelerator.is_main_process:
            try:
                with checkpoint_write_guard(out / BEST_MODEL, None, previous):
                    write_atomically(out / BEST_MODEL, write)
            except CheckpointWriteError as exc:
                failure = exc
        stop_together(failure, out / BEST_MODEL, previous)
        state.best_metric, state.best_step = metric, state.global_step

    # -- the phases of the strategy -------------------------------------------------------------------
    progress = tqdm(
        total=sum(phase_steps),
        initial=state.global_step,
        desc=cfg.strategy,
        disable=not accelerator.is_local_main_process,
    )
    # The weighter's calling protocol is the same for every method (see mtl_hf/weighting/base.py).
    weighter = unwrapped.weighter
    context = BackwardContext.from_accelerator(accelerator, model)
    recorder = SharedFeatureRecorder(unwrapped.heads.values(), owner=unwrapped)
    window: dict[str, list[torch.Tensor]] = {}
    window_finite = True
    replay: list[dict[str, Any]] = []  # the step's micro-batches, for weighters that need losses after it
    while state.phase_index < len(phases) and not state.stopped_early:
        current = state.phase_index
        phase = phases[current]
        phase_start = sum(phase_steps[:current])
        if state.epoch_in_phase == 0 and state.batches_in_epoch == 0 and state.phase_index > 0:
            optimizer.state.clear()  # a new phase starts with a fresh optimizer state (and schedule)
        while state.phase_index == current and not state.stopped_early:
            epoch = sum(p.epochs for p in phases[:current]) + state.epoch_in_phase
            model.train()
            train_loader.set_epoch(epoch)
            loader = (
                accelerator.skip_first_batches(train_loader, state.batches_in_epoch)
                if state.batches_in_epoch
                else train_loader
            )
            for batch in data_faults.batches(loader, state, epoch, checkpoint=checkpoint_on_fault):
                with accelerator.accumulate(model), weighter.forward_context(context):
                    labels = {k: v for k, v in batch["labels"].items() if k in phase.tasks}
                    output = model(pixel_values=batch["pixel_values"], labels=labels, tasks=list(phase.tasks))
                    step_context = context.step(
                        sync_gradients=accelerator.sync_gradients, shared_features=recorder.features
                    )
                    # Called on every micro-batch, finite or not: gradient methods combine on the last one.
                    weights = weighter.backward(output.task_losses, output.loss, step_context)
                    if not bool(torch.isfinite(output.loss.detach())):
                        window_finite = False
                    for name, value in {"": output.loss, **(output.task_losses or {})}.items():
                        window.setdefault(name, []).append(value.detach().float())
                    if weighter.needs_losses_after_step:
                        replay.append(
                            {"pixel_values": batch["pixel_values"], "labels": labels, "tasks": list(phase.tasks),
                             "bool_masked_pos": output.bool_masked_pos}
                        )  # fmt: skip
                    state.batches_in_epoch += 1
                    if not accelerator.sync_gradients:
                        continue
                    # Every process must agree on skipping, or DDP ranks would diverge.
                    finite = accelerator.reduce(
                        torch.tensor(float(window_finite), device=accelerator.device), "mean"
                    )
                    if finite.item() == 1.0:
                        if cfg.max_grad_norm is not None:
                            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                        factor = phase_lr_factor(
                            state.global_step - phase_start, [phase_steps[current]], config.schedule
                        )
                        set_learning_rates(optimizer, config.optimizer.lr, factor)
                        optimizer.step()
                        state.nonfinite_streak = 0
                    else:
                        state.nonfinite_streak += 1
                        state.nonfinite_total += 1
                        accelerator.print(
                            f"step {state.global_step}: non-finite loss, step skipped "
                            f"({state.nonfinite_streak} in a row, {state.nonfinite_total} in all)"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    window_finite = True
                # One optimizer step done: losses averaged over its micro-batches and over processes.
                names = list(window)
                means = accelerator.reduce(
                    torch.stack([torch.stack(window[n]).mean() for n in names]), "mean"
                )
                step_losses = dict(zip(names, means.tolist(), strict=True))
                window = {}
                state.global_step += 1
                progress.update(1)
                task_losses = {k: v for k, v in step_losses.items() if k}
                if all(math.isfinite(v) for v in task_losses.values()):
                    weighter.on_step_end(task_losses)
                    state.add_epoch_losses(task_losses)
                    if replay:
                        weighter.on_losses_after_step(losses_after_step(model, replay, accelerator))
                replay = []
                state.add_log_values(
                    {"loss": step_losses[""], **{f"loss/{k}": v for k, v in task_losses.items()}}
                )
                if state.global_step % cfg.log_every_steps == 0:
                    row = {"step": state.global_step, "epoch": epoch, "split": "train", "phase": phase.name}
                    row |= state.pop_log_means()
                    row |= {f"weight/{k}": float(v) for k, v in weights.items()}
                    row["lr"] = optimizer.param_groups[-1]["lr"]
                    log.write(row)
                    accelerator.log(
                        {k: v for k, v in row.items() if isinstance(v, float)}, step=state.global_step
                    )
                if state.nonfinite_streak > cfg.max_nonfinite_steps:
                    save_checkpoint()
                    raise TrainingError(
                        f"{state.nonfinite_streak} consecutive steps had a NaN or inf loss (limit "
                        f"training.max_nonfinite_steps={cfg.max_nonfinite_steps}); stopped at step {state.global_step}. "
                        "Lower the learning rate or check the data; the last checkpoint is kept."
                    )
                if cfg.save_every_steps and state.global_step % cfg.save_every_steps == 0:
                    save_checkpoint()

            # -- end of epoch: validate, select, checkpoint --------------------------------------------
            weighter.on_epoch_end(epoch, state.pop_epoch_means())  # training losses of the epoch
            metrics = evaluate(model, val_loader, accelerator, phase.tasks, seed=cfg.seed)
            log.write(
                {"step": state.global_step, "epoch": epoch, "split": "val", "phase": phase.name, **metrics}
            )
            accelerator.log({f"val/{k}": v for k, v in metrics.items()}, step=state.global_step)
            score = metrics.get(f"{selection_metric}/{monitor}")
            if phase.selects_model and score is not None and math.isfinite(score):
                if state.best_metric is None or score > state.best_metric:
                    save_best(score)
                    state.evals_without_improvement = 0
                else:
                    state.evals_without_improvement += 1
                    if (
                        cfg.early_stopping_patience is not None
                        and state.evals_without_improvement >= cfg.early_stopping_patience
                    ):
                        state.stopped_early = True
                        accelerator.print(
                            f"Early stopping: no improvement in {state.evals_without_improvement} evaluations"
                        )
            state.epoch_in_phase += 1
            state.batches_in_epoch = 0
            if state.epoch_in_phase == phase.epochs:
                state.phase_index += 1
                state.epoch_in_phase = 0
            save_checkpoint()
    progress.close()

    # -- the test split, once, with the best model ---------------------------------------------------------
    if data.test is not None and (out / BEST_MODEL).is_dir():
        best = MTLModel.from_pretrained(out / BEST_MODEL)
        unwrapped.load_state_dict(best.state_dict())
        test_loader = accelerator.prepare(
            make_loader(
                data.test, data, eval_batch, shuffle=False, seed=cfg.seed, num_workers=cfg.num_workers
            )
        )
        write_test_outputs(model, test_loader, val_loader, accelerator, out, monitor, cfg)
    state.finished = True
    if accelerator.is_main_process:
        plot_training_curves(log.path, out / "plots" / "training_curves.png")
        with contextlib.suppress(ValueError):  # a run too short to log any training row
            plot_weights(log.path, out / "plots" / "task_weights.png")
        (out / "trainer_state.json").write_text(state.to_json())
        if config.hub.repo_id is not None:
            _push(config, out, accelerator)
    accelerator.wait_for_everyone()
    return TrainResult(output_dir=out, model=unwrapped, state=state)


def _push(config: RunConfig, out: Path, accelerator: Accelerator) -> None:
    from .hub import ModelCardOptions, push_to_hub

    hub = config.hub
    assert hub.repo_id is not None
    result = push_to_hub(
        out,
        hub.repo_id,
        private=hub.private or None,
        revision=hub.revision,
        commit_message=hub.commit_message,
        card=from_dict(ModelCardOptions, hub.card, "hub.card"),
    )
    accelerator.print(f"Pushed the run to {result.repo_id}@{result.revision}: {result.commit_url}")


def _max_over_processes(accelerator: Accelerator) -> Callable[[int], int]:
    """``code -> max(code over all processes)``, so every process acts on the same data fault."""

    def reduce(code: int) -> int:
        gathered = accelerator.gather(torch.tensor([code], device=accelerator.device))
        return int(gathered.max().item())

    return reduce


@torch.no_grad()
def losses_after_step(
    model: torch.nn.Module, replay: list[dict[str, Any]], accelerator: Accelerator
) -> dict[str, float]:
    """Task losses of an optimizer step's micro-batches (same inputs, labels and masks) with the
    updated weights: means over the micro-batches and over processes, as the step's own losses."""
    window: dict[str, list[torch.Tensor]] = {}
    for inputs in replay:
        for name, value in (model(**inputs).task_losses or {}).items():
            window.setdefault(name, []).append(value.detach().float())
    names = list(window)
    means = accelerator.reduce(torch.stack([torch.stack(window[n]).mean() for n in names]), "mean")
    return dict(zip(names, means.tolist(), strict=True))


def _agree_on_batches(accelerator: Accelerator) -> BatchAgreement:
    """The data-fault monitor's agreement: the maximum code and, when any process skipped samples,
    every process's skipped samples (only then are Python objects exchanged)."""

    def agree(code: int, skipped: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
        mine = torch.tensor([[code, len(skipped)]], device=accelerator.device)
        everyone = accelerator.gather(mine).view(-1, 2)
        if int(everyone[:, 1].sum()) > 0:
            skipped = list(gather_object(skipped))
        return int(everyone[:, 0].max()), skipped

    return agree


def _check_output_dir(out: Path, resume: str | bool, overwrite: bool) -> None:
    finished_marker = out / "trainer_state.json"
    if finished_marker.exists() and not overwrite:
        try:
            finished = json.loads(finished_marker.read_text()).get("finished", False)
        except (OSError, json.JSONDecodeError):
            finished = False
        if finished:
            raise RunFolderError(
                f"{out} holds a finished run; pass --overwrite to train again there, or choose another output_dir"
            )
    if not resume and latest_checkpoint(out) is not None and not overwrite:
        raise RunFolderError(
            f"{out} holds checkpoints of an unfinished run: pass --resume to continue it or --overwrite to start afresh"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtl-hf train",
        description=(
            "Train an MTL / STL / pretrain-then-fine-tune model as configured. Every config key can be "
            "overridden: --training.epochs 5 or training.epochs=5. Launch with `accelerate launch -m "
            "mtl_hf.train ...` for several GPUs or processes, mixed precision and the rest of Accelerate."
        ),
    )
    parser.add_argument("config", nargs="?", help="YAML run configuration (see configs/)")
    parser.add_argument("--config", dest="config_flag", help="same as the positional CONFIG")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                        help="continue from the newest checkpoint in output_dir, or from CHECKPOINT")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="allow starting afresh over a finished run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    path = args.config_flag or args.config
    try:
        config = load_config(path, overrides)
        train(config, resume=args.resume, overwrite=args.overwrite)
    except (
        OptionsError,
        RunFolderError,
        TrainingError,
        DataError,
        DataFaultError,
        CheckpointWriteError,
        CacheWriteError,
        UnsafeCheckpointError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
