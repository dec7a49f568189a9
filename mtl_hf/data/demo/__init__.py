"""Offline, deterministic demo data: a BraTS-layout MRI set and a muscle-ultrasound-like image set.

:func:`build_demo_data` writes, from a seed and without any download::

    OUT/
      README.md              data card: what is real, what is synthetic, how labels were made
      demo_summary.json      what was drawn per patient, and the data configs below
      brats/<patient>/<patient>_{flair,t1,t1ce,t2,seg}.nii.gz
      ultrasound/images/<patient>/<patient>_<k>.png
      ultrasound/masks/<patient>/<patient>_<k>.png
      ultrasound/manifest.csv  path, patient_id, myopathy, myelopathy, polyneuropathy, pathology,
                               diagnosis, mask, source

It needs the ``demo`` extra (``pip install 'mtl-hf[demo]'``: nilearn for the MNI152 brain template,
pydicom and pydicom-data for the real ultrasound frames). The same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Literal

from ...options import OptionsError
from .brats import write_brats_demo
from .card import write_data_card
from .summary import DemoSummary, demo_data_configs
from .ultrasound import write_ultrasound_demo


def build_demo_data(
    out_dir: str | Path,
    seed: int = 0,
    *,
    brats_patients: int = 200,
    brats_slices: int = 10,
    tumour_free_fraction: float = 0.25,
    brats_naming: Literal["2021", "2023"] = "2021",
    ultrasound_patients: int = 50,
    images_per_patient: tuple[int, int] = (5, 10),
    ultrasound_size: int = 128,
    healthy_fraction: float = 0.4,
    comorbid_fraction: float = 0.1,
    workers: int = 1,
) -> DemoSummary:
    """Write the demo data sets and their data card under ``out_dir`` (see module docstring).

    Args:
        out_dir: Output folder (created). A folder holding an earlier demo build (its
            ``demo_summary.json``) is rebuilt from scratch; any other non-empty folder is refused.
        seed: Everything drawn follows from it.
        brats_patients: Patients of the BraTS-layout set (default 200: 2,000 slices; ``mtl-hf demo``
            splits them 40 / 40 / 120 into training, validation and test patients).
        brats_slices: Axial slices written per patient (a band around z = +12 mm of the MNI 2 mm grid).
        tumour_free_fraction: Share of BraTS patients without a tumour.
        brats_naming: ``"2021"`` (``<id>_flair.nii.gz``, enhancing label 4) or ``"2023"``
            (``<id>-t2f.nii.gz``, enhancing label 3).
        ultrasound_patients: Patients of the ultrasound set (default 50: about 375 images).
        images_per_patient: Inclusive range of images per ultrasound patient.
        ultrasound_size: Side of the square ultrasound images in pixels.
        healthy_fraction: Share of healthy ultrasound patients.
        comorbid_fraction: Chance that a patient with a pathology has a second one.
        workers: Processes drawing BraTS patients in parallel (the files do not depend on it).

    Returns:
        A :class:`DemoSummary` (also written as ``demo_summary.json``).
    """
    if brats_patients < 1 or ultrasound_patients < 1:
        raise OptionsError(
            f"brats_patients and ultrasound_patients must be at least 1, got {brats_patients} and "
            f"{ultrasound_patients}"
        )
    lo, hi = images_per_patient
    if not 1 <= lo <= hi:
        raise OptionsError(
            f"images_per_patient must be (low, high) with 1 <= low <= high, got {images_per_patient}"
        )
    for name, value in (("tumour_free_fraction", tumour_free_fraction), ("healthy_fraction", healthy_fraction),
                        ("comorbid_fraction", comorbid_fraction)):  # fmt: skip
        if not 0.0 <= value <= 1.0:
            raise OptionsError(f"{name} must be in [0, 1], got {value}")
    start = time.perf_counter()
    out = Path(out_dir)
    brats_dir, ultrasound_dir = out / "brats", out / "ultrasound"
    _clear_previous_build(out)
    brats_dir.mkdir(parents=True, exist_ok=True)
    ultrasound_dir.mkdir(parents=True, exist_ok=True)
    brats = write_brats_demo(
        brats_dir,
        seed=seed,
        num_patients=brats_patients,
        num_slices=brats_slices,
        tumour_free_fraction=tumour_free_fraction,
        naming=brats_naming,
        workers=workers,
    )
    ultrasound = write_ultrasound_demo(
        ultrasound_dir,
        seed=seed,
        num_patients=ultrasound_patients,
        images_per_patient=(lo, hi),
        image_size=ultrasound_size,
        healthy_fraction=healthy_fraction,
        comorbid_fraction=comorbid_fraction,
    )
    brats_config, ultrasound_config = demo_data_configs(out)
    summary = DemoSummary(
        out_dir=str(out),
        brats_dir=str(brats_dir),
        ultrasound_dir=str(ultrasound_dir),
        card=str(out / "README.md"),
        seed=seed,
        brats_patients=brats,
        ultrasound_patients=ultrasound,
        brats_config=brats_config,
        ultrasound_config=ultrasound_config,
    )
    write_data_card(
        summary, brats_slices=brats_slices, brats_naming=brats_naming, ultrasound_size=ultrasound_size
    )
    # The written record holds no absolute path and no timing, so the same seed gives identical files.
    record = summary.to_dict()
    record.pop("seconds")
    record.update(out_dir=".", brats_dir="brats", ultrasound_dir="ultrasound", card="README.md")
    record["brats_config"], record["ultrasound_config"] = demo_data_configs(".")
    (out / "demo_summary.json").write_text(json.dumps(record, indent=2) + "\n")
    summary.seconds = time.perf_counter() - start
    return summary


def _clear_previous_build(out: Path) -> None:
    """Remove an earlier demo build in ``out`` (stale patients would otherwise be read with the new ones)."""
    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / "demo_summary.json").is_file():
        raise FileExistsError(f"{out}: not empty and not a demo data folder; choose an empty or new folder")
    for name in ("brats", "ultrasound"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("README.md", "demo_summary.json"):
        (out / name).unlink(missing_ok=True)


__all__ = ["DemoSummary", "build_demo_data", "demo_data_configs"]
