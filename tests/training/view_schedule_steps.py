"""The gradients of both view schedules, optimizer step by optimizer step, in one process or in two.

For every loss-based weighting, two copies of a tiny model (classification on the clean view, MIM on
the masked view) go through the same micro-batches with :class:`~mtl_hf.training.step.OptimizerStep`
and gradient accumulation, one with ``training.view_schedule: joint``, one with ``sequential``. A hook
on each optimizer keeps every parameter's gradient just before each optimizer step; the step results
(losses, weights) and the weighter's state afterwards are kept too. Under DDP a communication hook
counts the gradient buckets all-reduced per optimizer step.

Run by ``test_view_schedule.py`` in its own process, and under two processes (DDP over gloo) by
``tests/two_process_runs.py`` (scenario ``view_schedule``) or as a script, ``python view_schedule_steps.py
OUT_DIR``, which writes ``rank<i>.pt``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from accelerate import Accelerator, DistributedDataParallelKwargs

from mtl_hf.options import from_dict
from mtl_hf.training.config import RunConfig
from mtl_hf.training.step import OptimizerStep
from tests.weighting.helpers import batches, shard, tiny_model

ACCUMULATION = 2
OPTIMIZER_STEPS = 3
MICRO_BATCH = 4  # per process

LOSS_WEIGHTINGS: dict[str, dict[str, Any]] = {
    "fixed": {"type": "fixed", "weights": {"tumour": 0.7, "grade": 1.3, "mim": 2.0}},
    "uncertainty": {"type": "uncertainty", "forms": {"tumour": "classification"}, "init_log_variance": 0.4},
    "dwa": {"type": "dwa", "temperature": 1.5},
    "rlw": {"type": "rlw", "seed": 3},
    "famo": {"type": "famo", "lr": 0.5},
}


def make_accelerator() -> Accelerator:
    """As training makes it (``find_unused_parameters``), on the CPU when there is no GPU."""
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=ACCUMULATION,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def run(
    accelerator: Accelerator,
    weighting: dict[str, Any],
    schedule: str,
    tasks: tuple[str, ...] = ("tumour", "grade", "mim"),
) -> dict[str, Any]:
    """Train a fresh tiny model for ``OPTIMIZER_STEPS`` steps on ``tasks``; what it did, step by step."""
    model = tiny_model(weighting)
    # DWA's weights move only after two epochs: give it a history, so its weights are not all 1.
    model.weighter.on_epoch_end(0, {"tumour": 0.9, "grade": 1.2, "mim": 0.5})
    model.weighter.on_epoch_end(1, {"tumour": 0.6, "grade": 1.1, "mim": 0.45})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    names = [name for name, _ in model.named_parameters()]
    model, optimizer = accelerator.prepare(model, optimizer)
    buckets = []
    if accelerator.num_processes > 1:
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        # DDP checks a hook's annotations, which postponed evaluation turns into strings: a lambda has none.
        model.register_comm_hook(
            None, lambda state, bucket: buckets.append(1) or allreduce_hook(state, bucket)
        )
    config = from_dict(
        RunConfig,
        {
            "output_dir": "unused",
            "training": {
                "view_schedule": schedule,
                "max_grad_norm": None,
                "gradient_accumulation_steps": ACCUMULATION,
            },
            "schedule": {"name": "constant", "warmup_steps": 0},
        },
    )
    step = OptimizerStep(accelerator, model, optimizer, config)
    step.start_phase(OPTIMIZER_STEPS, 0)
    parameters = list(accelerator.unwrap_model(model).parameters())
    grads: list[dict[str, torch.Tensor]] = []
    all_reduces: list[int] = []

    def keep_gradients(*_: Any) -> None:
        grads.append(
            {n: p.grad.clone() for n, p in zip(names, parameters, strict=True) if p.grad is not None}
        )
        all_reduces.append(len(buckets))
        buckets.clear()

    optimizer.optimizer.register_step_pre_hook(keep_gradients)
    torch.manual_seed(7)  # the masks MIM draws: the same for both schedules
    results = []
    rank, world = accelerator.process_index, accelerator.num_processes
    for batch in batches(OPTIMIZER_STEPS * ACCUMULATION, MICRO_BATCH * world, seed=5):
        result = step.micro_batch(shard(batch, rank, world), list(tasks))
        if result is not None:
            results.append(
                {"loss": result.loss, "task_losses": result.task_losses, "weights": result.weights}
            )
    weighter = accelerator.unwrap_model(model).weighter
    return {
        "grads": grads,
        "all_reduces": all_reduces,
        "results": results,
        "state": {k: v.clone() for k, v in weighter.state_dict().items()},
        "by_view": step.by_view,
    }


def compare_schedules(accelerator: Accelerator) -> dict[str, dict[str, dict[str, Any]]]:
    """``{weighting: {"joint": run, "sequential": run}}``."""
    return {
        label: {schedule: run(accelerator, weighting, schedule) for schedule in ("joint", "sequential")}
        for label, weighting in LOSS_WEIGHTINGS.items()
    }


def main(out_dir: str) -> None:
    """In each of two processes: both schedules of every loss-based weighting, saved as ``rank<i>.pt``."""
    torch.set_num_threads(1)
    accelerator = make_accelerator()
    assert accelerator.num_processes == 2, f"expected two processes, got {accelerator.num_processes}"
    torch.save(compare_schedules(accelerator), f"{out_dir}/rank{accelerator.process_index}.pt")


if __name__ == "__main__":
    main(sys.argv[1])
