"""PET standardised uptake values (SUV, body-weight): from the header when it allows, else ``None``.

``SUV = C * W / D``: ``C`` the activity concentration of a voxel (Bq/mL), ``W`` the body weight (g) and
``D`` the injected dose (Bq) decayed to the time ``C`` refers to. Sources:

* a DICOM PET series: ``Units`` must be ``BQML``; ``PatientWeight`` (kg), and from
  ``RadiopharmaceuticalInformationSequence[0]`` ``RadionuclideTotalDose`` (Bq),
  ``RadionuclideHalfLife`` (s) and ``RadiopharmaceuticalStartTime``; with ``DecayCorrection`` ``START``
  the dose is decayed from injection to ``SeriesTime`` (the scan start), with ``ADMIN`` it is not
  decayed (the images are corrected to the injection time);
* a NIfTI volume: a BIDS-style JSON sidecar (``scan.json`` beside ``scan.nii.gz``) giving
  ``InjectedRadioactivity`` (MBq), ``BodyWeight`` (kg) and ``Units`` ``Bq/mL``; the images are taken
  as decay corrected to the injection time, as BIDS PET data are.

When any of these is missing, :func:`suv_factor` returns ``None`` and the ``suv`` intensity method
falls back to min-max over the volume's foreground (percentiles 0.5-99.5), and the cache build records
which volumes did (:class:`~mtl_hf.data.BuildSummary` ``notes``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def suv_factor_from_dicom(header: Any) -> float | None:
    """``W / D`` (g/Bq) from a DICOM PET header, or ``None`` when the header does not allow it."""
    try:
        if str(getattr(header, "Units", "")).upper() != "BQML":
            return None
        weight_g = float(header.PatientWeight) * 1000.0
        info = header.RadiopharmaceuticalInformationSequence[0]
        dose = float(info.RadionuclideTotalDose)
        decay = str(getattr(header, "DecayCorrection", "START")).upper()
        if decay == "START":
            half_life = float(info.RadionuclideHalfLife)
            elapsed = _seconds(str(header.SeriesTime)) - _seconds(str(info.RadiopharmaceuticalStartTime))
            if elapsed < 0:
                elapsed += 24 * 3600  # injected before midnight
            dose *= math.pow(2.0, -elapsed / half_life)
        elif decay != "ADMIN":
            return None
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None
    if not (weight_g > 0 and dose > 0):
        return None
    return weight_g / dose


def suv_factor_from_sidecar(nifti_path: str) -> float | None:
    """``W / D`` (g/Bq) from the BIDS-style JSON sidecar of a NIfTI PET volume, or ``None``."""
    name = Path(nifti_path).name
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else Path(name).stem
    sidecar = Path(nifti_path).with_name(stem + ".json")
    try:
        meta = json.loads(sidecar.read_text())
        if str(meta.get("Units", "")).replace(" ", "").lower() != "bq/ml":
            return None
        weight_g = float(meta["BodyWeight"]) * 1000.0
        dose = float(meta["InjectedRadioactivity"]) * 1e6
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not (weight_g > 0 and dose > 0):
        return None
    return weight_g / dose


def _seconds(hhmmss: str) -> float:
    """DICOM TM ``HHMMSS.frac`` as seconds after midnight."""
    text = hhmmss.strip()
    return int(text[0:2]) * 3600 + int(text[2:4]) * 60 + float(text[4:] or 0)
