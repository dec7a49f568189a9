"""CT-like head volumes built from real anatomy, for the ``volumes`` example (``configs/ct-volumes.yaml``).

No installed package ships CT *volumes* (pydicom's test data holds single CT slices), so the example
maps a real head, nilearn's MNI152 2009a template (1 mm, downsampled to 2 mm), to Hounsfield units:
air -1000, scalp and soft tissue 40, skull 700 (the dark non-brain voxels of the T1 template inside
the head), cerebrospinal fluid 8, white matter 28, grey matter 40 (``8 + 32 gm + 20 wm``). Each
patient gets a shift of a few millimetres, a tissue offset of up to 3 HU and 4 HU of noise; every other
patient a hyperdense ellipsoid "haemorrhage" of 60-80 HU inside the brain, which is also written as a
lesion mask. The lesions are synthetic: a model trained on them learns to find bright blobs in CT-like
brains, nothing clinical.

Writes ``<out>/volumes/<id>_ct.nii.gz``, ``<out>/volumes/<id>_mask.nii.gz`` and ``<out>/manifest.csv``
(``path``, ``mask``, ``patient_id``, ``haemorrhage``)::

    python -m mtl_hf.data.ct_example ct_example && mtl-hf train configs/ct-volumes.yaml

Needs nilearn's template files (``pip install 'mtl-hf[demo]'``).
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np

from .demo.brats import load_mni_template

HU = {"air": -1000.0, "soft": 40.0, "bone": 700.0, "csf": 8.0}


def ct_head(template: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The template at 2 mm as Hounsfield units, and its brain mask."""
    t1, gm, wm = (template[k][::2, ::2, ::2] for k in ("t1", "gm", "wm"))
    head = t1 > 0.08
    brain = (gm + wm) > 0.3
    inside = head & ~brain
    hu = np.full(t1.shape, HU["air"], dtype=np.float32)
    hu[inside] = np.where(t1[inside] < 0.3, HU["bone"], HU["soft"])
    tissue = HU["csf"] + 32.0 * gm + 20.0 * wm
    hu[brain] = tissue[brain]
    return hu, brain


def build_ct_example(out_dir: str | os.PathLike[str], patients: int = 16, seed: int = 0) -> Path:
    """Write the example volumes, masks and manifest; returns the manifest's path."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    base, brain = ct_head(load_mni_template())
    out = Path(out_dir)
    (out / "volumes").mkdir(parents=True, exist_ok=True)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    grid = np.indices(base.shape, dtype=np.float32)
    rows = []
    for p in range(patients):
        pid = f"CT{p:03d}"
        shift = rng.integers(-3, 4, size=3)
        hu = np.roll(base, tuple(int(s) for s in shift), axis=(0, 1, 2)).copy()
        mask_region = np.roll(brain, tuple(int(s) for s in shift), axis=(0, 1, 2))
        soft = hu > -200
        hu[soft] += rng.uniform(-3, 3)
        mask = np.zeros(base.shape, dtype=np.uint8)
        lesion = p % 2 == 1
        if lesion:
            candidates = np.argwhere(mask_region)
            centre = candidates[rng.integers(len(candidates))]
            radii = rng.uniform(3, 7, size=3)
            d = sum(((grid[k] - centre[k]) / radii[k]) ** 2 for k in range(3))
            blob = (d <= 1) & mask_region
            hu[blob] = rng.uniform(60, 80)
            mask[blob] = 1
        hu += rng.normal(0, 4, size=hu.shape).astype(np.float32) * soft
        ct_path = out / "volumes" / f"{pid}_ct.nii.gz"
        mask_path = out / "volumes" / f"{pid}_mask.nii.gz"
        nib.save(nib.Nifti1Image(np.round(hu).astype(np.int16), affine), ct_path)
        nib.save(nib.Nifti1Image(mask, affine), mask_path)
        rows.append(
            {
                "path": os.path.relpath(ct_path, out),
                "mask": os.path.relpath(mask_path, out),
                "patient_id": pid,
                "haemorrhage": int(lesion),
            }
        )
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write (e.g. ct_example)")
    parser.add_argument("--patients", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(build_ct_example(args.out_dir, args.patients, args.seed))


if __name__ == "__main__":
    main()
