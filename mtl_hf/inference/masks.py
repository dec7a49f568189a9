"""Segmentation masks from :func:`~mtl_hf.inference.predict`, written where the inputs can be overlaid.

A head gives masks when it implements :meth:`~mtl_hf.heads.TaskHead.segmentation_masks` (the
``segmentation`` plugin head does). Its logits, at the model's input size, are resized bilinearly to
each input image's own size before the head thresholds them, so every mask has its image's pixels:

* a 2-D image (PNG, JPEG, DICOM): ``masks/<task>/<file name>.png``, 0 and 255 (a multi-frame DICOM
  gives one PNG per frame, ``<file name>_frame<index>.png``);
* a NIfTI volume: ``masks/<task>/<file name>.nii.gz``, ``uint8`` 0/1, in the volume's closest RAS+
  orientation with its affine (what the reader sliced), so it overlays the input in any viewer
  (ITK-SNAP, 3D Slicer, nilearn) in world coordinates. Slices left out as empty are 0.

Names that repeat (the same file name in two folders) get ``_2``, ``_3``... in input order. Each file
is written to a temporary file and renamed into place, never through a symbolic link
(:mod:`mtl_hf.inference.outputs`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.readers import canonical_geometry
from ..heads import TaskHead
from .outputs import output_subfolder, write_replacing
from .readers import SUPPORTED_SUFFIXES, kind_of

MASKS_DIR = "masks"


def mask_tasks(model: Any, tasks: Sequence[str] | None = None) -> list[str]:
    """The tasks of ``model`` (all, or those in ``tasks``) whose heads give segmentation masks."""
    names = list(model.config.tasks or {}) if tasks is None else [t for t in tasks if t in model.heads]
    return [t for t in names if type(model.heads[t]).segmentation_masks is not TaskHead.segmentation_masks]


def masks_at_size(head: TaskHead, logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool mask of one image from its ``(h, w)`` logits, resized to ``size`` first."""
    resized = F.interpolate(logits.float()[None, None], size=size, mode="bilinear", align_corners=False)
    masks = head.segmentation_masks(resized[:, 0])
    if masks is None:
        raise ValueError(f"task {head.task_name!r} ({type(head).__name__}) gives no segmentation masks")
    return masks[0].cpu().numpy().astype(bool)


class MaskWriter:
    """Collects the masks of each source and writes them as their source is complete.

    Args:
        output_dir: The prediction folder; masks go to ``output_dir / "masks" / <task>``.
        slice_axis: The axis NIfTI volumes were sliced along (as given to the reader).
    """

    def __init__(self, output_dir: str | os.PathLike[str], slice_axis: int = 2) -> None:
        self.output_dir = Path(output_dir)
        self.slice_axis = slice_axis
        self.written: dict[str, dict[str, str]] = {}
        self._pending: dict[str, dict[int, np.ndarray]] = {}
        self._source: str | None = None
        self._names: dict[str, str] = {}

    def add(self, source: str, index: int | None, masks: dict[str, np.ndarray]) -> None:
        """The masks of one image, slice or frame (sources arrive one after the other)."""
        if source != self._source:
            self.flush()
            self._source = source
        if kind_of(Path(source)) == "nifti":
            for task, mask in masks.items():
                self._pending.setdefault(task, {})[int(index or 0)] = mask
            return
        suffix = "" if index is None else f"_frame{index:04d}"
        for task, mask in masks.items():
            path = self._path(task, source, f"{suffix}.png")
            from PIL import Image

            picture = Image.fromarray(mask.astype(np.uint8) * 255)
            write_replacing(path, partial(picture.save, format="PNG"))
            self.written.setdefault(source, {})[task if index is None else f"{task}/{index}"] = str(path)

    def flush(self) -> None:
        """Write the volume masks of the current NIfTI source, if any."""
        if self._source is None or not self._pending:
            return
        import nibabel as nib

        shape, affine = canonical_geometry(self._source)
        for task, slices in self._pending.items():
            volume = np.zeros(shape, dtype=np.uint8)
            moved = np.moveaxis(volume, self.slice_axis, 0)  # a view: writes land in ``volume``
            for i, mask in slices.items():
                moved[i] = np.rot90(mask, k=-1)  # the reader showed slices with np.rot90
            path = self._path(task, self._source, ".nii.gz")
            write_replacing(path, partial(nib.save, nib.Nifti1Image(volume, affine)))
            self.written.setdefault(self._source, {})[task] = str(path)
        self._pending = {}

    def _path(self, task: str, source: str, ending: str) -> Path:
        folder = output_subfolder(self.output_dir, MASKS_DIR, task)
        if source not in self._names:
            name = Path(source).name
            for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):  # ".nii.gz" before ".nii"
                if name.lower().endswith(suffix):
                    name = name[: -len(suffix)]
                    break
            taken = set(self._names.values())
            unique, n = name, 1
            while unique in taken:
                n += 1
                unique = f"{name}_{n}"
            self._names[source] = unique
        return folder / f"{self._names[source]}{ending}"
