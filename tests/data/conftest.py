"""Fixtures of the data tests: tiny BraTS folders written with nibabel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .files import make_volumes, write_case


@pytest.fixture
def brats_root(tmp_path: Path) -> Path:
    """Six patients (two tumour-free), 2021 naming, .nii.gz."""
    root = tmp_path / "brats"
    rng = np.random.default_rng(0)
    for i in range(6):
        pid = f"BraTS2021_{i:05d}"
        write_case(root / pid, pid, make_volumes(rng, tumour=i % 3 != 2))
    return root
