"""On-the-fly transforms: decode, resize to the model's size, augment (train), normalise like the model.

:class:`MTLTransform` is what ``Dataset.set_transform`` / ``with_transform`` take. Nothing it does is
cached: every epoch draws new augmentations. For a batch of rows it

1. decodes each image (BraTS slices: one ``np.frombuffer``; 2-D images: the stored PNG/JPEG) and its
   lesion mask;
2. brings the image to the model's channels and size with the model's :class:`~mtl_hf.MTLImageProcessor`
   (its rescaling and resampling; ``do_normalize=False`` for now) and the mask to the same size by
   nearest neighbour (``nearest-exact``, pixel centres aligned as in bilinear resizing). Cached slices
   already stored at the model's size (the cache resizes at build time) skip the processor: the batch
   is decoded and dequantised as one array, which gives the processor's values bit for bit (for such
   float input it only checks and stacks);
3. in training, draws one affine warp per sample (flips, rotation, scale, translation, shear) and
   applies it to image (bilinear) and mask (nearest) alike, then intensity jitter (gamma, contrast,
   brightness, noise) to the image only; in place, and where an image is zero outside a box (the
   background of a skull-stripped slice) the warp and the gamma's power are computed in the box alone,
   with the values of the whole image's computation (:func:`warp`);
4. normalises with the processor's ``image_mean`` / ``image_std``.

Random numbers are all drawn before any pixel is touched (:class:`AugmentationDraw`), from torch's
global generator (seeded per data-loader worker by PyTorch, and by ``accelerate.utils.set_seed``)
unless a ``generator`` is given, or, inside :func:`per_sample_seeds`, each sample's from its own
generator: a sample is then augmented the same way whichever batch, worker or resumed run loads it.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import io
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..image_processing_mtl import MTLImageProcessor, channel_mismatch
from .config import AugmentationConfig, DataConfig
from .errors import DataError
from .slices import decode_slice_image, decode_slice_mask, dequantise, is_quantised, stored_slice

if TYPE_CHECKING:
    from datasets import DatasetDict

RAW_COLUMNS = frozenset(
    {
        "image", "image_shape", "image_dtype", "image_encoding", "image_scale", "image_offset", "image_crc32",
        "mask", "mask_crc32",
    }
)  # fmt: skip
"""Columns the transform consumes; every other column passes through unchanged."""

Box = tuple[int, int, int, int]
"""A rectangle of pixels: rows ``[r0, r1)``, columns ``[c0, c1)``."""


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


def decode_cached_images(rows: Sequence[Mapping[str, Any]]) -> np.ndarray | None:
    """The rows' cached slices as one ``(B, C, H, W)`` float32 array, or ``None`` when they are not all
    stored slices of one shape that decode to floats (2-D images, stored integers without a scale).

    The values are :func:`decode_image`'s, row by row, bit for bit; the dequantisation runs once over
    the batch.

    Raises:
        DataError: a row's stored bytes do not decode, naming the sample.
    """
    first = rows[0]
    shape = tuple(first.get("image_shape") or ())
    kinds = {(str(r.get("image_dtype")), is_quantised(r)) for r in rows if _is_stored_slice(r, shape)}
    if len(kinds) != 1 or sum(1 for r in rows if _is_stored_slice(r, shape)) != len(rows):
        return None
    dtype, quantised = next(iter(kinds))
    if not quantised and np.dtype(dtype).kind != "f":
        return None
    stored = np.empty((len(rows), *shape), np.dtype(dtype))
    for i, row in enumerate(rows):
        try:
            stored[i] = stored_slice(row)
        except (ValueError, TypeError) as exc:
            raise DataError(_sample_name(row), _damaged("image", exc)) from exc
    if not quantised:
        return stored.astype(np.float32, copy=False)
    try:
        return dequantise(stored, [r["image_scale"] for r in rows], [r["image_offset"] for r in rows])
    except ValueError as exc:  # a scale or offset of the wrong length: name the first such row
        bad = next(
            (r for r in rows if len(r["image_scale"]) != shape[0] or len(r["image_offset"]) != shape[0]),
            first,
        )
        raise DataError(_sample_name(bad), _damaged("image", exc)) from exc


def _is_stored_slice(row: Mapping[str, Any], shape: tuple[int, ...]) -> bool:
    return isinstance(row.get("image"), (bytes, bytearray, memoryview)) and tuple(row["image_shape"]) == shape


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


_SAMPLE_SEEDS: contextvars.ContextVar[tuple[int, ...] | None] = contextvars.ContextVar(
    "mtl_hf_sample_seeds", default=None
)


@contextlib.contextmanager
def per_sample_seeds(seeds: Sequence[int]) -> Iterator[None]:
    """Inside this block an :class:`MTLTransform` called on ``len(seeds)`` rows draws sample ``i``'s
    augmentation from a generator seeded with ``seeds[i]`` (what ``torch.manual_seed(seeds[i])`` and a
    transform of that one row would draw), leaving every other generator alone."""
    token = _SAMPLE_SEEDS.set(tuple(int(s) for s in seeds))
    try:
        yield
    finally:
        _SAMPLE_SEEDS.reset(token)


@dataclass
class AugmentationDraw:
    """The random numbers of one batch's augmentation, drawn before any pixel is touched: uniforms in
    ``[0, 1)`` that :meth:`MTLTransform.sample_affine` and the jitter map to their ranges.

    Attributes:
        flip_x, flip_y, angle, shear, scale: ``(B,)``.
        shift: ``(B, 2)``.
        gamma, contrast, brightness: ``(B,)``, ``None`` where that jitter is off.
        noise: ``(B, C, H, W)`` standard normal noise, ``None`` where it is off.
    """

    flip_x: torch.Tensor
    flip_y: torch.Tensor
    angle: torch.Tensor
    shear: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor
    gamma: torch.Tensor | None = None
    contrast: torch.Tensor | None = None
    brightness: torch.Tensor | None = None
    noise: torch.Tensor | None = None

    @classmethod
    def cat(cls, draws: Sequence[AugmentationDraw]) -> AugmentationDraw:
        """The draws of several batches (or samples) as one batch."""
        joined: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            parts = [getattr(d, field.name) for d in draws]
            joined[field.name] = None if parts[0] is None else torch.cat(parts)
        return cls(**joined)


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
        pixel_values = self.pixels(rows)
        masks = [decode_mask(r) for r in rows]
        has_mask = torch.tensor([m is not None for m in masks], dtype=torch.bool)
        labels = torch.zeros((n, *self.size), dtype=torch.uint8)
        for i, mask in enumerate(masks):
            if mask is not None:
                labels[i] = resize_mask(mask, self.size)
        normalize = None
        if self.processor.do_normalize:
            mean = torch.tensor(self.processor.image_mean, dtype=pixel_values.dtype).view(1, -1, 1, 1)
            std = torch.tensor(self.processor.image_std, dtype=pixel_values.dtype).view(1, -1, 1, 1)
            normalize = (mean, std)
        if self.train and self.augmentation.enabled:
            draw = self.draw(n, tuple(pixel_values.shape[1:]))
            pixel_values, labels = self._augment(pixel_values, labels, draw, normalize)
        elif normalize is not None:  # in place: ``pixel_values`` is this call's own tensor
            pixel_values.sub_(normalize[0]).div_(normalize[1])
        if self.lesion_labels is None:
            lesion = labels != 0
        else:
            lesion = torch.isin(labels, torch.tensor(self.lesion_labels, dtype=labels.dtype))
        out: dict[str, Any] = {k: v for k, v in batch.items() if k not in RAW_COLUMNS}
        out["pixel_values"] = pixel_values.contiguous()
        out["lesion_mask"] = lesion
        out["has_lesion_mask"] = has_mask
        return out

    def pixels(self, rows: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        """The rows' images at the model's channels and size, not yet normalised, ``(B, C, H, W)``
        float32: cached slices already at that size straight from :func:`decode_cached_images`, anything
        else through the processor (the same values: for such float input the processor only checks
        them and replicates grey to three channels)."""
        cached = decode_cached_images(rows)
        channels = self.processor.num_channels
        if (
            cached is not None
            and tuple(cached.shape[-2:]) == self.size
            and channel_mismatch(cached.shape[1], channels) is None
        ):
            x = torch.from_numpy(cached)
            if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():  # the sum first: one cheap pass
                bad = next(i for i in range(len(x)) if not torch.isfinite(x[i]).all())
                raise ValueError(f"image {bad}: contains NaN or inf")
            return x.expand(-1, channels, -1, -1).clone() if x.shape[1] != channels else x
        images = list(cached) if cached is not None else [decode_image(r) for r in rows]
        return self.processor.preprocess(
            images,
            do_resize=True,
            do_normalize=False,
            do_intensity=False,  # cached slices are normalised per volume already
            size={"height": self.size[0], "width": self.size[1]},
            return_tensors="pt",
        )["pixel_values"]

    # -- augmentation ------------------------------------------------------------------------------
    def draw(self, n: int, shape: tuple[int, ...]) -> AugmentationDraw:
        """The augmentation of ``n`` images of ``shape`` ``(C, H, W)``: inside :func:`per_sample_seeds`
        each sample's from its own seed, otherwise the batch's from ``generator`` (or torch's global one)."""
        seeds = _SAMPLE_SEEDS.get()
        if seeds is None:
            return self.draw_from(n, shape, self.generator)
        if len(seeds) != n:
            raise ValueError(f"per_sample_seeds: {len(seeds)} seeds for a batch of {n} rows")
        return AugmentationDraw.cat(
            [self.draw_from(1, shape, torch.Generator().manual_seed(s)) for s in seeds]
        )

    def draw_from(
        self, n: int, shape: tuple[int, ...], generator: torch.Generator | None
    ) -> AugmentationDraw:
        """Draw ``n`` samples' random numbers from ``generator`` (``None``: torch's global generator), in
        a fixed order: the affine warp's (flips, rotation, shear, scale, shift), then gamma, contrast,
        brightness and noise (those switched on)."""
        aug = self.augmentation

        def uniform(count: int) -> torch.Tensor:
            return torch.rand(count, generator=generator)

        flip_x, flip_y, angle, shear, scale = (uniform(n) for _ in range(5))
        shift = uniform(2 * n).view(n, 2)
        gamma = uniform(n) if aug.gamma != (1.0, 1.0) else None
        contrast = uniform(n) if aug.contrast > 0 else None
        brightness = uniform(n) if aug.brightness > 0 else None
        noise = torch.randn((n, *shape), generator=generator) if aug.noise_std > 0 else None
        return AugmentationDraw(
            flip_x, flip_y, angle, shear, scale, shift, gamma, contrast, brightness, noise
        )

    def _augment(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        draw: AugmentationDraw,
        normalize: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Warp and jitter ``images`` (and warp ``labels``), then normalise with ``normalize`` (the
        processor's mean and std, ``(1, C, 1, 1)``; ``None``: not normalised)."""
        images, labels, regions = warp(images, labels, self.sample_affine(draw))
        return self._jitter(images, draw, regions, normalize), labels

    def sample_affine(self, draw: AugmentationDraw) -> torch.Tensor:
        """``(B, 2, 3)`` matrices for ``F.affine_grid`` (output coordinates -> input coordinates) from
        ``draw``'s uniforms: flips, rotation, shear, scale (log-uniform) and shift."""
        aug = self.augmentation
        n = draw.angle.shape[0]
        flip_x = torch.where(draw.flip_x < aug.horizontal_flip, -1.0, 1.0)
        flip_y = torch.where(draw.flip_y < aug.vertical_flip, -1.0, 1.0)
        angle = torch.deg2rad(_spread(draw.angle, -aug.rotation_degrees, aug.rotation_degrees))
        shear = torch.deg2rad(_spread(draw.shear, -aug.shear_degrees, aug.shear_degrees))
        scale = torch.exp(_spread(draw.scale, math.log(aug.scale[0]), math.log(aug.scale[1])))
        shift = _spread(draw.shift, -2 * aug.translate, 2 * aug.translate)  # [-1, 1] spans the image
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

    def _jitter(
        self,
        images: torch.Tensor,
        draw: AugmentationDraw,
        regions: Sequence[Box | None],
        normalize: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Gamma, contrast, brightness and noise on ``images`` (this call's own tensor, changed in place),
        relative to each image's range ``[lo, hi]``:

        ``x = lo + span * clamp((x - lo) / span, 0, 1) ** gamma``; ``x = m + c * (x - m)`` (``m`` the
        image's mean); ``x = x + span * b``; ``x = x + span * noise_std * noise``.

        The power is taken as ``exp(gamma * log t)``, with ``t`` at least 1e-20 (``log 0`` and ``exp(-inf)``
        take a slow path on CPUs, several times a normal value's time; ``1e-20 ** gamma`` is below 1e-16,
        zero at float32 precision next to the range), and the three affine steps are folded into one
        multiply-add per pixel (``x = factor * t + offset``), a few in-place passes over the batch
        instead of a dozen temporaries, and so is ``normalize``'s ``(x - mean) / std`` when given; the
        result equals the step-by-step formulas up to float32 rounding (relative 1e-6).

        ``regions`` (from :func:`warp`): per image, the box outside of which it is exactly zero (``None``:
        all of it). The power is taken inside the box only, and the rest set to the power of zero's
        value, the same for every such pixel (for a zero background, zero: left as it is)."""
        aug = self.augmentation
        n = images.shape[0]
        flat = images.view(n, -1)  # amin and amax: torch.aminmax(dim=1) takes several times as long here
        lo, hi = flat.amin(dim=1).view(n, 1, 1, 1), flat.amax(dim=1).view(n, 1, 1, 1)
        span = (hi - lo).clamp_min(1e-6)
        x = images
        offset: torch.Tensor | None = None  # the image is ``offset + factor * x`` (None: 0 and 1)
        factor: torch.Tensor | None = None
        if draw.gamma is not None:
            gamma = torch.exp(_spread(draw.gamma, math.log(aug.gamma[0]), math.log(aug.gamma[1])))
            for i, region in enumerate(regions):
                _gamma_outside_zeros(x[i], lo[i], span[i], gamma[i], region)
            offset, factor = lo, span
        if draw.contrast is not None:
            c = _spread(draw.contrast, 1 - aug.contrast, 1 + aug.contrast).view(n, 1, 1, 1)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            if factor is not None and offset is not None:
                mean = offset + factor * mean
            offset = c * offset + (1 - c) * mean if offset is not None else (1 - c) * mean
            factor = c * factor if factor is not None else c
        if draw.brightness is not None:
            shift = span * _spread(draw.brightness, -aug.brightness, aug.brightness).view(n, 1, 1, 1)
            offset = offset + shift if offset is not None else shift
        noise_scale = span * aug.noise_std
        if normalize is not None:  # ((factor * t + offset) - mean) / std, noise included
            mean, std = normalize
            factor = (factor if factor is not None else torch.ones_like(span)) / std
            offset = ((offset if offset is not None else torch.zeros_like(span)) - mean) / std
            noise_scale = noise_scale / std
        if factor is not None:
            x.mul_(factor)
        if offset is not None:
            x.add_(offset)
        if draw.noise is not None:
            x.addcmul_(draw.noise, noise_scale)
        return x


_TINY = 1e-20
"""Smallest range-normalised intensity the gamma jitter takes a logarithm of."""


def _gamma(x: torch.Tensor, lo: torch.Tensor, span: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``clamp((x - lo) / span, 1e-20, 1) ** gamma``, in place, as ``exp(gamma * log t)``; ``lo`` one
    value."""
    if lo.item() != 0:  # ``x - 0`` is ``x``: one pass fewer for a zero background
        x.sub_(lo)
    return x.div_(span).clamp_(_TINY, 1).log_().mul_(gamma).exp_()


def _gamma_outside_zeros(
    image: torch.Tensor, lo: torch.Tensor, span: torch.Tensor, gamma: torch.Tensor, region: Box | None
) -> None:
    """:func:`_gamma` of ``image`` ``(C, H, W)``, which is zero outside ``region`` (``None``: everywhere):
    computed inside the box, and outside it the value of a zero pixel, computed once. Where zero is the
    image's minimum (``lo == 0``, a zero background) that value is ``0 ** gamma = 0`` (``1e-20 ** gamma``,
    below 1e-16, where the power is taken), and those pixels are left as they are."""
    if lo.item() != 0:
        zero = _gamma(torch.zeros((1,), dtype=image.dtype), lo.view(1), span.view(1), gamma.view(1))
        _fill_outside(image, region, zero.item())
    if region is not None:
        r0, r1, c0, c1 = region
        _gamma(image[:, r0:r1, c0:c1], lo, span, gamma)


def _fill_outside(image: torch.Tensor, region: Box | None, value: float) -> None:
    """Set every pixel of ``image`` ``(..., H, W)`` outside the box ``region`` (``None``: all) to ``value``."""
    if region is None:
        image.fill_(value)
        return
    r0, r1, c0, c1 = region
    image[..., :r0, :].fill_(value)
    image[..., r1:, :].fill_(value)
    image[..., r0:r1, :c0].fill_(value)
    image[..., r0:r1, c1:].fill_(value)


def _spread(uniform: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Uniforms in ``[0, 1)`` mapped to ``[low, high)``."""
    return low + (high - low) * uniform


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """``(H, W)`` label mask to ``size`` by nearest neighbour (labels stay labels), as uint8."""
    t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))
    if tuple(t.shape) == tuple(size):
        return t
    resized = F.interpolate(t[None, None].float(), size=size, mode="nearest-exact")
    return resized[0, 0].round().to(torch.uint8)


def warp(
    images: torch.Tensor, labels: torch.Tensor, theta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, list[Box | None]]:
    """Apply the affine ``theta`` ``(B, 2, 3)`` to images (bilinear) and label masks (nearest), zero padding,
    in place: ``images`` and ``labels`` (the caller's own tensors) are overwritten, image by image, with
    their warped values, which saves allocating (and faulting in) a second batch.

    Returns the warped images and masks, and per image the box of output pixels outside of which the
    warped image is exactly zero (``None``: all of it is).

    Only the output pixels that can see an image's non-zero content are sampled: a skull-stripped MR
    slice is mostly zero background, and where every input pixel a bilinear sample reads is zero, zero
    padding gives zero too. Each image's non-zero content is bounded by a box (:func:`content_boxes`),
    the output pixels whose sample points fall within a pixel of it by another
    (:func:`sampled_box`, with a pixel of margin), and ``grid_sample`` runs on that box alone, with the
    grid values of the whole image's grid (:func:`affine_grid`): the result equals one call on the whole
    image, value for value (``test_warp_samples_only_the_content_and_equals_grid_sample``). Images are
    warped one at a time, so that an image's channels stay in the CPU's cache while they are sampled.
    Masks (mostly empty: no lesion in the slice) are warped the same way, box by box.
    """
    theta = theta.to(images.dtype)
    warped_images, regions = _warp_content(images, theta, "bilinear")
    _warp_content(labels[:, None], theta, "nearest")
    return warped_images, labels, regions


def _warp_content(
    source: torch.Tensor, theta: torch.Tensor, mode: str
) -> tuple[torch.Tensor, list[Box | None]]:
    """:func:`warp` of ``source`` ``(B, C, H, W)``, in place (integer labels: sampled as ``theta``'s float
    dtype, rounded back), image by image, box by box."""
    size = (int(source.shape[-2]), int(source.shape[-1]))
    regions: list[Box | None] = []
    for i, (matrix, content) in enumerate(zip(theta.tolist(), content_boxes(source), strict=True)):
        region = sampled_box(matrix, content, size)
        regions.append(region)
        if region is None:
            source[i].zero_()
            continue
        r0, r1, c0, c1 = region
        sampled = F.grid_sample(
            source[i : i + 1].to(theta.dtype), affine_grid(theta[i : i + 1], size, region), mode=mode,
            padding_mode="zeros", align_corners=False,
        )[0]  # fmt: skip
        source[i].zero_()  # the image was read; its own memory takes the warped image (hot in the cache)
        source[i, :, r0:r1, c0:c1] = sampled if source.is_floating_point() else sampled.round()
    return source, regions


def content_boxes(x: torch.Tensor) -> list[Box | None]:
    """Per image of ``x`` (``(B, C, H, W)`` or ``(B, H, W)``), the smallest box holding every non-zero
    pixel of any channel (NaN counts as non-zero); ``None`` for an image that is all zero."""
    nonzero = x.detach().numpy() != 0  # NumPy's comparison and ``any``: several times torch's on a CPU
    if nonzero.ndim == 4:
        nonzero = nonzero.any(axis=1)
    rows, cols = nonzero.any(axis=2), nonzero.any(axis=1)
    boxes: list[Box | None] = []
    for r, c in zip(rows, cols, strict=True):
        rr, cc = np.flatnonzero(r), np.flatnonzero(c)
        boxes.append(None if rr.size == 0 else (int(rr[0]), int(rr[-1]) + 1, int(cc[0]), int(cc[-1]) + 1))
    return boxes


def sampled_box(theta: Sequence[Sequence[float]], content: Box | None, size: Sequence[int]) -> Box | None:
    """The output pixels (of a ``size`` output) whose bilinear or nearest sample, under ``theta``
    (``F.affine_grid``'s ``(2, 3)`` matrix, ``align_corners=False``), can read a pixel of the input box
    ``content``: the bounding box of the preimage of ``content`` grown by one input pixel, plus one output
    pixel of margin for rounding; ``None`` when there is none. Outside it the warp of an image that is
    zero outside ``content`` is exactly zero.

    A bilinear sample at input column ``x`` reads columns ``floor(x)`` and ``floor(x) + 1``, so it reads
    ``content``'s columns ``[c0, c1)`` only when ``c0 - 1 < x < c1`` (nearest: ``c0 - 0.5 <= x < c1 - 0.5``,
    inside that); rows alike. A singular or non-finite ``theta`` gives the whole output."""
    h, w = int(size[0]), int(size[1])
    if content is None:
        return None
    (a, b, tx), (c, d, ty) = theta
    det = a * d - b * c
    if not math.isfinite(det) or abs(det) < 1e-12:
        return (0, h, 0, w)
    r0, r1, c0, c1 = content
    # the input rectangle in normalised coordinates: pixel x sits at (2x + 1) / W - 1
    xs = ((2 * (c0 - 1) + 1) / w - 1, (2 * c1 + 1) / w - 1)
    ys = ((2 * (r0 - 1) + 1) / h - 1, (2 * r1 + 1) / h - 1)
    cols, rows = [], []
    for gx in xs:
        for gy in ys:
            u = (d * (gx - tx) - b * (gy - ty)) / det  # theta's linear part inverted
            v = (a * (gy - ty) - c * (gx - tx)) / det
            cols.append(((u + 1) * w - 1) / 2)  # normalised -> output pixel
            rows.append(((v + 1) * h - 1) / 2)
    if not all(math.isfinite(t) for t in cols + rows):
        return (0, h, 0, w)
    box = (
        max(0, math.floor(min(rows)) - 1),
        min(h, math.ceil(max(rows)) + 2),
        max(0, math.floor(min(cols)) - 1),
        min(w, math.ceil(max(cols)) + 2),
    )
    return box if box[0] < box[1] and box[2] < box[3] else None


def affine_grid(theta: torch.Tensor, size: Sequence[int], region: Box | None = None) -> torch.Tensor:
    """``F.affine_grid(theta, (B, C, H, W), align_corners=False)`` for ``size = (H, W)``, computed as two
    broadcast multiply-adds per coordinate instead of a ``(B, H * W, 3) x (3, 2)`` matrix product (a
    fifth of the time on a CPU; the same grid up to float32 rounding). With ``region``, only that box of
    the grid, with the same values as the whole grid's box.

    The grid is a ``(B, H, W, 2)`` view of ``(B, 2, H, W)`` planes: each coordinate written in one
    contiguous pass (interleaving them costs several times the arithmetic), which ``grid_sample``
    reads as it is."""
    h, w = int(size[0]), int(size[1])
    r0, r1, c0, c1 = region if region is not None else (0, h, 0, w)
    xs = _pixel_centres(w, theta.dtype)[c0:c1]
    ys = _pixel_centres(h, theta.dtype)[r0:r1]
    planes = torch.empty(theta.shape[0], 2, r1 - r0, c1 - c0, dtype=theta.dtype)
    for i, matrix in enumerate(theta.tolist()):  # Python floats holding theta's values: the same products
        for k, (a, b, t) in enumerate(matrix):
            torch.add(xs * a, (ys * b + t)[:, None], out=planes[i, k])
    return planes.permute(0, 2, 3, 1)


@functools.lru_cache(maxsize=16)
def _pixel_centres(n: int, dtype: torch.dtype) -> torch.Tensor:
    """The centres of ``n`` pixels in ``[-1, 1]`` (``align_corners=False``); shared, never written to."""
    return (torch.arange(n, dtype=dtype) * 2 + 1) / n - 1


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
