"""The data card (README.md) of the demo data: what is real, what is synthetic, how labels were made."""

from __future__ import annotations

import json
from pathlib import Path

from .summary import DemoSummary, demo_data_configs


def write_data_card(
    summary: DemoSummary, *, brats_slices: int, brats_naming: str, ultrasound_size: int
) -> Path:
    """Write ``README.md`` in the demo folder and return its path."""
    brats_cfg, us_cfg = demo_data_configs(".")
    n_brats = len(summary.brats_patients)
    n_tumour = summary.num_tumour_patients
    n_us = len(summary.ultrasound_patients)
    counts = summary.ultrasound_label_counts()
    comorbid = sum(len(p.pathologies) > 1 for p in summary.ultrasound_patients)
    et_label = 4 if brats_naming == "2021" else 3
    suffix = (
        "_flair / _t1 / _t1ce / _t2 / _seg" if brats_naming == "2021" else "-t2f / -t1n / -t1c / -t2w / -seg"
    )
    text = f"""# mtl-hf demo data (seed {summary.seed})

Two small data sets for trying mtl-hf end to end on a laptop, built offline and deterministically by
`mtl_hf.data.build_demo_data` (`mtl-hf make-demo-data OUT --seed {summary.seed}` gives identical files).
**They are for demonstrations and software tests only: the labels are synthetic. Do not use them to
make or support any clinical or scientific claim about real tumours or muscle disease.**

## What is real and what is synthetic

| | real | synthetic |
|---|---|---|
| `brats/` | brain anatomy: the MNI152 ICBM 2009a symmetric template (T1 and grey/white-matter maps) shipped with nilearn | per-patient warps, T2/FLAIR/T1ce contrasts, tumours and their segmentations, bias fields, noise, gains |
| `ultrasound/` | speckle and tissue texture: crops of real B-mode frames shipped with pydicom-data | patients, labels, pathology texture patterns and their masks, gains, gamma, flips |

## `brats/`: brain MRI in BraTS layout

- {n_brats} patients, {n_tumour} with a tumour and {n_brats - n_tumour} without; one folder per patient with
  four modalities and a segmentation named `<id>{suffix}` (BraTS {brats_naming} naming), gzipped NIfTI, int16.
- Grid: the MNI 2 mm grid (91 x 109 x 91); only a band of {brats_slices} axial slices around z = +12 mm is
  written (the affine keeps the true MNI position). Background outside the brain is 0 (skull-stripped).
- Each patient: the template warped by a small random affine (rotation up to 6 degrees, scale 0.93-1.07,
  shift up to 3 mm) and a smooth random displacement field; T1 is the template's real T1, T1ce a
  re-scaled copy, T2 and FLAIR are mixtures of the real tissue maps (CSF bright in T2, dark in FLAIR).
- Tumours: an irregular ellipsoid of random radius (2-7 voxels: 8-28 mm across) and aspect, placed
  inside the brain; either ring-enhancing (necrotic core label 1, enhancing rim label {et_label}) or a
  non-enhancing solid core (label 1), with an oedema ring of random width (label 2). Tumour contrast
  has a random strength (0.45-1.0 of full), so small faint tumours are hard.
- Acquisition: smooth multiplicative bias field per modality, Rician noise (sigma 1-3.5 % of white
  matter), random gain.
- Slice label (computed by `mtl_hf.data` at load time): tumour present when the slice has at least
  `min_tumour_pixels` voxels of the chosen tumour labels (default: any non-zero label, 1 voxel).
- Source of the anatomy: MNI ICBM 2009a nonlinear symmetric template (Collins et al. 1999; Fonov et
  al., NeuroImage 2009 and 2011), McConnell Brain Imaging Centre, Montreal Neurological Institute,
  McGill University, as shipped inside nilearn (whose catalogue lists its licence as unknown; the
  original distribution carries a permissive copyright notice). Check the terms before redistributing
  these files.

## `ultrasound/`: muscle-ultrasound-like images

- {n_us} patients, {summary.num_ultrasound_images} grey-scale PNG images of {ultrasound_size} x {ultrasound_size} px
  (`images/<patient>/`), a lesion mask per image (`masks/<patient>/`, 255 = region carrying the
  pattern, empty for healthy images) and `manifest.csv`.
- Patients per label: healthy {counts["healthy"]}, myopathy {counts["myopathy"]}, myelopathy
  {counts["myelopathy"]}, polyneuropathy {counts["polyneuropathy"]} ({comorbid} patients have two pathologies).
- Real frames (pydicom-data): `gdcm-US-ALOKA-16.dcm` (two panels), `color3d_jpeg_baseline.dcm` (every 5th
  of its 120 echocardiography frames), `US1_UNCR.dcm` (musculoskeletal preset; colour-Doppler pixels
  replaced by the nearest grey pixel). These are not muscle scans of patients with these diseases.
- Each patient: one source region (from the musculoskeletal frame for 40 % of patients, the Aloka
  panels for 30 %, the echo frames for 30 %); 5-10 random crops (55-95 % of the region), flips, a gain and gamma;
  multiplicative speckle noise on every image.
- Synthetic pathology patterns, inside a smooth random region covering 40-80 % of the image, with a
  per-patient severity (0.5-1.0):
  - myopathy: increased echo intensity with reduced texture contrast ("ground glass");
  - myelopathy: patchy bright spots ("moth-eaten");
  - polyneuropathy: coarser, streaky texture with a slight brightening.
- `manifest.csv` columns: `path`, `patient_id`, `myopathy`, `myelopathy`, `polyneuropathy` (0/1, multi-label),
  `pathology` (0/1: any of them), `diagnosis` (healthy or the first pathology drawn), `mask`, `source`
  (the real frame the image was cut from).
- Source of the frames: the pydicom-data package (test files collected by the pydicom project from
  public DICOM test sets); see that package for their terms.

## Reading them with mtl-hf

Data configs (`mtl_hf.data.DataConfig`, paths relative to this folder):

```json
{json.dumps({"brats": brats_cfg, "ultrasound": us_cfg}, indent=2)}
```

Splits are made per patient (`mtl_hf.data.prepare_datasets`); `demo_summary.json` lists what was drawn
for every patient (tumour size and contrast, pathologies and severity).

## How `mtl-hf demo` splits `brats/`

The demo's low-data study splits the BraTS-like patients 20 / 20 / 60 % by patient, stratified by
tumour (with the default 200 patients: 40 / 40 / 120):

- **Training, 40 patients, small on purpose.** The study asks how the strategies behave when labelled
  data are scarce; the runs use nested subsets of 10 %, 30 % and 100 % of them (4, 12 and 40 patients).
- **Validation, 40 patients.** They choose each run's epoch (and the operating threshold). Model
  selection compares epochs of one run on the same patients, so what matters is the noise of a
  *paired* difference: in the demo, paired differences between strategies on the 120 test patients
  had 95 % intervals of about +-0.005, about +-0.01 at 40 patients (square-root scaling), below
  the 0.01-0.03 by which the validation AUC rose from the first to the best epoch (0.14 for MTL at
  10 %). With the 6 validation patients of a 60 / 20 / 20 split of 32 patients, it was noise
  (validation AUC near 0.5).
- **Test, 120 patients.** Each strategy's 95 % patient-bootstrap interval of test ROC AUC then has a
  half-width of about 0.035 (the demo's `results.md` reports the exact values), narrow enough to read
  the differences the study is about; every run is tested on the same patients, so the strategies are
  compared paired.
"""
    path = Path(summary.out_dir) / "README.md"
    path.write_text(text)
    return path
