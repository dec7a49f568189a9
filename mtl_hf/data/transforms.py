"""On-the-fly transforms: decode, resize to the model's size, augment (train), normalise like the model.

:class:`MTLTransform` is what ``Dataset.set_transform`` / ``with_transform`` take. Nothing it does is
cached: every epoch draws new augmentations. For a batch of rows it

1. decodes each image (BraTS slices: one ``np.frombuffer``; 2-D images: the stored PNG/JPEG) and its
   lesion mask;
2. brings the image to the model's channels and size with the model's :class:`~mtl_hf.MTLImageProcessor`
   (its rescaling and resampling; ``do_normalize=False`` for now) and the mask to the same size by
   nearest neighbour (``nearest-exact``, pixel centres aligned as in bilinear resizing);
3. in training, draws one affine warp per sample (flips, rotation, scale, translation, shear) and
   applies it to image (bilinear) and mask (nearest) alike, then intensity jitter (gamma, contrast,
   brightness, noise) to the image only;
4. normalises with the processor's ``image_mean`` / ``image_std``.

Random numbers come from torch's global generator (seeded per data-loader worker by PyTorch, and by
``accelerate.utils.set_seed``) unless a ``generator`` is given.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..image_processing_mtl import MTLImageProcessor
from .config import AugmentationConfig, DataConfig
from .errors import DataError
from .slices import decode_slice_image, decode_slice_mask

if TYPE_CHECKING:
    from datasets import DatasetDict

RAW_COLUMNS = frozenset(
    {
        "image", "image_shape", "image_dtype", "image_encoding", "image_scale", "image_offset", "image_crc32",
        "mask", "mask_crc32",
    }
)  # fmt: skip
"""Columns the transform consumes; every other column passes through unchanged."""


def decode_image(example: Mapping[str, Any]) -> np.ndarray:
    """The pixels of one row: ``(C, H, W)`` float for BraTS slices, ``(H, W)`` or ``(H, W, 3)`` for images.

    Raises:
        DataError: the stored bytes do not decode (a cache damaged on disk), naming the sample.
    """
    try:
        return _decode_image(example)
    except (ValueError, TypeError, OSError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise DataError(_sample_name(example), _damaged("image", exc)) from exc


def _sample_name(example: Mapping[str, Any]) -> str:
    """The row's source file, and its sample id when that differs (a slice, a frame)."""
    source, sample = example.get("source", "?"), example.get("sample_id", "?")
    return str(source) if sample == source else f"{source} (sample {sample})"


def _damaged(what: str, exc: BaseException) -> str:
    return (
        f"cannot decode the stored {what} ({type(exc).__name__}: {exc}); if it came from the data cache, "
        "the cache is damaged: delete the cache folder to rebuild it"
    )


def _decode_image(example: Mapping[str, Any]) -> np.ndarray:
    image = example["image"]
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_slice_image(example)
    if isinstance(image, dict):  # undecoded datasets.Image value
        with Image.open(io.BytesIO(image["bytes"])) as pil:
            return np.array(pil)
    return np.array(image)  # a decoded PIL image; a writable copy for torch


def decode_mask(example: Mapping[str, Any]) -> np.ndarray | None:
    """The row's ``(H, W)`` uint8 label mask (BraTS: the segmentation labels; images: 0 = background).

    Raises:
        DataError: the stored bytes do not decode, naming the sample.
    """
    try:
        return _decode_mask(example)
    except (ValueError, TypeError, OSError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise DataError(_sample_name(example), _damaged("mask", exc)) from exc


def _decode_mask(example: Mapping[str, Any]) -> np.ndarray | None:
    mask = example.get("mask")
    if mask is None:
        return None
    if isinstance(mask, (bytes, bytearray, memoryview)):
        return decode_slice_mask(example)
    if isinstance(mask, dict):
        with Image.open(io.BytesIO(mask["bytes"])) as pil:
            return np.array(pil.convert("L"))
    array = np.array(mask)
    return array if array.ndim == 2 else array[..., 0]


class MTLTransform:
    """Batch transform for ``Dataset.set_transform``: rows in, ``pixel_values`` and ``lesion_mask`` out.

    Args:
        image_processor: The model's processor: its size, channels, resampling and normalisation.
        train: Draw augmentations (when ``augmentation.enabled``).
        augmentation: Augmentation settings (defaults of :class:`AugmentationConfig` if ``None``).
        lesion_labels: Mask values that count as lesion (BraTS: e.g. ``[1, 4]``); ``None``: any non-zero.
        image_size: Output side; ``None``: the processor's size.
        generator: Optional ``torch.Generator`` for the augmentations.

    Output columns: ``pixel_values`` ``(C, S, S)`` float32, ``lesion_mask`` ``(S, S)`` bool (all False
    where the row has no mask), ``has_lesion_mask`` bool, and every input column except the raw
    ``image``/``mask`` ones (targets, ``patient_id``, ``sample_id``, ...).
    """

    def __init__(
        self,
        image_processor: MTLImageProcessor,
        *,
        train: bool = False,
        augmentation: AugmentationConfig | None = None,
        lesion_labels: Sequence[int] | None = None,
        image_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.processor = image_processor
        self.train = train
        self.augmentation = augmentation if augmentation is not None else AugmentationConfig()
        self.lesion_labels = list(lesion_labels) if lesion_labels is not None else None
        if image_size is not None:
            self.size = (image_size, image_size)
        else:
            self.size = (int(image_processor.size["height"]), int(image_processor.size["width"]))
        self.generator = generator

    def __call__(self, batch: Mapping[str, list[Any]]) -> dict[str, Any]:
        n = len(next(iter(batch.values())))
        rows = [{k: v[i] for k, v in batch.items()} for i in range(n)]
        images = [decode_image(r) for r in rows]
        pixel_values = self.processor.preprocess(
            images,
            do_resize=True,
            do_normalize=False,
            do_intensity=False,  # cached slices are normalised per volume already
            size={"height": self.size[0], "width": self.size[1]},
            return_tensors="pt",
        )["pixel_values"]
        masks = [decode_mask(r) for r in rows]
        has_mask = torch.tensor([m is not None for m in masks], dtype=torch.bool)
        labels = torch.zeros((n, *self.size), dtype=torch.uint8)
        for i, mask in enumerate(masks):
            if mask is not None:
                labels[i] = resize_mask(mask, self.size)
        if self.train and self.augmentation.enabled:
            pixel_values, labels = self._augment(pixel_values, labels)
        if self.lesion_labels is None:
            lesion = labels != 0
        else:
            lesion = torch.isin(labels, torch.tensor(self.lesion_labels, dtype=labels.dtype))
        if self.processor.do_normalize:
            mean = torch.tensor(self.processor.image_mean, dtype=pixel_values.dtype).view(1, -1, 1, 1)
            std = torch.tensor(self.processor.image_std, dtype=pixel_values.dtype).view(1, -1, 1, 1)
            pixel_values = (pixel_values - mean) / std
        out: dict[str, Any] = {k: v for k, v in batch.items() if k not in RAW_COLUMNS}
        out["pixel_values"] = pixel_values.contiguous()
        out["lesion_mask"] = lesion
        out["has_lesion_mask"] = has_mask
        return out

    # -- augmentation ------------------------------------------------------------------------------
    def _rand(self, n: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=self.generator)

    def _augment(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        theta = self.sample_affine(images.shape[0])
        images, labels = warp(images, labels, theta)
        return self._jitter(images), labels

    def sample_affine(self, n: int) -> torch.Tensor:
        """``(n, 2, 3)`` matrices for ``F.affine_grid``: output coordinates -> input coordinates."""
        aug = self.augmentation
        flip_x = torch.where(torch.rand(n, generator=self.generator) < aug.horizontal_flip, -1.0, 1.0)
        flip_y = torch.where(torch.rand(n, generator=self.generator) < aug.vertical_flip, -1.0, 1.0)
        angle = torch.deg2rad(self._rand(n, -aug.rotation_degrees, aug.rotation_degrees))
        shear = torch.deg2rad(self._rand(n, -aug.shear_degrees, aug.shear_degrees))
        log_lo, log_hi = math.log(aug.scale[0]), math.log(aug.scale[1])
        scale = torch.exp(self._rand(n, log_lo, log_hi))
        shift = self._rand(2 * n, -2 * aug.translate, 2 * aug.translate).view(n, 2)  # [-1, 1] spans the image
        cos, sin = torch.cos(angle), torch.sin(angle)
        rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        shear_m = torch.zeros(n, 2, 2)
        shear_m[:, 0, 0] = 1.0
        shear_m[:, 1, 1] = 1.0
        shear_m[:, 0, 1] = torch.tan(shear)
        flips = torch.diag_embed(torch.stack([flip_x, flip_y], -1))
        forward = rotation @ shear_m @ (scale.view(n, 1, 1) * flips)  # input -> output
        inverse = torch.linalg.inv(forward)
        offset = -(inverse @ shift.unsqueeze(-1))
        return torch.cat([inverse, offset], dim=-1)

    def _jitter(self, images: torch.Tensor) -> torch.Tensor:
        aug = self.augmentation
        n = images.shape[0]
        flat = images.reshape(n, -1)
        lo = flat.min(dim=1).values.view(n, 1, 1, 1)
        hi = flat.max(dim=1).values.view(n, 1, 1, 1)
        span = (hi - lo).clamp_min(1e-6)
        if aug.gamma != (1.0, 1.0):
            gamma = torch.exp(self._rand(n, math.log(aug.gamma[0]), math.log(aug.gamma[1]))).view(n, 1, 1, 1)
            images = lo + span * ((images - lo) / span).clamp(0, 1) ** gamma
        if aug.contrast > 0:
            factor = self._rand(n, 1 - aug.contrast, 1 + aug.contrast).view(n, 1, 1, 1)
            mean = images.mean(dim=(1, 2, 3), keepdim=True)
            images = mean + factor * (images - mean)
        if aug.brightness > 0:
            images = images + span * self._rand(n, -aug.brightness, aug.brightness).view(n, 1, 1, 1)
        if aug.noise_std > 0:
            noise = torch.randn(images.shape, generator=self.generator)
            images = images + span * aug.noise_std * noise
        return images


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """``(H, W)`` label mask to ``size`` by nearest neighbour (labels stay labels), as uint8."""
    t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))
    if tuple(t.shape) == tuple(size):
        return t
    resized = F.interpolate(t[None, None].float(), size=size, mode="nearest-exact")
    return resized[0, 0].round().to(torch.uint8)


def warp(
    images: torch.Tensor, labels: torch.Tensor, theta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the affine ``theta`` ``(B, 2, 3)`` to images (bilinear) and label masks (nearest), zero padding."""
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    warped = F.grid_sample(
        labels[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )
    return images, warped[:, 0].round().to(torch.uint8)


def make_transforms(
    config: DataConfig, image_processor: MTLImageProcessor, generator: torch.Generator | None = None
) -> tuple[MTLTransform, MTLTransform]:
    """``(train_transform, eval_transform)`` for ``config``: its augmentation, image size and (BraTS)
    tumour labels as lesion."""
    lesion = config.brats.tumour_labels if config.kind == "brats" else None
    common: dict[str, Any] = {
        "lesion_labels": lesion,
        "image_size": config.image_size,
        "generator": generator,
    }
    train = MTLTransform(image_processor, train=True, augmentation=config.augmentation, **common)
    evaluation = MTLTransform(image_processor, train=False, augmentation=config.augmentation, **common)
    return train, evaluation


def apply_transforms(
    datasets: DatasetDict, config: DataConfig, image_processor: MTLImageProcessor
) -> DatasetDict:
    """Set the train transform on ``datasets["train"]`` and the eval transform on the other splits
    (``with_transform``: returns new views, the cache is untouched).

    Encoded image columns reach the transform undecoded (``Image(decode=False)``): the transform
    decodes them itself, so a damaged stored image raises a :class:`DataError` naming the sample.
    """
    from datasets import DatasetDict

    train, evaluation = make_transforms(config, image_processor)
    return DatasetDict(
        {
            name: _undecoded(ds).with_transform(train if name == "train" else evaluation)
            for name, ds in datasets.items()
        }
    )


def _undecoded(dataset: Any) -> Any:
    """``dataset`` with its ``image`` / ``mask`` columns of type ``datasets.Image`` left as bytes."""
    from datasets import Image as ImageFeature

    for column in ("image", "mask"):
        feature = dataset.features.get(column)
        if isinstance(feature, ImageFeature) and feature.decode:
            dataset = dataset.cast_column(column, ImageFeature(decode=False))
    return dataset
