"""Masked-image-modeling reconstructions for figures (the paper's Fig. 1): original, masked input,
reconstruction and error, with one mask shared by every model compared.

Any :class:`~mtl_hf.heads.reconstruction.ReconstructionHead` works: the SimMIM ``mim`` head (the
backbone sees mask tokens at the patches in ``bool_masked_pos``), the MAE ``mae`` head (the backbone
sees only the visible patches) and third-party ones. Each model runs
``model(pixel_values, bool_masked_pos=mask, tasks=[task])`` with the same ``mask``; its head predicts
every pixel, and only the head's interface is used from there on.

For display, everything is brought back to image intensities with the image processor's
``unnormalize``, after the head's ``reconstruction_to_pixels`` (a head trained with ``norm_target``
predicts each patch normalised by its own statistics; the original patch's are put back, as MAE's
figures do). The error map is the squared error per pixel between that prediction and the input,
averaged over channels, in the normalised input space, and zero on visible patches (no loss is taken
there); the per-image loss is the head's own (``loss(..., per_sample=True)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..heads.reconstruction import ReconstructionHead


@dataclass
class Reconstruction:
    """One model's reconstructions of a batch, in display space (un-normalised) unless stated.

    Attributes:
        original: ``(B, C, H, W)`` the input image.
        masked_input: ``(B, C, H, W)`` the input with masked patches set to 0 (black).
        reconstruction: ``(B, C, H, W)`` the head's prediction for every pixel.
        composite: ``(B, C, H, W)`` visible pixels from the input, masked ones from the prediction.
        error: ``(B, H, W)`` squared error per pixel (normalised input space, channel mean), 0 on
            visible patches.
        pixel_mask: ``(B, H, W)`` True on masked pixels.
        loss: ``(B,)`` the head's loss per image (its ``mse`` or ``l1`` error over masked pixels and channels).
    """

    original: torch.Tensor
    masked_input: torch.Tensor
    reconstruction: torch.Tensor
    composite: torch.Tensor
    error: torch.Tensor
    pixel_mask: torch.Tensor
    loss: torch.Tensor


def mim_task_of(model: Any, mim_task: str | None = None) -> str:
    """The name of ``model``'s reconstruction task (``mim_task`` if given, checked): the first task
    whose head is a :class:`~mtl_hf.heads.reconstruction.ReconstructionHead`."""
    names = [n for n in model.config.task_names if isinstance(model.heads[n], ReconstructionHead)]
    if mim_task is not None:
        if mim_task not in names:
            raise ValueError(
                f"task {mim_task!r} is not a masked-image-modeling task; MIM tasks: {names or 'none'}"
            )
        return mim_task
    if not names:
        raise ValueError(
            f"the model has no masked-image-modeling task (tasks: {', '.join(model.config.task_names)})"
        )
    return names[0]


def shared_mask(
    model: Any, batch_size: int, grid_size: tuple[int, int], *, mim_task: str | None = None, seed: int = 0
) -> torch.Tensor:
    """A reproducible ``(B, h*w)`` mask drawn by ``model``'s reconstruction head (``sample_mask``: SimMIM
    block masks for ``mim``, random patches for ``mae``) from a generator seeded with ``seed``, to pass
    to every model compared."""
    head = model.heads[mim_task_of(model, mim_task)]
    generator = torch.Generator().manual_seed(seed)
    return head.sample_mask(batch_size, grid_size, torch.device("cpu"), generator=generator)


@torch.no_grad()
def reconstruct(
    model: Any,
    pixel_values: torch.Tensor,
    bool_masked_pos: torch.Tensor,
    image_processor: Any,
    *,
    mim_task: str | None = None,
) -> Reconstruction:
    """Run ``model``'s reconstruction head on ``pixel_values`` (normalised) with the given mask; see
    :class:`Reconstruction`. The model runs in eval mode (its mode is restored)."""
    task = mim_task_of(model, mim_task)
    head = model.heads[task]
    was_training = model.training
    model.eval()
    try:
        x_dev = pixel_values.to(device=model.device, dtype=model.dtype)
        mask_dev = bool_masked_pos.to(model.device)
        out = model(x_dev, bool_masked_pos=mask_dev, tasks=[task])
    finally:
        model.train(was_training)
    if not out.reconstructions or task not in out.reconstructions:
        raise ValueError(f"task {task!r} ({type(head).__name__}) returned no reconstruction")
    pred = out.reconstructions[task].float().cpu()
    x = pixel_values.float().cpu()
    mask = bool_masked_pos.cpu()
    m = head.pixel_mask(mask, model.grid_size(pixel_values))
    pred_pixels = head.reconstruction_to_pixels(pred, x)
    original = image_processor.unnormalize(x)
    reconstruction = image_processor.unnormalize(pred_pixels)
    return Reconstruction(
        original=original,
        masked_input=original * (1.0 - m),
        reconstruction=reconstruction,
        composite=original * (1.0 - m) + reconstruction * m,
        error=((pred_pixels - x) ** 2).mean(dim=1) * m[:, 0],
        pixel_mask=m[:, 0].bool(),
        loss=head.loss(pred, x, mask, per_sample=True),
    )
