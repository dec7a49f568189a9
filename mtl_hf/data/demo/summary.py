"""What a demo build wrote (:class:`DemoSummary`) and the data configs that read the demo set."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .brats import BratsDemoPatient
from .ultrasound import PATHOLOGIES, UltrasoundDemoPatient


@dataclass
class DemoSummary:
    """What :func:`build_demo_data` wrote.

    Attributes:
        out_dir, brats_dir, ultrasound_dir, card: Paths.
        seed: The seed.
        brats_patients, ultrasound_patients: What was drawn per patient.
        brats_config, ultrasound_config: :class:`~mtl_hf.data.DataConfig` dicts that read the two sets.
        seconds: Time taken.
    """

    out_dir: str
    brats_dir: str
    ultrasound_dir: str
    card: str
    seed: int
    brats_patients: list[BratsDemoPatient] = field(default_factory=list)
    ultrasound_patients: list[UltrasoundDemoPatient] = field(default_factory=list)
    brats_config: dict[str, Any] = field(default_factory=dict)
    ultrasound_config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def num_tumour_patients(self) -> int:
        return sum(p.tumour for p in self.brats_patients)

    @property
    def num_ultrasound_images(self) -> int:
        return sum(p.num_images for p in self.ultrasound_patients)

    def ultrasound_label_counts(self) -> dict[str, int]:
        """Patients per label (``healthy`` and each pathology)."""
        counts: Counter[str] = Counter()
        for p in self.ultrasound_patients:
            counts.update(p.pathologies or ["healthy"])
        return {k: counts.get(k, 0) for k in ("healthy", *PATHOLOGIES)}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def demo_data_configs(out_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``DataConfig`` dicts (BraTS, ultrasound) reading the demo set at ``out_dir``."""
    out = Path(out_dir)
    brats = {"kind": "brats", "root": (out / "brats").as_posix(), "brats": {"modalities": ["flair"]}}
    ultrasound = {
        "kind": "images",
        "root": (out / "ultrasound").as_posix(),
        "images": {
            "manifest": "manifest.csv",
            "mask_column": "mask",
            "targets": {
                "pathology": {"kind": "binary", "columns": ["pathology"]},
                "disease": {"kind": "multilabel", "columns": list(PATHOLOGIES)},
                "diagnosis": {
                    "kind": "multiclass",
                    "columns": ["diagnosis"],
                    "classes": ["healthy", *PATHOLOGIES],
                },
            },
        },
        "split": {"stratify_by": "diagnosis"},
    }
    return brats, ultrasound
