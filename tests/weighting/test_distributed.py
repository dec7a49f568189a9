"""Two real processes (DDP over gloo, launched with ``accelerate launch``) with gradient accumulation
make the same update as one process on the same global batch."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TwoProcessRuns
from tests.weighting.helpers import (
    ACCUMULATION_STEPS,
    DISTRIBUTED_WEIGHTINGS,
    LEARNING_RATE,
    MICRO_BATCH,
    OPTIMIZER_STEPS,
    FeatureRecorder,
    batches,
    flat_params,
    plain_context,
    run_steps,
    tiny_model,
)


@pytest.fixture(scope="module")
def two_process_results(two_process_runs: TwoProcessRuns) -> list[dict]:
    """What each process of tests/weighting/distributed_steps.py ended with."""
    out = two_process_runs.folder("weighting")
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


def single_process(weighting: dict, accumulate: bool) -> dict:
    """One process, whole micro-batches (both processes' halves), same accumulation -- or, with
    ``accumulate=False``, each optimizer step's micro-batches concatenated into one batch."""
    model = tiny_model(weighting)
    recorder = FeatureRecorder(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    data = batches(OPTIMIZER_STEPS * ACCUMULATION_STEPS, MICRO_BATCH)
    if accumulate:
        context = plain_context(model, backward=lambda loss, **kw: (loss / ACCUMULATION_STEPS).backward(**kw))
        flags = [(i + 1) % ACCUMULATION_STEPS == 0 for i in range(len(data))]
    else:
        context = plain_context(model)
        data = [_concat(data[i : i + ACCUMULATION_STEPS]) for i in range(0, len(data), ACCUMULATION_STEPS)]
        flags = [True] * len(data)
    logged = run_steps(
        model, model.weighter, context, recorder, data, flags, optimizer, lambda losses: losses
    )
    return {"params": flat_params(model), "weights": logged, "state": model.weighter.state_dict()}


def _concat(parts: list[dict]) -> dict:
    return {
        "pixel_values": torch.cat([p["pixel_values"] for p in parts]),
        "labels": {k: torch.cat([p["labels"][k] for p in parts]) for k in parts[0]["labels"]},
        "bool_masked_pos": torch.cat([p["bool_masked_pos"] for p in parts]),
    }


def assert_same(result: dict, reference: dict) -> None:
    torch.testing.assert_close(result["params"], reference["params"], atol=2e-5, rtol=1e-4)
    for got, expected in zip(result["weights"], reference["weights"], strict=True):
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-6)
    for key, value in reference["state"].items():
        torch.testing.assert_close(result["state"][key], value, atol=1e-5, rtol=1e-4, msg=key)


@pytest.mark.two_processes("weighting")
@pytest.mark.parametrize("label", list(DISTRIBUTED_WEIGHTINGS))
def test_two_processes_match_one_process_on_the_global_batch(label: str, two_process_results) -> None:
    rank0, rank1 = (r[label] for r in two_process_results)
    # both processes hold the same model and weighter state
    torch.testing.assert_close(rank0["params"], rank1["params"], atol=0, rtol=0)
    for key, value in rank0["state"].items():
        torch.testing.assert_close(rank1["state"][key], value, atol=0, rtol=0, msg=key)
    assert rank0["weights"] == rank1["weights"]
    assert_same(rank0, single_process(DISTRIBUTED_WEIGHTINGS[label], accumulate=True))
    # gradient-based methods on shared parameters combine once per optimizer step: the update equals
    # that of the whole step's global batch in one pass
    weighting = DISTRIBUTED_WEIGHTINGS[label]
    if label in ("pcgrad", "mgda", "cagrad", "nash_mtl"):
        assert weighting.get("gradients", "parameters") == "parameters"
        assert_same(rank0, single_process(weighting, accumulate=False))
