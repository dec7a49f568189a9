"""Image processor for :class:`~mtl_hf.MTLModel`: medical images in, normalised ``pixel_values`` out.

Medical images are mostly single-channel and often not 8-bit, so this processor differs from
``ViTImageProcessor`` in what it accepts, and works the same with or without torchvision (it uses
torch alone):

* inputs: PIL images, NumPy arrays or torch tensors, ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` with any
  ``C`` (the axis whose length is the expected channel count is the channel axis); a list of them
  makes a batch. Only a PIL image whose mode says so (``RGBA``, ``LA``) has an alpha channel, which is
  dropped: a 4-channel array is four channels (four MR modalities), never guessed to be RGBA;
* intensities, per input channel:

  - with ``intensity`` (recorded from the training data: one :class:`~mtl_hf.intensity.IntensitySpec`
    per input channel, e.g. per-volume percentiles for MR, Hounsfield windows for CT), each channel is
    normalised that way (statistics over the image's foreground, i.e. its non-zero pixels; a CT
    channel with several windows becomes several channels). Callers that already normalised a whole
    volume this way (the training cache, ``predict`` on volumes) pass ``do_intensity=False``;
  - otherwise ``uint8`` is multiplied by ``rescale_factor`` (1/255); other integer types (12/16-bit
    DICOM, PNG) are min-max scaled per image to [0, 1]; floating-point input is taken as already scaled;

* channels: must match ``num_channels``; grey is replicated to a 3-channel backbone, and any other
  difference is an error (:func:`channel_mismatch`), never a silent merge: colour is turned grey only
  when asked, at reading (``data.images.grayscale``, ``predict --grayscale``), MR modalities are never
  mixed into one channel, and with ``channel_names`` the error names the channels the model takes;
* resize to ``size`` (bilinear with antialiasing by default), then ``(x - image_mean) / image_std``.

:meth:`MTLImageProcessor.describe_intensity` says which intensity handling applies. Non-finite pixels
raise ``ValueError`` naming the image's index in the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoImageProcessor
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from .channels import GREY_MEAN, GREY_STD, IMAGENET_MEAN, IMAGENET_STD, default_channel_statistics
from .configuration_mtl import MTLConfig
from .intensity import IntensitySpec, apply_intensity

__all__ = ["GREY_MEAN", "GREY_STD", "IMAGENET_MEAN", "IMAGENET_STD", "MTLImageProcessor"]

Resample = Literal["bilinear", "bicubic", "nearest"]


class MTLImageProcessor(BaseImageProcessor):
    r"""Turn images of any common medical format into ``pixel_values`` for :class:`~mtl_hf.MTLModel`.

    Args:
        size (`dict` or `int`, *optional*, defaults to ``{"height": 224, "width": 224}``):
            Output size; an int means a square.
        num_channels (`int`, *optional*, defaults to 3): Channels the backbone expects.
        do_resize (`bool`, *optional*, defaults to `True`): Resize to ``size``.
        resample (`str`, *optional*, defaults to ``"bilinear"``): ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.
        do_rescale (`bool`, *optional*, defaults to `True`): Bring integer images to [0, 1] (see module doc).
        rescale_factor (`float`, *optional*, defaults to 1/255): Factor for ``uint8`` images.
        do_normalize (`bool`, *optional*, defaults to `True`): Subtract ``image_mean``, divide by ``image_std``.
        image_mean, image_std (`list[float]`, *optional*): Per output channel; default ImageNet's (DINO's)
            for 3 channels, their channel average for 1, ImageNet's repeated cyclically for other counts
            (as :func:`mtl_hf.channels.adapt_input_conv` repeats the patch embedding).
        channel_names (`list[str]`, *optional*): What each input channel is (``["flair", "t1", "t1ce",
            "t2"]``, ``["ct"]``); ``predict`` reads exactly these modalities from a BraTS patient folder.
            Set from the training data.
        intensity (`list[dict]`, *optional*): One :class:`~mtl_hf.intensity.IntensitySpec` (as a dict) per
            input channel: how raw intensities become the model's channels. Set from the training data.
        do_intensity (`bool`, *optional*, defaults to `True`): Apply ``intensity`` (when set).
    """

    model_input_names = ["pixel_values"]  # noqa: RUF012

    def __init__(
        self,
        size: dict[str, int] | int | None = None,
        num_channels: int = 3,
        do_resize: bool = True,
        resample: Resample = "bilinear",
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        channel_names: Sequence[str] | None = None,
        intensity: Sequence[dict[str, Any]] | None = None,
        do_intensity: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_channels < 1:
            raise ValueError(f"num_channels must be at least 1, got {num_channels}")
        if isinstance(size, int):
            size = {"height": size, "width": size}
        self.size = dict(size) if size is not None else {"height": 224, "width": 224}
        self.num_channels = num_channels
        self.do_resize = do_resize
        if resample not in ("bilinear", "bicubic", "nearest"):
            raise ValueError(f"resample must be 'bilinear', 'bicubic' or 'nearest', got {resample!r}")
        self.resample = resample
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        default_mean, default_std = default_channel_statistics(num_channels)
        self.image_mean = list(image_mean) if image_mean is not None else list(default_mean)
        self.image_std = list(image_std) if image_std is not None else list(default_std)
        for name, values in (("image_mean", self.image_mean), ("image_std", self.image_std)):
            if len(values) != num_channels:
                raise ValueError(f"{name} has {len(values)} values for {num_channels} channels")
        if any(s <= 0 for s in self.image_std):
            raise ValueError(f"image_std must be positive, got {self.image_std}")
        specs = [IntensitySpec.from_dict(d) for d in intensity] if intensity is not None else None
        self.intensity = [spec.to_dict() for spec in specs] if specs is not None else None
        produced = sum(spec.num_outputs for spec in specs) if specs is not None else None
        if produced is not None and produced not in (1, num_channels):
            raise ValueError(f"intensity gives {produced} channels, not {num_channels}")
        self.channel_names = list(channel_names) if channel_names is not None else None
        allowed = {len(specs)} if specs is not None else {1, num_channels}
        if self.channel_names is not None and len(self.channel_names) not in allowed:
            raise ValueError(
                f"channel_names: {len(self.channel_names)} names for {sorted(allowed)} input channel(s)"
            )
        self.do_intensity = do_intensity

    @property
    def intensity_specs(self) -> list[IntensitySpec] | None:
        """``intensity`` as :class:`~mtl_hf.intensity.IntensitySpec` objects (``None`` when not set)."""
        return None if self.intensity is None else [IntensitySpec.from_dict(d) for d in self.intensity]

    @property
    def input_channels(self) -> int:
        """Channels of a raw input: one per ``intensity`` entry (a CT window set is one input channel),
        else one per channel name, else ``num_channels``."""
        if self.intensity is not None:
            return len(self.intensity)
        return len(self.channel_names) if self.channel_names is not None else self.num_channels

    @property
    def output_channel_names(self) -> list[str]:
        """A name per model channel, for figures: the channel names, each CT window as
        ``"<input>:<window>"``, or ``channel 0``, ``channel 1``... when nothing names them."""
        names = self.channel_names or [f"channel {c}" for c in range(self.input_channels)]
        specs = self.intensity_specs
        if specs is not None:
            names = [
                f"{name}:{window}" if len(spec.windows) > 1 else name
                for name, spec in zip(names, specs, strict=True)
                for window in ([w.name for w in spec.window_list] or [""])
            ]
        if len(names) == 1 and self.num_channels > 1:
            return names * self.num_channels
        return names

    def describe_intensity(self) -> str:
        """What this processor does to intensities, in words (written to ``predictions.json``)."""
        names = f" ({', '.join(self.channel_names)})" if self.channel_names else ""
        specs = self.intensity_specs
        if specs is None:
            return (
                f"{self.num_channels} channel(s){names}: uint8 divided by 255, other integers min-max "
                "scaled per image, floats taken as scaled; then mean/std normalisation"
            )
        parts = "; ".join(f"input {i}: {spec.describe()}" for i, spec in enumerate(specs))
        return f"{self.num_channels} channel(s){names}: {parts}; then mean/std normalisation"

    @classmethod
    def for_backbone(cls, backbone_config: Any, **kwargs: Any) -> MTLImageProcessor:
        """A processor matching a backbone config's image size and channels."""
        image_size = backbone_config.image_size
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        return cls(size={"height": h, "width": w}, num_channels=backbone_config.num_channels, **kwargs)

    # -- the pipeline -----------------------------------------------------------------------------
    def preprocess(
        self,
        images: Any,
        return_tensors: str | None = "pt",
        **overrides: Any,
    ) -> BatchFeature:
        """Process one image or a list of images into ``BatchFeature({"pixel_values": (B, C, H, W)})``.

        Any constructor argument may be overridden for this call (e.g. ``do_resize=False``).
        """
        unknown = set(overrides) - {
            "size", "do_resize", "resample", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std",
            "do_intensity",
        }  # fmt: skip
        if unknown:
            raise TypeError(f"MTLImageProcessor got unexpected argument(s): {', '.join(sorted(unknown))}")
        opts = {k: overrides.get(k, getattr(self, k)) for k in ("size", "do_resize", "resample", "do_rescale",
                                                                   "rescale_factor", "do_normalize", "image_mean", "image_std",
                                                                   "do_intensity")}  # fmt: skip
        if isinstance(opts["size"], int):
            opts["size"] = {"height": opts["size"], "width": opts["size"]}
        batch = images if isinstance(images, (list, tuple)) else [images]
        if not batch:
            raise ValueError("no images to process")
        out = [self._process_one(img, i, opts) for i, img in enumerate(batch)]
        shapes = {tuple(t.shape) for t in out}
        if len(shapes) > 1:
            raise ValueError(
                f"images have different sizes after processing {sorted(shapes)}; set do_resize=True"
            )
        pixel_values: Any = torch.stack(out)
        if return_tensors in (None, "np"):
            pixel_values = pixel_values.numpy()
        elif return_tensors != "pt":
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        return BatchFeature(data={"pixel_values": pixel_values})

    def _process_one(self, image: Any, index: int, opts: dict[str, Any]) -> torch.Tensor:
        specs = self.intensity_specs if opts["do_intensity"] else None
        x = to_chw_tensor(image, index, self.input_channels)
        if specs is not None:
            x = self._apply_intensity(x, specs, index)
        elif opts["do_rescale"]:
            x = rescale(x, opts["rescale_factor"])
        x = x.to(torch.float32)
        if not torch.isfinite(x).all():
            raise ValueError(f"image {index}: contains NaN or inf")
        x = convert_channels(x, self.num_channels, self.channel_names, index)
        if opts["do_resize"]:
            size = (opts["size"]["height"], opts["size"]["width"])
            if tuple(x.shape[-2:]) != size:
                mode = opts["resample"]
                kwargs = {} if mode == "nearest" else {"antialias": True, "align_corners": False}
                x = F.interpolate(x[None], size=size, mode=mode, **kwargs)[0]
        if opts["do_normalize"]:
            mean = torch.tensor(opts["image_mean"], dtype=x.dtype).view(-1, 1, 1)
            std = torch.tensor(opts["image_std"], dtype=x.dtype).view(-1, 1, 1)
            x = (x - mean) / std
        return x

    def _apply_intensity(self, x: torch.Tensor, specs: list[IntensitySpec], index: int) -> torch.Tensor:
        """Each input channel through its spec; statistics over the pixels non-zero in any channel."""
        if x.shape[0] != len(specs):
            raise ValueError(
                f"image {index}: {x.shape[0]} channel(s), but the model reads {len(specs)} input channel(s)"
                + (f" ({', '.join(self.channel_names)})" if self.channel_names else "")
            )
        array = x.numpy().astype(np.float32)
        if not np.isfinite(array).all():
            raise ValueError(f"image {index}: contains NaN or inf")
        foreground = (array != 0).any(axis=0)
        out = [apply_intensity(array[c], spec, foreground) for c, spec in enumerate(specs)]
        return torch.from_numpy(np.concatenate(out, axis=0))

    def unnormalize(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Invert the normalisation (for figures): ``x * std + mean``, channels on dim -3."""
        mean = torch.tensor(self.image_mean, dtype=pixel_values.dtype, device=pixel_values.device).view(
            -1, 1, 1
        )
        std = torch.tensor(self.image_std, dtype=pixel_values.dtype, device=pixel_values.device).view(
            -1, 1, 1
        )
        return pixel_values * std + mean


def to_chw_tensor(image: Any, index: int = 0, channels: int | None = None) -> torch.Tensor:
    """Any supported image as a ``(C, H, W)`` tensor of its original dtype.

    ``channels`` (the count expected) decides between ``(C, H, W)`` and ``(H, W, C)`` when both could be
    meant; otherwise a leading axis of length 1, 3 or 4 is the channel axis. The alpha channel of a PIL
    ``RGBA`` / ``LA`` image is dropped; arrays keep every channel.
    """
    if (
        hasattr(image, "mode")
        and hasattr(image, "size")
        and not isinstance(image, (np.ndarray, torch.Tensor))
    ):
        if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
            image = image.convert("L" if image.mode in ("LA", "La") else "RGB")
        image = np.array(image)  # PIL image: (H, W) or (H, W, C); a writable copy
    if isinstance(image, np.ndarray):
        if image.dtype == np.bool_:
            image = image.astype(np.uint8)
        if image.dtype.byteorder not in ("=", "|"):
            image = image.astype(image.dtype.newbyteorder("="))
        t = torch.from_numpy(np.ascontiguousarray(image))
    elif isinstance(image, torch.Tensor):
        t = image.detach().cpu()
    else:
        raise TypeError(f"image {index}: unsupported type {type(image).__name__}; use PIL, NumPy or torch")
    if t.dim() == 2:
        t = t[None]
    elif t.dim() == 3:
        first, last = int(t.shape[0]), int(t.shape[-1])
        if channels is not None and first == channels:
            pass
        elif channels is not None and last == channels:
            t = t.permute(2, 0, 1)
        elif first in (1, 3, 4) and last not in (1, 3, 4):
            pass  # channels first
        elif last in (1, 3, 4):
            t = t.permute(2, 0, 1)
        else:
            raise ValueError(f"image {index}: cannot tell the channel axis of shape {tuple(t.shape)}")
    else:
        raise ValueError(f"image {index}: expected 2 or 3 dimensions, got shape {tuple(t.shape)}")
    if t.shape[-1] < 1 or t.shape[-2] < 1:
        raise ValueError(f"image {index}: empty image of shape {tuple(t.shape)}")
    return t


def rescale(x: torch.Tensor, rescale_factor: float) -> torch.Tensor:
    """uint8 times ``rescale_factor``; other integers min-max scaled to [0, 1]; floats unchanged."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32) * rescale_factor
    if not x.is_floating_point():
        x = x.to(torch.float32)
        lo, hi = x.min(), x.max()
        return (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    return x


def channel_mismatch(channels: int, num_channels: int) -> str | None:
    """Why images of ``channels`` channels cannot feed a backbone of ``num_channels``; ``None`` when
    they can. The one place that decides which channel counts a backbone accepts: equal counts, or
    grey replicated to 3 channels. Anything else (colour or three MR modalities into a 1-channel
    backbone, two modalities into three) would merge, drop or invent channels without a word; a
    backbone is given other channel counts by adapting it (``MTLModel.from_backbone(num_channels=...)``)."""
    if channels == num_channels or (channels == 1 and num_channels == 3):
        return None
    return (
        f"the images have {channels} channel(s) but the backbone takes {num_channels} "
        f"(only grey images are converted, replicated to 3 channels)"
    )


def convert_channels(
    x: torch.Tensor, num_channels: int, channel_names: Sequence[str] | None = None, index: int = 0
) -> torch.Tensor:
    """Replicate grey to 3 channels to match ``num_channels``; any other mismatch raises (see
    :func:`channel_mismatch`), naming the model's channels when they have names (MR modalities)."""
    c = x.shape[0]
    problem = channel_mismatch(c, num_channels)
    if problem is not None:
        if channel_names is not None and len(channel_names) == num_channels:
            raise ValueError(
                f"image {index}: {c} channel(s), but the model takes {num_channels}: {', '.join(channel_names)}"
            )
        raise ValueError(
            f"image {index}: {problem}: read colour images as grey (data.images.grayscale: true in "
            f"training, predict --grayscale) or use a backbone with num_channels: {c}"
        )
    if c == 1 and num_channels == 3:
        return x.expand(3, -1, -1).clone()
    return x


AutoImageProcessor.register(
    MTLConfig,
    image_processor_classes={"pil": MTLImageProcessor, "torchvision": MTLImageProcessor},
    exist_ok=True,
)
