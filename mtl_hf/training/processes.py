"""What the processes of a distributed run agree on, so that every one of them takes the same decision.

A process that acted alone (skipping a step, stopping on a fault, waiting at a barrier for a process
that raised) would make the ranks of a DDP run diverge or hang. Each helper here is a collective:
every process must call it at the same point.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from accelerate.utils import gather_object

if TYPE_CHECKING:
    from accelerate import Accelerator

    from .faults import BatchAgreement


def max_over_processes(accelerator: Accelerator) -> Callable[[int], int]:
    """``code -> max(code over all processes)``."""

    def reduce(code: int) -> int:
        gathered = accelerator.gather(torch.tensor([code], device=accelerator.device))
        return int(gathered.max().item())

    return reduce


def all_true(accelerator: Accelerator, flag: bool) -> bool:
    """Whether ``flag`` holds on every process."""
    return bool(
        accelerator.reduce(torch.tensor(float(flag), device=accelerator.device), "mean").item() == 1.0
    )


def means(
    accelerator: Accelerator, values: Mapping[str, Sequence[torch.Tensor]], names: Sequence[str]
) -> dict[str, float]:
    """``{name: mean of its scalars over every process}`` for each of ``names`` (the same list on every
    process) that any process has values for; a process may lack some names (a task absent from its
    batches), so the mean is a sum over processes divided by their count of values, in one collective."""
    if not names:
        return {}
    sums = [
        torch.stack(list(values[n])).float().sum().cpu() if values.get(n) else torch.zeros(()) for n in names
    ]
    counts = torch.tensor([float(len(values.get(n, ()))) for n in names])
    local = torch.cat([torch.stack(sums), counts]).to(accelerator.device)
    total = accelerator.reduce(local, "sum").cpu()
    k = len(names)
    return {n: float(total[i] / total[k + i]) for i, n in enumerate(names) if total[k + i] > 0}


def agree_on_batches(accelerator: Accelerator) -> BatchAgreement | None:
    """The data-fault monitor's agreement (``None`` in a single process): the maximum code and, when any
    process skipped samples, every process's skipped samples (only then are Python objects exchanged)."""
    if accelerator.num_processes == 1:
        return None

    def agree(code: int, skipped: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
        mine = torch.tensor([[code, len(skipped)]], device=accelerator.device)
        everyone = accelerator.gather(mine).view(-1, 2)
        if int(everyone[:, 1].sum()) > 0:
            skipped = list(gather_object(skipped))
        return int(everyone[:, 0].max()), skipped

    return agree
