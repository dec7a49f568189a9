"""Intensity normalisation of medical images, per channel: MR percentiles, CT windows, PET SUV.

MR intensities have no absolute scale (the same tissue differs between scanners, sessions and
patients), so each volume is normalised with statistics of its own foreground voxels (background
excluded, so the amount of air around the head does not matter): clipped to percentiles, then mapped
to [0, 1] (``minmax``) or standardised (``zscore``). CT intensities are Hounsfield units, an absolute
scale: a *window* (level ``L``, width ``W``) maps ``[L - W/2, L + W/2]`` to [0, 1] whatever the scan, and
several windows of one scan (brain, bone...) become several channels. PET voxels become standardised
uptake values when the header says how (:mod:`mtl_hf.data.pet`), then a fixed SUV window.

One :class:`IntensitySpec` says how one input channel (one file) becomes one or more model channels.
The data layer applies it per volume before slicing (and caches the result); the image processor
records the specs of the channels a model was trained on and applies them to raw 2-D inputs, and
:func:`mtl_hf.inference.predict` applies them per volume, so a model always sees intensities
made the way its training data was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

NormalizationMethod = Literal["minmax", "zscore", "none", "window", "suv"]
METHODS: tuple[str, ...] = ("minmax", "zscore", "none", "window", "suv")

CT_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "soft_tissue": (50.0, 400.0),
    "mediastinum": (50.0, 350.0),
    "liver": (60.0, 160.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
}
"""Hounsfield windows ``name: (level, width)`` in common radiological use."""


@dataclass
class Window:
    """A display window ``[level - width/2, level + width/2]`` mapped to [0, 1] (values outside clipped).

    Give ``preset`` (a name of :data:`CT_WINDOWS`) or ``level`` and ``width``.
    """

    preset: str | None = None
    level: float | None = None
    width: float | None = None

    def __post_init__(self) -> None:
        if self.preset is not None:
            if self.level is not None or self.width is not None:
                raise ValueError("a window gives a preset or a level and a width, not both")
            if self.preset not in CT_WINDOWS:
                raise ValueError(f"unknown window preset {self.preset!r}; known: {', '.join(CT_WINDOWS)}")
            self.level, self.width = CT_WINDOWS[self.preset]
        elif self.level is None or self.width is None:
            raise ValueError("a window needs a preset, or both level and width")
        if not self.width > 0:
            raise ValueError(f"window width must be positive, got {self.width}")

    @property
    def name(self) -> str:
        return self.preset or f"L{self.level:g}W{self.width:g}"

    @property
    def bounds(self) -> tuple[float, float]:
        assert self.level is not None and self.width is not None
        return self.level - self.width / 2, self.level + self.width / 2


@dataclass
class IntensitySpec:
    """How one input channel (a volume file, a grey image) becomes model channels.

    Attributes:
        method: ``"minmax"`` (default): clip to the ``percentiles`` of the foreground voxels (non-zero,
            or a given mask such as the brain), map them to [0, 1], background 0. ``"zscore"``: clip,
            then standardise with the foreground's mean and standard deviation, background 0.
            ``"window"``: each of ``windows`` gives one channel (CT in Hounsfield units).
            ``"suv"``: PET standardised uptake values (computed from the header by the reader) clipped
            to ``[0, suv_max]`` and divided by ``suv_max``; a volume whose header does not allow SUV
            falls back to ``minmax`` (the build summary says which volumes did).
            ``"none"``: raw values as float32.
        percentiles: Lower and upper percentile (``minmax``, ``zscore``; ``[0, 100]`` disables clipping).
        windows: The windows of ``"window"``, each a preset name or ``{level, width}``.
        suv_max: Upper end of the SUV window of ``"suv"``.
    """

    method: NormalizationMethod = "minmax"
    percentiles: tuple[float, float] = (0.5, 99.5)
    windows: list[Window | str] = field(default_factory=list)
    suv_max: float = 10.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"percentiles: need 0 <= low < high <= 100, got {list(self.percentiles)}")
        self.windows = [w if isinstance(w, Window) else _window(w) for w in self.windows]
        if self.method == "window" and not self.windows:
            raise ValueError("method 'window' needs at least one window (a preset name or {level, width})")
        if self.method != "window" and self.windows:
            raise ValueError(f"windows apply to method 'window', not {self.method!r}")
        if not self.suv_max > 0:
            raise ValueError(f"suv_max must be positive, got {self.suv_max}")

    @property
    def window_list(self) -> list[Window]:
        """``windows`` as :class:`Window` objects (names are resolved when the spec is made)."""
        return [w if isinstance(w, Window) else _window(w) for w in self.windows]

    @property
    def num_outputs(self) -> int:
        """Model channels this input channel gives (one per window)."""
        return len(self.windows) if self.method == "window" else 1

    def describe(self) -> str:
        """One line saying what is done, for logs, ``predictions.json`` and model cards."""
        if self.method in ("minmax", "zscore"):
            what = "min-max to [0, 1]" if self.method == "minmax" else "z-score"
            lo, hi = self.percentiles
            return (
                f"{what} after clipping to percentiles {lo:g}-{hi:g} of the foreground voxels of each volume"
            )
        if self.method == "window":
            return "Hounsfield windows " + ", ".join(
                f"{w.name} [{w.bounds[0]:g}, {w.bounds[1]:g}]" for w in self.window_list
            )
        if self.method == "suv":
            return f"SUV from the header clipped to [0, {self.suv_max:g}] (min-max when the header lacks it)"
        return "raw values"

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "percentiles": list(self.percentiles),
            "windows": [{"level": w.level, "width": w.width, "preset": w.preset} for w in self.window_list],
            "suv_max": self.suv_max,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> IntensitySpec:
        windows: list[Window | str] = [
            Window(preset=w["preset"]) if w.get("preset") else Window(level=w["level"], width=w["width"])
            for w in raw.get("windows", [])
        ]
        return cls(
            method=raw.get("method", "minmax"),
            percentiles=tuple(raw.get("percentiles", (0.5, 99.5))),
            windows=windows,
            suv_max=float(raw.get("suv_max", 10.0)),
        )


def _window(raw: Any) -> Window:
    if isinstance(raw, str):
        return Window(preset=raw)
    if isinstance(raw, Mapping):
        unknown = set(raw) - {"preset", "level", "width"}
        if unknown:
            raise ValueError(f"window: unknown keys {sorted(unknown)}; give preset, or level and width")
        return Window(**raw)
    raise ValueError(f"window: expected a preset name or {{level, width}}, got {raw!r}")


def apply_intensity(
    volume: np.ndarray,
    spec: IntensitySpec,
    foreground: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``spec`` applied to one input channel of any shape: ``(K, *volume.shape)`` float32, ``K =
    spec.num_outputs``.

    Args:
        volume: Intensities (HU for CT windows; SUV already computed for ``"suv"``).
        spec: The method.
        foreground: Voxels whose statistics count (``minmax``, ``zscore``); ``None``: the non-zero ones.
        out: Optional float32 array of the output's shape to write into.
    """
    import numpy as np  # here, not at the top: the specs alone (read by configs and --help) need no numpy

    shape = (spec.num_outputs, *volume.shape)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {shape}, got {out.dtype} {out.shape}")
    if spec.method == "window":
        for k, window in enumerate(spec.window_list):
            lo, hi = window.bounds
            np.copyto(out[k], volume, casting="unsafe")
            np.clip(out[k], lo, hi, out=out[k])
            out[k] -= np.float32(lo)
            out[k] *= np.float32(1.0 / (hi - lo))
        return out
    if spec.method == "suv":
        np.copyto(out[0], volume, casting="unsafe")
        np.clip(out[0], 0.0, spec.suv_max, out=out[0])
        out[0] *= np.float32(1.0 / spec.suv_max)
        return out
    mask = volume != 0 if foreground is None else foreground
    normalize_volume(volume, mask, spec.method, spec.percentiles, out=out[0])
    return out


def normalize_volume(
    volume: np.ndarray,
    brain: np.ndarray,
    method: str = "minmax",
    percentiles: Sequence[float] = (0.5, 99.5),
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Normalise ``volume`` with statistics of its voxels inside ``brain``; background becomes 0.

    Args:
        volume: Intensities, any shape and numeric dtype.
        brain: Boolean mask of the same shape; statistics use only these voxels.
        method: ``"minmax"``: clip to the percentiles, then map them to [0, 1]. ``"zscore"``: clip, then
            subtract the mean and divide by the standard deviation of the clipped brain voxels.
            ``"none"``: only cast to float32 (the percentiles are ignored).
        percentiles: Lower and upper percentile (0-100) of the brain voxels to clip to.
        out: Optional float32 array of ``volume``'s shape to write into (any memory layout: the caller
            chooses one that suits what comes next, e.g. slice-contiguous), saving a copy.

    Returns:
        A float32 array of ``volume``'s shape (``out`` if given). A volume with an empty or constant
        brain gives zeros (min-max, z-score), since it has no contrast to keep.
    """
    import numpy as np

    if volume.shape != brain.shape:
        raise ValueError(f"volume shape {volume.shape} differs from brain mask shape {brain.shape}")
    if method not in ("minmax", "zscore", "none"):
        raise ValueError(f"method must be 'minmax', 'zscore' or 'none', got {method!r}")
    if out is None:
        out = np.empty(volume.shape, dtype=np.float32)
    elif out.shape != volume.shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {volume.shape}, got {out.dtype} {out.shape}")
    np.copyto(out, volume, casting="unsafe")
    if method == "none":
        return out
    values = out[brain]
    if values.size == 0:
        out[...] = 0.0
        return out
    lo, hi = (float(v) for v in np.percentile(values, [percentiles[0], percentiles[1]]))
    np.clip(out, lo, hi, out=out)
    if method == "minmax":
        if hi <= lo:
            out[...] = 0.0
            return out
        out -= np.float32(lo)
        out *= np.float32(1.0 / (hi - lo))
    else:
        clipped = np.clip(values, lo, hi).astype(np.float64)
        mean, std = clipped.mean(), clipped.std()
        if std <= 0:
            out[...] = 0.0
            return out
        out -= np.float32(mean)
        out *= np.float32(1.0 / std)
    out[~brain] = 0.0
    return out
