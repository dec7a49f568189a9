"""A small BraTS-layout demo set: the real MNI152 brain, varied per patient, with synthetic tumours.

Real: the anatomy. Each patient starts from the MNI152 2009a symmetric template shipped inside
nilearn (T1 intensities and grey/white-matter probability maps at 1 mm), resampled to the MNI 2 mm
grid (91 x 109 x 91) through a per-patient warp: a small random affine (rotation, scale, shift) plus a
smooth random displacement field.

Synthetic: everything else, drawn from the patient's seed.

* Contrasts: T1 is the template's real T1; T1ce is T1 with a slightly different gain; T2 and FLAIR
  are mixtures of the real tissue maps (CSF bright in T2, suppressed in FLAIR).
* Tumours (in most patients): an irregular ellipsoid (radius 2-7 voxels, i.e. 8-28 mm across, with
  random aspect ratios and a smooth random perturbation of its surface) placed inside the brain, with
  a necrotic core (label 1) and an enhancing ring (label 4 in BraTS 2020/21 naming, 3 in 2023), or a
  non-enhancing solid core (label 1), surrounded by an oedema ring of random width (label 2). Their
  contrast (bright in FLAIR and T2, dark in T1, ring-enhancing in T1ce) has a random strength, so
  small faint tumours are hard to see.
* Acquisition: a smooth multiplicative bias field per modality, Rician noise, a random gain, stored as
  int16 like BraTS; background (outside the brain) is 0 as in skull-stripped BraTS data.

Only a band of axial slices around the basal ganglia is written (the volumes' affine keeps their
true MNI position), so the set stays small: ``num_slices`` slices per patient.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ...extras import MissingExtraError

MNI_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
GRID_SHAPE = (91, 109, 91)
"""The MNI 2 mm grid."""
GRID_ORIGIN = np.array([-90.0, -126.0, -72.0])
BAND_CENTRE = 42
"""Axial index (2 mm grid) at the middle of the written band: z = +12 mm, through the basal ganglia."""

# Tissue intensities (before gain) of the synthetic contrasts: (CSF, grey matter, white matter).
T2_TISSUE = (1.0, 0.55, 0.38)
FLAIR_TISSUE = (0.1, 0.5, 0.36)
# Tumour sub-region targets per modality: (necrosis / non-enhancing core, enhancing rim, oedema).
LESION_TARGET = {
    "flair": (0.62, 0.8, 0.95),
    "t2": (0.95, 0.7, 0.88),
    "t1": (0.22, 0.42, None),  # None: oedema darkens the tissue (x 0.82) rather than set a value
    "t1ce": (0.22, 0.98, None),
}
MODALITIES = ("flair", "t1", "t1ce", "t2")
SUFFIXES = {
    "2021": {"flair": "_flair", "t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "seg": "_seg"},
    "2023": {"flair": "-t2f", "t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "seg": "-seg"},
}


@dataclass
class BratsDemoPatient:
    """What was drawn for one demo patient."""

    patient_id: str
    tumour: bool
    tumour_slices: int
    radius_voxels: float
    contrast: float
    enhancing: bool


def mni_template_dir() -> Path:
    """Folder of the MNI152 files inside the installed nilearn (not imported: only located)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("the demo data (the MNI152 brain template)", "nilearn", "demo")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    missing = [f for f in MNI_FILES.values() if not (folder / f).is_file()]
    if missing:
        reason = f"{folder} lacks {', '.join(missing)}"
        raise MissingExtraError("the demo data (the MNI152 brain template)", "nilearn", "demo", reason)
    return folder


def load_mni_template() -> dict[str, np.ndarray]:
    """The 1 mm template maps in [0, 1]: ``t1``, ``gm``, ``wm`` (197 x 233 x 189, origin -98, -134, -72)."""
    import nibabel as nib

    folder = mni_template_dir()
    out = {}
    for key, name in MNI_FILES.items():
        image: Any = nib.load(folder / name)
        out[key] = np.asarray(image.dataobj, dtype=np.float32) / 255.0
    return out


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], coarse: tuple[int, ...]) -> np.ndarray:
    """Zero-mean, unit-variance random field varying over about ``shape / coarse`` voxels.

    Coarse Gaussian values are interpolated with normalised Gaussian kernels along each axis (a tensor
    product of small matrices): smooth, and far cheaper than spline zooming the whole volume.
    """
    values = rng.standard_normal(coarse).astype(np.float32)
    out = values
    for axis, (n, c) in enumerate(zip(shape, coarse, strict=True)):
        position = np.linspace(0, c - 1, n, dtype=np.float32)[:, None]
        weights = np.exp(-0.5 * ((position - np.arange(c, dtype=np.float32)[None]) / 0.6) ** 2)
        weights /= weights.sum(axis=1, keepdims=True)
        out = np.moveaxis(np.tensordot(weights, np.moveaxis(out, axis, 0), axes=(1, 0)), 0, axis)
    out = (out - out.mean()) / max(float(out.std()), 1e-6)
    return np.ascontiguousarray(out, dtype=np.float32)


def make_patient(
    template: dict[str, np.ndarray],
    rng: np.random.Generator,
    *,
    band: tuple[int, int],
    tumour: bool,
    et_label: int,
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """One patient's four int16 modalities and uint8 segmentation on the band ``[z0, z1)`` of the 2 mm grid."""
    from scipy.ndimage import distance_transform_edt, gaussian_filter, map_coordinates

    z0, z1 = band
    shape = (GRID_SHAPE[0], GRID_SHAPE[1], z1 - z0)
    # World coordinates (mm) of the output voxels, warped: small affine about the brain centre + smooth field.
    idx = np.indices(shape, dtype=np.float32)
    idx[2] += z0
    world = GRID_ORIGIN.reshape(3, 1, 1, 1) + 2.0 * idx
    centre = np.array([0.0, -18.0, 18.0]).reshape(3, 1, 1, 1)
    angles = np.deg2rad(rng.uniform(-6, 6, size=3))
    rot = _rotation(*angles) * rng.uniform(0.93, 1.07)
    warped = np.einsum("ij,j...->i...", rot, world - centre) + centre
    warped += rng.uniform(-3, 3, size=3).reshape(3, 1, 1, 1)
    for axis in range(3):
        warped[axis] += 2.0 * _smooth_field(rng, shape, (5, 6, 3))
    coords = warped - np.array([-98.0, -134.0, -72.0]).reshape(3, 1, 1, 1)  # 1 mm voxel indices
    maps = {k: map_coordinates(v, coords, order=1, mode="constant", cval=0.0) for k, v in template.items()}
    brain = maps["t1"] > 0.2
    gm, wm = np.clip(maps["gm"], 0, 1), np.clip(maps["wm"], 0, 1)
    csf = np.clip(1.0 - gm - wm, 0, 1) * brain
    images = {
        "t1": maps["t1"].copy(),
        "t1ce": maps["t1"] * 0.96 + 0.02 * brain,
        "t2": T2_TISSUE[0] * csf + T2_TISSUE[1] * gm + T2_TISSUE[2] * wm,
        "flair": FLAIR_TISSUE[0] * csf + FLAIR_TISSUE[1] * gm + FLAIR_TISSUE[2] * wm,
    }
    seg = np.zeros(shape, dtype=np.uint8)
    info: dict[str, Any] = {"radius": 0.0, "contrast": 0.0, "enhancing": False}
    if tumour:
        radius = rng.uniform(2.0, 7.0)
        radii = radius * rng.uniform(0.7, 1.3, size=3)
        depth = distance_transform_edt(brain)
        zmargin = 2
        candidates = np.argwhere((depth >= 0.8 * radii.max()) & (np.arange(shape[2]) >= zmargin)[None, None, :]
                                 & (np.arange(shape[2]) < shape[2] - zmargin)[None, None, :])  # fmt: skip
        if len(candidates) == 0:
            candidates = np.argwhere(depth >= depth.max() * 0.8)
        c = candidates[rng.integers(len(candidates))].astype(np.float32)
        grid = np.indices(shape, dtype=np.float32)
        dist = np.sqrt(sum(((grid[a] - c[a]) / radii[a]) ** 2 for a in range(3)))
        dist *= 1.0 + 0.3 * _smooth_field(rng, shape, (8, 9, 4))
        enhancing = bool(rng.random() < 0.7)
        oedema_width = rng.uniform(1.3, 2.2)
        core_r = rng.uniform(0.3, 0.6)
        lesion = (dist < 1.0) & brain
        oedema = (dist < oedema_width) & brain & ~lesion
        if enhancing:
            necrosis = lesion & (dist < core_r)
            rim = lesion & ~necrosis
        else:
            necrosis, rim = lesion, np.zeros_like(lesion)
        seg[oedema] = 2
        seg[necrosis] = 1
        seg[rim] = et_label
        contrast = rng.uniform(0.45, 1.0)
        soft = {k: gaussian_filter(m.astype(np.float32), 0.7) for k, m in
                (("core", necrosis), ("rim", rim), ("oedema", oedema))}  # fmt: skip
        for modality, (core_t, rim_t, oedema_t) in LESION_TARGET.items():
            base = images[modality]
            core_t = 0.35 if (not enhancing and modality in ("t1", "t1ce")) else core_t
            oedema_value = base * 0.82 if oedema_t is None else np.float32(oedema_t)
            out = base + contrast * soft["oedema"] * (oedema_value - base)
            out = out + contrast * soft["core"] * (core_t - out)
            out = out + contrast * soft["rim"] * (rim_t - out)
            images[modality] = out * brain
        info = {"radius": float(radius), "contrast": float(contrast), "enhancing": enhancing}
    noise_sigma = rng.uniform(0.01, 0.035)
    out_images = {}
    for modality in MODALITIES:
        bias = np.exp(rng.uniform(0.03, 0.12) * _smooth_field(rng, shape, (3, 3, 2)))
        v = images[modality] * bias
        n1 = rng.standard_normal(shape).astype(np.float32) * noise_sigma
        n2 = rng.standard_normal(shape).astype(np.float32) * noise_sigma
        v = np.sqrt((v + n1) ** 2 + n2**2)  # Rician magnitude noise
        gain = rng.uniform(300, 1200)
        out_images[modality] = np.where(brain, np.round(v * gain), 0).astype(np.int16)
    info["tumour_slices"] = int(((seg > 0).reshape(-1, shape[2]).sum(0) > 0).sum())
    return out_images, seg, info


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def write_brats_demo(
    out_dir: Path,
    *,
    seed: int,
    num_patients: int,
    num_slices: int,
    tumour_free_fraction: float,
    naming: Literal["2021", "2023"],
    workers: int = 1,
) -> list[BratsDemoPatient]:
    """Write ``num_patients`` patient folders of the demo set under ``out_dir`` (see module docstring).

    Every patient is drawn from its own stream of ``seed``, so ``workers`` processes writing patients
    in parallel give the same files as one.
    """
    from tqdm.auto import tqdm

    if naming not in SUFFIXES:
        raise ValueError(f"naming must be '2021' or '2023', got {naming!r}")
    if not 1 <= num_slices <= GRID_SHAPE[2]:
        raise ValueError(f"num_slices must be in [1, {GRID_SHAPE[2]}], got {num_slices}")
    z0 = max(0, min(GRID_SHAPE[2] - num_slices, BAND_CENTRE - num_slices // 2))
    n_free = round(tumour_free_fraction * num_patients)
    order_rng = np.random.default_rng([seed, 0])
    free = set(order_rng.permutation(num_patients)[:n_free].tolist())
    jobs = [
        _PatientJob(out_dir, seed, i, (z0, z0 + num_slices), i not in free, naming)
        for i in range(num_patients)
    ]
    progress = tqdm(total=num_patients, desc="demo BraTS patients", leave=False)
    if workers > 1 and num_patients > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # fork shares the loaded template; where there is none, each spawned worker loads it once.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(
            min(workers, num_patients),
            mp_context=multiprocessing.get_context(method),
            initializer=_load_template,
        ) as pool:
            patients = []
            for patient in pool.map(_write_patient, jobs, chunksize=4):
                patients.append(patient)
                progress.update()
    else:
        _load_template()
        patients = []
        for job in jobs:
            patients.append(_write_patient(job))
            progress.update()
    progress.close()
    return patients


@dataclass(frozen=True)
class _PatientJob:
    out_dir: Path
    seed: int
    index: int
    band: tuple[int, int]
    tumour: bool
    naming: Literal["2021", "2023"]


_TEMPLATE: dict[str, np.ndarray] = {}


def _load_template() -> None:
    if not _TEMPLATE:
        _TEMPLATE.update(load_mni_template())


def _write_patient(job: _PatientJob) -> BratsDemoPatient:
    """Draw and write one patient (its random stream depends only on the seed and its index)."""
    import nibabel as nib

    pid = f"DemoBraTS_{job.index:03d}" if job.naming == "2021" else f"DemoBraTS-GLI-{job.index:05d}-000"
    rng = np.random.default_rng([job.seed, 1, job.index])
    et_label = 4 if job.naming == "2021" else 3
    images, seg, info = make_patient(_TEMPLATE, rng, band=job.band, tumour=job.tumour, et_label=et_label)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = GRID_ORIGIN + np.array([0.0, 0.0, 2.0 * job.band[0]])
    folder = job.out_dir / pid
    folder.mkdir(parents=True, exist_ok=True)
    suffixes = SUFFIXES[job.naming]
    for modality, data in images.items():
        _save(nib, data, affine, folder / f"{pid}{suffixes[modality]}.nii.gz")
    _save(nib, seg, affine, folder / f"{pid}{suffixes['seg']}.nii.gz")
    return BratsDemoPatient(
        patient_id=pid,
        tumour=job.tumour,
        tumour_slices=info["tumour_slices"],
        radius_voxels=round(info["radius"], 2),
        contrast=round(info["contrast"], 3),
        enhancing=info["enhancing"],
    )


def _save(nib: Any, data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.header.set_qform(affine, code=4)  # MNI152 space
    image.header.set_sform(affine, code=4)
    nib.save(image, path)
