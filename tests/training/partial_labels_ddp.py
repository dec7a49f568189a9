"""Run under two processes: partially labelled batches, where each process lacks some task's labels.

Run in two processes by ``tests/two_process_runs.py`` (scenario ``partial_labels``) for
``test_partial_labels_ddp.py`` (the run's own Accelerator, :func:`mtl_hf.training.setup.make_accelerator`: DDP over gloo with
``find_unused_parameters``). Writes into the output folder:

* ``init.safetensors`` (rank 0): the model both processes start from;
* ``grads<rank>.pt``: after one forward and ``accelerator.backward`` of a global batch of 8 in which
  task ``a`` is labelled on process 0 only and task ``b`` on process 1 only, each process's gradients;
* ``steps<rank>.pt``: for every built-in weighter, the real training step (:class:`OptimizerStep`) over
  batches where one process has no label for a task, or none at all, each step followed by the
  weighter's end-of-epoch hook (a step is an epoch here, so that DWA's history fills): each step's task
  losses and task weights, and a checksum of every parameter and buffer afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from safetensors.torch import save_file

from mtl_hf import MTLConfig, MTLModel
from mtl_hf.heads import IGNORE_INDEX
from mtl_hf.options import from_dict
from mtl_hf.training.config import RunConfig
from mtl_hf.training.setup import make_accelerator
from mtl_hf.training.step import OptimizerStep
from tests.training.synthetic import TINY_BACKBONE, base_config

NAN = float("nan")
TASKS = {
    "a": {"type": "binary_classification"},
    "b": {"type": "multiclass_classification", "num_classes": 3},
    "mim": {"type": "mim", "mask_patch_size": 16},
}
WEIGHTINGS = {
    "fixed": {"type": "fixed"},
    "uncertainty": {"type": "uncertainty"},
    "dwa": {"type": "dwa"},
    "rlw": {"type": "rlw", "seed": 5},
    "famo": {"type": "famo"},
    "pcgrad": {"type": "pcgrad"},
    "mgda_features": {"type": "mgda", "gradients": "features"},
    "cagrad": {"type": "cagrad"},
    "nash_mtl": {"type": "nash_mtl", "gradients": "features"},
    "gradnorm": {"type": "gradnorm"},
}


def global_batch() -> dict:
    """8 images; ``a`` labelled in rows 0, 2, 3 (process 0's half), ``b`` in rows 4, 5, 7 (process 1's)."""
    g = torch.Generator().manual_seed(7)
    return {
        "pixel_values": torch.randn(8, 1, 32, 32, generator=g),
        "labels": {
            "a": torch.tensor([1.0, NAN, 0.0, 1.0, NAN, NAN, NAN, NAN]),
            "b": torch.tensor([IGNORE_INDEX] * 4 + [0, 2, IGNORE_INDEX, 1]),
        },
    }


def half(batch: dict, rank: int) -> dict:
    rows = slice(4 * rank, 4 * rank + 4)
    return {
        "pixel_values": batch["pixel_values"][rows],
        "labels": {k: v[rows] for k, v in batch["labels"].items()},
    }


def model_for(weighting: dict) -> MTLModel:
    torch.manual_seed(0)
    return MTLModel(MTLConfig(backbone_config=TINY_BACKBONE, tasks=TASKS, weighting=weighting))


def main(out: str) -> None:
    torch.set_num_threads(1)
    raw = base_config(out, max_grad_norm=None)
    raw["model"]["tasks"] = TASKS
    config = from_dict(RunConfig, raw)
    accelerator = make_accelerator(config)
    rank = accelerator.process_index
    assert accelerator.num_processes == 2, accelerator.num_processes
    batch = global_batch()
    mine = {
        k: v.to(accelerator.device) if isinstance(v, torch.Tensor) else v
        for k, v in half(batch, rank).items()
    }

    # -- one backward: each head's gradient is its labelled process's, averaged over the two ----------
    model = model_for({"type": "fixed"})
    if rank == 0:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out}/init.safetensors")
    prepared = accelerator.prepare(model)
    prepared.train()
    output = prepared(**mine, tasks=["a", "b"])
    accelerator.backward(output.loss)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    torch.save(
        {"task_losses": {k: v.detach() for k, v in output.task_losses.items()}, "grads": grads},
        f"{out}/grads{rank}.pt",
    )

    # -- the real training step, for every weighter -----------------------------------------------------
    nothing = {"a": torch.full((4,), NAN), "b": torch.full((4,), IGNORE_INDEX)}
    steps = [
        (mine, ["a", "b", "mim"]),  # each process lacks one task
        (mine, ["a", "b"]),  # the same, without the self-supervised task
        ({**mine, "labels": mine["labels"] if rank == 0 else nothing}, ["a", "b"]),  # process 1: no label
    ]
    results = {}
    for name, weighting in WEIGHTINGS.items():
        model = model_for(weighting)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        prepared, optimizer = accelerator.prepare(model, optimizer)
        prepared.train()
        step = OptimizerStep(accelerator, prepared, optimizer, config)
        step.start_phase(len(steps), 0)
        losses, weights = [], []
        for epoch, (inputs, tasks) in enumerate(steps):
            result = step.micro_batch(inputs, tasks)
            assert result is not None
            model.weighter.on_epoch_end(epoch, result.task_losses)  # the epoch's mean: its one step
            losses.append(result.task_losses)
            weights.append(result.weights)
        sums = {n: float(v.detach().double().sum()) for n, v in model.state_dict().items()}
        results[name] = {"losses": losses, "weights": weights, "sums": sums}
    torch.save(results, f"{out}/steps{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1])
