"""A small muscle-ultrasound-like demo set: real B-mode frames with synthetic pathology patterns.

Real: the speckle and tissue texture. Every image is a crop of a real grey-scale B-mode ultrasound
frame shipped in pydicom-data:

* ``gdcm-US-ALOKA-16.dcm`` (Aloka, pelvis, two panels; palette colour applied, then luminance),
* ``color3d_jpeg_baseline.dcm`` (an echocardiography cine loop; every 5th of its 120 frames),
* ``US1_UNCR.dcm`` (GE, musculoskeletal preset; its colour-Doppler pixels are replaced by the nearest
  grey pixel).

Synthetic: the patients, their labels and the patterns that carry the labels. A patient has one
source region and 5-10 images (random crops, scales and flips of it), a per-patient gain and gamma,
and is healthy or has one pathology (sometimes two). Each pathology changes the echo texture inside
a smooth random region (saved as the image's lesion mask), with a per-patient severity:

* **myopathy**: increased echo intensity with reduced texture contrast (a homogeneous "ground glass"
  brightening), as myopathic muscle looks brighter and more uniform;
* **myelopathy**: patchy bright spots (a coarse, "moth-eaten" pattern);
* **polyneuropathy**: a coarser, streaky texture (horizontal bands) with a slight brightening.

These patterns are inspired by, not copied from, the sonographic signs of neuromuscular disease;
the set only serves to exercise the software and to compare training strategies.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...extras import MissingExtraError

PATHOLOGIES = ("myopathy", "myelopathy", "polyneuropathy")
ECHO_FRAMES = tuple(range(0, 120, 5))

# Source families and how often a patient is cut from each (the musculoskeletal frame most often).
FAMILIES = ("US1_UNCR.dcm", "gdcm-US-ALOKA-16.dcm", "color3d_jpeg_baseline.dcm")
FAMILY_WEIGHTS = (0.4, 0.3, 0.3)

# Regions of interest (x0, y0, x1, y1) inside each source frame: tissue only, no text or markers.
SOURCE_ROIS: dict[str, list[tuple[int, int, int, int]]] = {
    "gdcm-US-ALOKA-16.dcm": [(70, 100, 330, 410), (345, 100, 625, 410)],
    "color3d_jpeg_baseline.dcm": [(240, 110, 440, 370)],
    "US1_UNCR.dcm": [(20, 105, 620, 335)],
}


@dataclass
class UltrasoundDemoPatient:
    """What was drawn for one demo patient."""

    patient_id: str
    pathologies: list[str]
    severity: float
    source: str
    num_images: int


def load_sources() -> list[tuple[str, np.ndarray]]:
    """``[(name, grey float32 region in [0, 1])]``: the tissue regions of the real frames."""
    try:
        import pydicom
        from pydicom.data import get_testdata_file
        from pydicom.pixels import apply_color_lut, pixel_array
    except ImportError as exc:
        raise MissingExtraError(
            "the demo data (real ultrasound frames)", "pydicom", "demo", str(exc)
        ) from exc
    from scipy.ndimage import distance_transform_edt

    def path_of(name: str) -> str:
        path = get_testdata_file(name)
        if path is None:
            reason = f"its test files lack {name}"
            raise MissingExtraError("the demo data (real ultrasound frames)", "pydicom-data", "demo", reason)
        return str(path)

    sources: list[tuple[str, np.ndarray]] = []
    name = "gdcm-US-ALOKA-16.dcm"
    ds = pydicom.dcmread(path_of(name))
    rgb = apply_color_lut(ds.pixel_array, ds).astype(np.float32) / 65535.0
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    sources += [(f"{name}:panel{k}", _crop(grey, roi)) for k, roi in enumerate(SOURCE_ROIS[name])]

    name = "color3d_jpeg_baseline.dcm"
    ds = pydicom.dcmread(path_of(name))
    for frame in ECHO_FRAMES:
        rgb = pixel_array(ds, index=frame).astype(np.float32) / 255.0
        sources.append((f"{name}:frame{frame}", _crop(rgb.mean(-1), SOURCE_ROIS[name][0])))

    name = "US1_UNCR.dcm"
    rgb = pydicom.dcmread(path_of(name)).pixel_array.astype(np.float32) / 255.0
    overlay = (rgb.max(-1) - rgb.min(-1) > 0.12) | (rgb.min(-1) > 0.94)  # Doppler colour, box lines
    _, (iy, ix) = distance_transform_edt(overlay, return_indices=True)
    grey = rgb.mean(-1)[iy, ix]
    sources.append((f"{name}", _crop(grey, SOURCE_ROIS[name][0])))
    return sources


def _crop(image: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = roi
    return np.ascontiguousarray(image[y0:y1, x0:x1], dtype=np.float32)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(
        Image.fromarray(image.astype(np.float32)).resize((size, size), Image.Resampling.BILINEAR)
    )


def _region(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random blob covering 40-80 % of the image, as weights in [0, 1]."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal((size, size)), size / 8, mode="wrap")
    cut = np.quantile(field, 1.0 - rng.uniform(0.4, 0.8))
    hard = field > cut
    return gaussian_filter(hard.astype(np.float32), 1.5)


def apply_pathology(
    image: np.ndarray, kind: str, severity: float, weight: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """``image`` (float, [0, 1]) with the texture change of ``kind`` inside ``weight`` (see module doc)."""
    from scipy.ndimage import gaussian_filter

    size = image.shape[0]
    w = weight * severity
    if kind == "myopathy":
        local_mean = gaussian_filter(image, 3.0)
        flattened = local_mean + (image - local_mean) * (1.0 - 0.6 * w)
        return flattened + w * (0.2 + 0.3 * local_mean)
    if kind == "myelopathy":
        points = (rng.random((size, size)) < 0.004).astype(np.float32)
        spots = gaussian_filter(points, 3.5)
        spots /= max(float(spots.max()), 1e-6)
        return image + 0.8 * w * spots
    if kind == "polyneuropathy":
        streaks = gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), (1.5, 8.0))
        streaks /= max(float(streaks.std()), 1e-6)
        return image + w * (0.2 * streaks + 0.1)
    raise ValueError(f"unknown pathology {kind!r}")


def write_ultrasound_demo(
    out_dir: Path,
    *,
    seed: int,
    num_patients: int,
    images_per_patient: tuple[int, int],
    image_size: int,
    healthy_fraction: float,
    comorbid_fraction: float,
) -> list[UltrasoundDemoPatient]:
    """Write the demo images, masks and ``manifest.csv`` under ``out_dir`` (see module docstring)."""
    from PIL import Image
    from tqdm.auto import tqdm

    sources = load_sources()
    label_rng = np.random.default_rng([seed, 2])
    n_healthy = round(healthy_fraction * num_patients)
    healthy = set(label_rng.permutation(num_patients)[:n_healthy].tolist())
    rows: list[dict[str, Any]] = []
    patients = []
    for i in tqdm(range(num_patients), desc="demo ultrasound patients", leave=False):
        rng = np.random.default_rng([seed, 3, i])
        pid = f"DemoUS_{i:03d}"
        pathologies: list[str] = []
        if i not in healthy:
            first = int(rng.integers(len(PATHOLOGIES)))
            pathologies.append(PATHOLOGIES[first])
            if rng.random() < comorbid_fraction:
                second = (first + 1 + int(rng.integers(len(PATHOLOGIES) - 1))) % len(PATHOLOGIES)
                pathologies.append(PATHOLOGIES[second])
        severity = float(rng.uniform(0.5, 1.0))
        family = FAMILIES[int(rng.choice(len(FAMILIES), p=FAMILY_WEIGHTS))]
        members = [k for k, (name, _) in enumerate(sources) if name.startswith(family)]
        source_name, region = sources[members[int(rng.integers(len(members)))]]
        gain, gamma = rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.2)
        n_images = int(rng.integers(images_per_patient[0], images_per_patient[1] + 1))
        (out_dir / "images" / pid).mkdir(parents=True, exist_ok=True)
        (out_dir / "masks" / pid).mkdir(parents=True, exist_ok=True)
        for k in range(n_images):
            h, w = region.shape
            side = int(min(h, w) * rng.uniform(0.55, 0.95))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = region[y : y + side, x : x + side]
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            image = np.clip(_resize(np.ascontiguousarray(crop), image_size), 0, 1) ** gamma * gain
            weight = np.zeros_like(image)
            if pathologies:
                weight = _region(rng, image_size)
                for kind in pathologies:
                    image = apply_pathology(image, kind, severity, weight, rng)
            speckle = 1.0 + 0.08 * rng.standard_normal(image.shape)
            pixels = np.clip(image * speckle, 0, 1)
            name = f"{pid}_{k:02d}.png"
            Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(out_dir / "images" / pid / name)
            mask = (weight > 0.5).astype(np.uint8) * 255
            Image.fromarray(mask).save(out_dir / "masks" / pid / name)
            rows.append(
                {
                    "path": f"images/{pid}/{name}",
                    "patient_id": pid,
                    **{p: int(p in pathologies) for p in PATHOLOGIES},
                    "pathology": int(bool(pathologies)),
                    "diagnosis": pathologies[0] if pathologies else "healthy",
                    "mask": f"masks/{pid}/{name}",
                    "source": source_name,
                }
            )
        patients.append(
            UltrasoundDemoPatient(
                patient_id=pid,
                pathologies=pathologies,
                severity=round(severity, 3),
                source=source_name,
                num_images=n_images,
            )
        )
    with open(out_dir / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return patients
