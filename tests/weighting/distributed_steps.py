"""Training steps on two processes under Accelerate (DDP over gloo), run by ``tests/two_process_runs.py``
(scenario ``weighting``) for test_distributed.py.

Each process trains a tiny model with every weighter of ``DISTRIBUTED_WEIGHTINGS`` for a few optimizer
steps with gradient accumulation, on its half of every micro-batch, following the weighter calling
protocol, and saves the resulting parameters, logged weights and weighter state.
"""

from __future__ import annotations

import sys

import torch
from accelerate import Accelerator

from mtl_hf.weighting import BackwardContext
from tests.weighting.helpers import (
    ACCUMULATION_STEPS,
    DISTRIBUTED_WEIGHTINGS,
    LEARNING_RATE,
    MICRO_BATCH,
    OPTIMIZER_STEPS,
    FeatureRecorder,
    batches,
    flat_params,
    micro_step,
    shard,
    tiny_model,
)


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    # Without a GPU, Accelerate needs cpu=True to run the launched processes as one gloo group.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(), gradient_accumulation_steps=ACCUMULATION_STEPS
    )
    rank, world = accelerator.process_index, accelerator.num_processes
    assert world == 2, f"expected two processes, got {world}"
    data = batches(OPTIMIZER_STEPS * ACCUMULATION_STEPS, MICRO_BATCH)
    results = {}
    for label, weighting in DISTRIBUTED_WEIGHTINGS.items():
        model = tiny_model(weighting)
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
        model, optimizer = accelerator.prepare(model, optimizer)
        unwrapped = accelerator.unwrap_model(model)
        recorder = FeatureRecorder(unwrapped)
        context = BackwardContext.from_accelerator(accelerator, model)
        weighter = unwrapped.weighter
        logged, sums, count = [], {}, 0
        for batch in data:
            with accelerator.accumulate(model):
                weights, losses = micro_step(
                    model, weighter, context, recorder, shard(batch, rank, world), accelerator.sync_gradients
                )
                optimizer.step()
                optimizer.zero_grad()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            if accelerator.sync_gradients:
                names = sorted(sums)
                means = accelerator.reduce(torch.tensor([sums[k] / count for k in names]), reduction="mean")
                weighter.on_step_end(dict(zip(names, means.tolist(), strict=True)))
                logged.append({k: float(v) for k, v in weights.items()})
                sums, count = {}, 0
        recorder.remove()
        results[label] = {
            "params": flat_params(unwrapped),
            "weights": logged,
            "state": {k: v.clone() for k, v in weighter.state_dict().items()},
        }
    torch.save(results, f"{out_dir}/rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1])
