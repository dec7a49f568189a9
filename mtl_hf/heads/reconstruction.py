"""The base of heads that reconstruct masked patches (``mim``, ``mae``, and third-party ones).

A reconstruction head reads a masked or visible view, predicts every pixel of the image and is scored
on the pixels of masked patches only. What differs between methods is how the prediction is made
(:meth:`ReconstructionHead.reconstruct`), how masks are drawn (:meth:`ReconstructionHead.sample_mask`)
and, with ``norm_target``, over which values a target patch is normalised
(:attr:`ReconstructionHead.normalize_per_channel`). Everything else is here, once, and is all the
evaluation loop and ``mtl-hf explain`` use:

* :meth:`~ReconstructionHead.pixel_mask`: the ``(B, 1, H, W)`` mask of masked pixels;
* :meth:`~ReconstructionHead.loss`: the head's loss (batch or per sample), with ``M`` the pixel mask,
  ``C`` channels, ``t`` the target (the normalised input, or each of its patches normalised by its own
  statistics with ``norm_target``) and ``r`` the reconstruction::

      loss = sum(M * err(r, t)) / (C * max(1, sum(M)))     err = (r - t)**2 (mse) | |r - t| (l1)

  i.e. the mean error over masked pixels and channels; a mask that hides nothing gives exactly zero;
* :meth:`~ReconstructionHead.reconstruction_to_pixels`: the prediction in the space of the input
  (with ``norm_target`` the input patch's statistics are put back, as MAE's figures do);
* :meth:`~ReconstructionHead.reconstruction_error`: per sample, the mean squared error over masked
  pixels and channels between that and the input (``mse/<task>`` in validation metrics), comparable
  between heads whatever their loss or target.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from ..masking import denormalize_patches, normalize_patches, pixel_mask
from .base import BackboneFeatures, HeadOptions, HeadOutput, TaskHead


@dataclass
class ReconstructionOptions(HeadOptions):
    """Options every reconstruction head has.

    Attributes:
        loss: ``"mse"`` (default) or ``"l1"``.
        norm_target: Predict each patch normalised by its own mean and standard deviation (MAE's
            ``norm_pix_loss``); default False, so reconstructions are in the input's intensity space.
    """

    loss: Literal["mse", "l1"] = "mse"
    norm_target: bool = False


class ReconstructionHead(TaskHead):
    """Base of self-supervised heads that reconstruct the pixels of masked patches.

    Subclasses set ``view`` (``"masked"`` or ``"visible"``), ``Options`` (a :class:`ReconstructionOptions`)
    and :attr:`normalize_per_channel`, and implement :meth:`~mtl_hf.heads.base.TaskHead.sample_mask` and
    :meth:`reconstruct`.
    ``forward`` returns the loss and the ``(B, C, H, W)`` reconstruction.
    """

    Options: ClassVar[type[HeadOptions]] = ReconstructionOptions
    options: ReconstructionOptions
    requires_labels = False
    hub_task = "masked-image-modeling"
    normalize_per_channel: ClassVar[bool] = True
    """With ``norm_target``: normalise each patch per channel (SimMIM) or over all its ``p * p * C``
    values (MAE)."""

    @abstractmethod
    def reconstruct(self, features: BackboneFeatures) -> torch.Tensor:
        """Predict every pixel, ``(B, C, H, W)``, from the view's features (``bool_masked_pos`` is set)."""

    def forward(self, features: BackboneFeatures, labels: torch.Tensor | None = None) -> HeadOutput:
        if features.bool_masked_pos is None:
            raise ValueError(
                f"task {self.task_name!r} ({self.registered_name}) needs the {self.view} view (bool_masked_pos)"
            )
        reconstruction = self.reconstruct(features)
        loss = self.loss(reconstruction, features.pixel_values, features.bool_masked_pos)
        return HeadOutput(loss=loss, reconstruction=reconstruction)

    def pixel_mask(self, bool_masked_pos: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
        """``(B, 1, H, W)`` float mask, 1 on pixels of masked patches."""
        return pixel_mask(bool_masked_pos, grid_size, self.backbone.patch_size)

    def target(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """What the head learns to predict, in float32: ``pixel_values``, or with ``norm_target`` each of
        its patches normalised by its own statistics."""
        target = pixel_values.float()
        if self.options.norm_target:
            target = normalize_patches(
                target, self.backbone.patch_size, per_channel=self.normalize_per_channel
            )
        return target

    def loss(
        self,
        reconstruction: torch.Tensor,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor,
        *,
        per_sample: bool = False,
    ) -> torch.Tensor:
        """The head's loss (see the module docstring): over the batch, or ``(B,)`` one per sample."""
        grid = _grid_size(pixel_values, self.backbone.patch_size)
        return masked_mean_error(
            reconstruction,
            self.target(pixel_values),
            self.pixel_mask(bool_masked_pos, grid),
            self.options.loss,
            per_sample=per_sample,
        )

    def reconstruction_to_pixels(
        self, reconstruction: torch.Tensor, pixel_values: torch.Tensor
    ) -> torch.Tensor:
        """The reconstruction in the space of ``pixel_values`` (for figures and errors): with
        ``norm_target`` the head predicts normalised patches, so the statistics of ``pixel_values``'
        patches are put back."""
        if not self.options.norm_target:
            return reconstruction
        return denormalize_patches(
            reconstruction, pixel_values, self.backbone.patch_size, per_channel=self.normalize_per_channel
        )

    def reconstruction_error(
        self, reconstruction: torch.Tensor, pixel_values: torch.Tensor, bool_masked_pos: torch.Tensor
    ) -> torch.Tensor:
        """``(B,)`` mean squared error over masked pixels and channels between the reconstruction (in
        pixel space, :meth:`reconstruction_to_pixels`) and ``pixel_values``."""
        grid = _grid_size(pixel_values, self.backbone.patch_size)
        return masked_mean_error(
            self.reconstruction_to_pixels(reconstruction, pixel_values),
            pixel_values,
            self.pixel_mask(bool_masked_pos, grid),
            "mse",
            per_sample=True,
        )


def masked_mean_error(
    prediction: torch.Tensor,
    target: torch.Tensor,
    pixel_mask: torch.Tensor,
    kind: Literal["mse", "l1"] = "mse",
    *,
    per_sample: bool = False,
) -> torch.Tensor:
    """Mean ``kind`` error over masked pixels and channels (float32), over the whole batch or ``(B,)`` per
    sample; zero where the mask hides nothing."""
    diff = prediction.float() - target.float()
    err = diff.square() if kind == "mse" else diff.abs()
    channels = target.shape[1]
    if per_sample:
        dims = (1, 2, 3)
        return (err * pixel_mask).sum(dim=dims) / (pixel_mask.sum(dim=dims).clamp_min(1.0) * channels)
    return (err * pixel_mask).sum() / (pixel_mask.sum().clamp_min(1.0) * channels)


def _grid_size(pixel_values: torch.Tensor, patch_size: int) -> tuple[int, int]:
    return pixel_values.shape[-2] // patch_size, pixel_values.shape[-1] // patch_size
