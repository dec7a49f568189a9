"""The BraTS cache at full scale: build time per patient, modality and core; size; peak memory.

Synthetic full-size BraTS patients (240 x 240 x 155, four int16 modalities and a segmentation, gzipped
NIfTI in LPS orientation as BraTS ships them; intensities are a smooth ellipsoid "brain" with noise,
which compresses worse than real scans, so decompression is not flattered) are cached with
``mtl_hf.data.build_cache`` the way a training config does it: four modalities, ``image_size: 224``
(resized at build time), uint8 quantisation and LZ4 compression (the defaults), ``num_proc``
processes. Measured in the same run:

1. build time per patient per modality per core (goal <= 1): the CPU seconds of the build (its
   process and worker processes) / (patients x modalities), next to the peer nibabel alone
   decompressing the same files (the floor); wall-clock seconds are printed too (on an idle machine,
   wall x processes ~ CPU seconds; on a loaded one wall time measures the other jobs);
2. cache size: bytes of the Arrow files / (patients x modalities) (goal <= 10 MB at 224 px), next to
   the peer the previous format (float32, not compressed, at 240 px) on a subset;
3. peak memory of builds of growing numbers of patients (every build runs in a fresh process; its
   peak RSS and its largest worker's): it must not grow with the number of patients;
4. extrapolation to BraTS 2021 and BraTS 2023 (glioma: 1,251 training patients each, four modalities)
   on this machine's cores and on a 16-core node.

The machine's load average is printed beside the figures: on a shared machine, time is inflated by
the other jobs (memory and size are not).

    OMP_NUM_THREADS=1 python benchmarks/bench_data.py --patients 40 --json benchmarks/results/cache-brats.json
    python benchmarks/bench_data.py --patients 4 --memory-patients 2 --peer-patients 1   # quick look
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

BRATS_SHAPE = (240, 240, 155)
MODALITIES = ["t1", "t1ce", "t2", "flair"]
BRATS_PATIENTS = {"BraTS 2021": 1251, "BraTS 2023 (glioma)": 1251}


def write_brats_like(root: Path, patients: int, distinct: int = 4, seed: int = 0) -> None:
    """Patients with an ellipsoid 'brain' of smooth intensities plus noise and a spherical 'tumour';
    ``distinct`` of them are generated, the others are copies under their own names (writing gzipped
    volumes costs more than reading them, and the build's work does not depend on the content)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.ogrid[: BRATS_SHAPE[0], : BRATS_SHAPE[1], : BRATS_SHAPE[2]]
    r2 = ((x - 120) / 80.0) ** 2 + ((y - 120) / 95.0) ** 2 + ((z - 77) / 65.0) ** 2
    brain = r2 < 1
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS, as BraTS files are stored
    for p in range(patients):
        pid = f"BraTS2021_{p:05d}"
        folder = root / pid
        folder.mkdir(parents=True)
        if p >= distinct:
            model = root / f"BraTS2021_{p % distinct:05d}"
            for name in [*MODALITIES, "seg"]:
                shutil.copyfile(model / f"{model.name}_{name}.nii.gz", folder / f"{pid}_{name}.nii.gz")
            continue
        cx, cy, cz = 100 + p % 40, 110, 70
        d2 = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2
        for k, name in enumerate(MODALITIES):
            values = (400 + 100 * k) * (1.2 - 0.4 * r2) + rng.normal(0, 25, size=BRATS_SHAPE)
            values = np.where(d2 < 15**2, values * 1.5, values)
            data = np.where(brain, values, 0).astype(np.int16)
            nib.save(nib.Nifti1Image(data, affine), folder / f"{pid}_{name}.nii.gz")
        seg = np.zeros(BRATS_SHAPE, dtype=np.uint8)
        seg[d2 < 15**2] = 2
        seg[d2 < 8**2] = 1
        nib.save(nib.Nifti1Image(seg, affine), folder / f"{pid}_seg.nii.gz")


def subset(root: Path, patients: int, into: Path) -> Path:
    """A folder holding the first ``patients`` patients of ``root`` (hard links, no copies)."""
    for folder in sorted(root.iterdir())[:patients]:
        (into / folder.name).mkdir(parents=True, exist_ok=True)
        for file in folder.iterdir():
            if not (into / folder.name / file.name).exists():
                os.link(file, into / folder.name / file.name)
    return into


def data_config(root: Path, **brats: Any) -> Any:
    from mtl_hf.data import DataConfig
    from mtl_hf.options import from_dict

    image_size = brats.pop("image_size", 224)
    return from_dict(
        DataConfig,
        {
            "kind": "brats",
            "root": str(root),
            "image_size": image_size,
            "brats": {"modalities": MODALITIES, **brats},
        },
    )


def build(root: Path, cache: Path, processes: int, **brats: Any) -> dict[str, Any]:
    """Build a cold cache; wall-clock seconds, CPU seconds (the process and its workers), bytes on disk, rows."""
    import datasets

    from mtl_hf.data import build_cache

    datasets.disable_progress_bars()
    shutil.rmtree(cache, ignore_errors=True)
    cpu = _cpu_seconds()
    start = time.perf_counter()
    dataset, summary = build_cache(data_config(root, **brats), cache, num_proc=processes)
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu
    assert not summary.cache_hit
    size = sum(os.path.getsize(f) for f in summary.cache_files)
    return {
        "seconds": seconds, "cpu_seconds": cpu, "bytes": size, "rows": len(dataset), "patients": summary.num_patients,
    }  # fmt: skip


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children (the build's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def floor_read(root: Path, patients: int) -> float:
    """Seconds nibabel alone takes to decompress the four modalities and the segmentation of a patient."""
    folders = sorted(root.iterdir())[:patients]
    start = _cpu_seconds()
    for folder in folders:
        for name in [*MODALITIES, "seg"]:
            np.asarray(nib.load(folder / f"{folder.name}_{name}.nii.gz").dataobj)
    return (_cpu_seconds() - start) / len(folders)


def _child(root: str, cache: str, processes: int, brats: dict[str, Any], queue: Any) -> None:
    result = build(Path(root), Path(cache), processes, **brats)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    result["worker_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    queue.put(result)


def build_in_child(root: Path, cache: Path, processes: int, **brats: Any) -> dict[str, Any]:
    """:func:`build` in a fresh process, with its peak memory (and its workers')."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child, args=(str(root), str(cache), processes, brats, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=40, help="full-size patients to write and cache")
    parser.add_argument("--processes", type=int, nargs="+", help="num_proc values (default: 1 and the cores)")
    parser.add_argument(
        "--memory-patients", type=int, nargs="+", default=[10], help="smaller builds, to see memory not grow"
    )
    parser.add_argument("--peer-patients", type=int, default=4, help="patients cached in the previous format")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    processes = args.processes or sorted({1, cores})
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-data-"))
    root = work / "brats"
    if not root.exists():
        start = time.perf_counter()
        write_brats_like(root, max(args.patients, *args.memory_patients))
        print(f"wrote {len(list(root.iterdir()))} full-size patients in {time.perf_counter() - start:.0f} s")
    loads = [os.getloadavg()[0]]
    m = len(MODALITIES)
    floor = floor_read(root, min(args.patients, 4))
    runs: dict[tuple[int, int], dict[str, Any]] = {}
    for n in sorted({*args.memory_patients, args.patients}):
        for p in processes if n == args.patients else [max(processes)]:
            runs[n, p] = build_in_child(subset(root, n, work / f"first-{n}"), work / f"cache-{n}-{p}", p)
            loads.append(os.getloadavg()[0])
    peer = build_in_child(subset(root, args.peer_patients, work / f"first-{args.peer_patients}"),
                          work / "cache-peer", max(processes), storage_dtype="float32", compression="none",
                          resize=False)  # fmt: skip
    loads.append(os.getloadavg()[0])
    n = args.patients
    print(
        f"\n{n} patients x {m} modalities, 240x240x155 -> 224 px, {cores} cores, load average {[round(x, 1) for x in loads]}\n"
    )
    print(
        "| patients | num_proc | wall s | CPU s | CPU s / patient / modality (goal <= 1) | met | peak RSS MB (build process / largest worker) |"
    )
    print("|---:|---:|---:|---:|---:|---|---|")
    rates = {}
    for (k, p), b in runs.items():
        rate = b["cpu_seconds"] / (k * m)
        if k == n:
            rates[p] = rate
        print(f"| {k} | {p} | {b['seconds']:.1f} | {b['cpu_seconds']:.1f} | {rate:.3f} | {'yes' if rate <= 1 else 'no'} "
              f"| {b['peak_rss_mb']:.0f} / {b['worker_peak_rss_mb']:.0f} |")  # fmt: skip
    print(f"\npeer: nibabel alone decompresses a patient's 5 files in {floor:.2f} CPU s = "
          f"{floor / m:.3f} s per modality (build / floor: {min(rates.values()) / (floor / m):.2f}x)")  # fmt: skip
    best = runs[n, max(processes)]
    mb = best["bytes"] / 2**20 / (n * m)
    peer_mb = peer["bytes"] / 2**20 / (args.peer_patients * m)
    print("\n| cache | MB / patient / modality (goal <= 10) | met | rows / patient |")
    print("|---|---:|---|---:|")
    print(
        f"| uint8 + lz4, 224 px (default) | {mb:.2f} | {'yes' if mb <= 10 else 'no'} | {best['rows'] / n:.0f} |"
    )
    print(f"| peer: float32, raw, 240 px (previous format) | {peer_mb:.2f} | {'yes' if peer_mb <= 10 else 'no'} "
          f"| {peer['rows'] / args.peer_patients:.0f} |")  # fmt: skip
    if (n, 1) in runs and max(processes) > 1:
        speedup = runs[n, 1]["seconds"] / runs[n, max(processes)]["seconds"]
        print(f"\nwall time, num_proc 1 / num_proc {max(processes)}: {speedup:.2f}x")
    rate = rates[max(processes)]  # a parallel build's own cost per core, its overheads included
    print(
        f"\n(extrapolated from the num_proc {max(processes)} build: {rate:.3f} CPU s per patient per modality)"
    )
    print("\n| data set | patients | cache GB | build h on these cores | build min on 16 cores |")
    print("|---|---:|---:|---:|---:|")
    for name, count in BRATS_PATIENTS.items():
        gb = mb * count * m / 1024
        print(
            f"| {name} | {count} | {gb:.1f} | {rate * count * m / cores / 3600:.2f} | {rate * count * m / 16 / 60:.1f} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "patients": n, "modalities": m, "cores": cores, "loadavg": loads,
            "builds": {f"{k} patients, num_proc {p}": b for (k, p), b in runs.items()}, "peer": peer,
            "cpu_s_per_patient_modality": rates, "floor_cpu_s_per_patient": floor,
            "mb_per_patient_modality": mb, "peer_mb_per_patient_modality": peer_mb,
        }  # fmt: skip
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
