"""Image processor for :class:`~mtl_hf.MTLModel`: medical images in, normalised ``pixel_values`` out.

Medical images are mostly single-channel and often not 8-bit, so this processor differs from
``ViTImageProcessor`` in what it accepts, and works the same with or without torchvision (it uses
torch alone):

* inputs: PIL images, NumPy arrays or torch tensors, ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` with
  ``C`` in 1, 3, 4 (alpha dropped); a list of them makes a batch;
* intensities: ``uint8`` is multiplied by ``rescale_factor`` (1/255); other integer types (12/16-bit
  DICOM, PNG) are min-max scaled per image to [0, 1]; floating-point input is taken as already scaled;
* channels: grey is replicated to a 3-channel backbone; any other difference between the image's
  channels and the backbone's ``num_channels`` is an error (:func:`channel_mismatch`), never a silent
  merge: colour is turned grey only when asked, at reading (``data.images.grayscale``, ``predict
  --grayscale``), and MR modalities are never mixed into one channel;
* resize to ``size`` (bilinear with antialiasing by default), then ``(x - image_mean) / image_std``.

Non-finite pixels raise ``ValueError`` naming the image's index in the batch.
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

from .configuration_mtl import MTLConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Grey images seen by an ImageNet-trained backbone: the mean of the three channels' statistics.
GREY_MEAN = (0.449,)
GREY_STD = (0.226,)

Resample = Literal["bilinear", "bicubic", "nearest"]


class MTLImageProcessor(BaseImageProcessor):
    r"""Turn images of any common medical format into ``pixel_values`` for :class:`~mtl_hf.MTLModel`.

    Args:
        size (`dict` or `int`, *optional*, defaults to ``{"height": 224, "width": 224}``):
            Output size; an int means a square.
        num_channels (`int`, *optional*, defaults to 3): Channels the backbone expects (1 or 3).
        do_resize (`bool`, *optional*, defaults to `True`): Resize to ``size``.
        resample (`str`, *optional*, defaults to ``"bilinear"``): ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.
        do_rescale (`bool`, *optional*, defaults to `True`): Bring integer images to [0, 1] (see module doc).
        rescale_factor (`float`, *optional*, defaults to 1/255): Factor for ``uint8`` images.
        do_normalize (`bool`, *optional*, defaults to `True`): Subtract ``image_mean``, divide by ``image_std``.
        image_mean, image_std (`list[float]`, *optional*): Per output channel; default ImageNet's (DINO's)
            for 3 channels, their channel average for 1.
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_channels not in (1, 3):
            raise ValueError(f"num_channels must be 1 or 3, got {num_channels}")
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
        default_mean, default_std = (
            (IMAGENET_MEAN, IMAGENET_STD) if num_channels == 3 else (GREY_MEAN, GREY_STD)
        )
        self.image_mean = list(image_mean) if image_mean is not None else list(default_mean)
        self.image_std = list(image_std) if image_std is not None else list(default_std)
        for name, values in (("image_mean", self.image_mean), ("image_std", self.image_std)):
            if len(values) != num_channels:
                raise ValueError(f"{name} has {len(values)} values for {num_channels} channels")
        if any(s <= 0 for s in self.image_std):
            raise ValueError(f"image_std must be positive, got {self.image_std}")

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
            "size", "do_resize", "resample", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std"
        }  # fmt: skip
        if unknown:
            raise TypeError(f"MTLImageProcessor got unexpected argument(s): {', '.join(sorted(unknown))}")
        opts = {k: overrides.get(k, getattr(self, k)) for k in ("size", "do_resize", "resample", "do_rescale",
                                                                   "rescale_factor", "do_normalize", "image_mean", "image_std")}  # fmt: skip
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
        x = to_chw_tensor(image, index)
        if opts["do_rescale"]:
            x = rescale(x, opts["rescale_factor"])
        x = x.to(torch.float32)
        if not torch.isfinite(x).all():
            raise ValueError(f"image {index}: contains NaN or inf")
        try:
            x = convert_channels(x, self.num_channels)
        except ValueError as exc:
            raise ValueError(f"image {index}: {exc}") from exc
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

    def unnormalize(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Invert the normalisation (for figures): ``x * std + mean``, channels on dim -3."""
        mean = torch.tensor(self.image_mean, dtype=pixel_values.dtype, device=pixel_values.device).view(
            -1, 1, 1
        )
        std = torch.tensor(self.image_std, dtype=pixel_values.dtype, device=pixel_values.device).view(
            -1, 1, 1
        )
        return pixel_values * std + mean


def to_chw_tensor(image: Any, index: int = 0) -> torch.Tensor:
    """Any supported image as a ``(C, H, W)`` tensor of its original dtype."""
    if (
        hasattr(image, "mode")
        and hasattr(image, "size")
        and not isinstance(image, (np.ndarray, torch.Tensor))
    ):
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
        if t.shape[0] in (1, 3, 4) and t.shape[-1] not in (1, 3, 4):
            pass  # channels first
        elif t.shape[-1] in (1, 3, 4):
            t = t.permute(2, 0, 1)
        else:
            raise ValueError(f"image {index}: cannot tell the channel axis of shape {tuple(t.shape)}")
    else:
        raise ValueError(f"image {index}: expected 2 or 3 dimensions, got shape {tuple(t.shape)}")
    if t.shape[0] == 4:
        t = t[:3]
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
    backbone, two modalities into three) would merge, drop or invent channels without a word."""
    if channels == num_channels or (channels == 1 and num_channels == 3):
        return None
    return (
        f"the images have {channels} channel(s) but the backbone takes {num_channels} "
        f"(only grey images are converted, replicated to 3 channels)"
    )


def convert_channels(x: torch.Tensor, num_channels: int) -> torch.Tensor:
    """Replicate grey to 3 channels to match ``num_channels``; any other mismatch raises (see
    :func:`channel_mismatch`)."""
    c = x.shape[0]
    problem = channel_mismatch(c, num_channels)
    if problem is not None:
        raise ValueError(
            f"{problem}: read colour images as grey (data.images.grayscale: true in training, "
            f"predict --grayscale) or use a backbone with num_channels: {c}"
        )
    if c == 1 and num_channels == 3:
        return x.expand(3, -1, -1).clone()
    return x


AutoImageProcessor.register(
    MTLConfig,
    image_processor_classes={"pil": MTLImageProcessor, "torchvision": MTLImageProcessor},
    exist_ok=True,
)
