"""The device the harness runs on, how it waits for it, and bf16 autocast as Accelerate applies it."""

from __future__ import annotations

import contextlib

import torch


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
