"""Data pipeline speed next to the model's training speed, on this machine.

Measures, on BraTS-sized synthetic volumes (240 x 240 x 155, four int16 modalities and a segmentation,
gzipped NIfTI as BraTS ships them):

1. cache build: NIfTI -> normalised slices -> Arrow cache (``mtl_hf.data.build_cache``), slices per
   second and seconds per volume, for 1 and 3 modalities, next to the time nibabel alone takes to
   decompress the same files (the floor);
2. data loader: images per second out of ``DataLoader`` (train transform with augmentation, resize to
   224 px, collate) with 0, 1 and 2 workers;
3. the peer: training images per second of a ViT-S/16 ``MTLModel`` classification step (224 px), with
   random tensors, and the same step fed by the 1-worker data loader (does a worker slow it down?).

The goal: one worker keeps a ViT-S/16 training step fed on the CPU (loader images/s well above the
step's), and a BraTS-sized volume is sliced and cached in under a second.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_data.py            # about 2-3 minutes on 2 cores
    python benchmarks/bench_data.py --patients 2 --batches 4 --steps 2 --repeats 1   # quicker
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from torch.utils.data import DataLoader

BRATS_SHAPE = (240, 240, 155)


def write_brats_like(root: Path, patients: int, seed: int = 0) -> None:
    """Patients with an ellipsoid 'brain' of smooth random intensities and a spherical 'tumour'."""
    rng = np.random.default_rng(seed)
    x, y, z = np.ogrid[: BRATS_SHAPE[0], : BRATS_SHAPE[1], : BRATS_SHAPE[2]]
    brain = ((x - 120) / 80.0) ** 2 + ((y - 120) / 95.0) ** 2 + ((z - 77) / 65.0) ** 2 < 1
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS, as BraTS files are stored
    for p in range(patients):
        pid = f"BraTS2021_{p:05d}"
        folder = root / pid
        folder.mkdir(parents=True)
        for k, name in enumerate(("flair", "t1", "t1ce", "t2")):
            values = rng.normal(400 + 100 * k, 60, size=BRATS_SHAPE).astype(np.float32)
            data = np.where(brain, values, 0).astype(np.int16)
            nib.save(nib.Nifti1Image(data, affine), folder / f"{pid}_{name}.nii.gz")
        seg = np.zeros(BRATS_SHAPE, dtype=np.uint8)
        cx, cy, cz = 100 + 10 * p, 110, 70
        seg[((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) < 15**2] = 2
        seg[((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) < 8**2] = 1
        nib.save(nib.Nifti1Image(seg, affine), folder / f"{pid}_seg.nii.gz")


def bench_cache(root: Path, work: Path, modalities: list[str], patients: int) -> tuple[float, float, object]:
    """(slices per second, seconds per volume set) of a cold build, fixed costs (planning, the builder's
    set-up) included; returns the data set too."""
    import datasets

    from mtl_hf.data import DataConfig, build_cache
    from mtl_hf.options import from_dict

    datasets.disable_progress_bars()
    config = from_dict(DataConfig, {"kind": "brats", "root": str(root), "brats": {"modalities": modalities}})
    cache = work / f"cache-{len(modalities)}"
    start = time.perf_counter()
    dataset, summary = build_cache(config, cache)
    seconds = time.perf_counter() - start
    assert not summary.cache_hit and summary.files_read == patients
    return len(dataset) / seconds, seconds / patients, dataset


def bench_read(root: Path, modalities: list[str]) -> float:
    """Seconds per patient that nibabel alone takes to decompress the same files (the floor)."""
    patients = sorted(p for p in root.iterdir() if p.is_dir())
    start = time.perf_counter()
    for folder in patients:
        for name in [*modalities, "seg"]:
            np.asarray(nib.load(folder / f"{folder.name}_{name}.nii.gz").dataobj)
    return (time.perf_counter() - start) / len(patients)


def bench_loader(dataset: object, workers: int, batches: int, batch_size: int, size: int) -> float:
    from mtl_hf import MTLImageProcessor
    from mtl_hf.data import MTLDataCollator, MTLTransform, worker_init_fn

    transform = MTLTransform(MTLImageProcessor(size=size), train=True)
    ds = dataset.with_transform(transform)  # type: ignore[attr-defined]
    collate = MTLDataCollator({"classification": "tumour"}, features=dataset.features)  # type: ignore[attr-defined]
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=worker_init_fn if workers else None,
        persistent_workers=False,
    )
    it = iter(loader)
    next(it)  # worker start-up and the first batch are not throughput
    start = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            break
        n += batch["pixel_values"].shape[0]
    return n / (time.perf_counter() - start)


def vit_s16():
    from mtl_hf import MTLConfig, MTLModel

    config = MTLConfig(tasks={"classification": {"type": "binary_classification"}})
    return MTLModel(config)


def bench_training(steps: int, batch_size: int, loader: DataLoader | None = None) -> float:
    model = vit_s16().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if loader is None:
        batches = iter(
            [
                {
                    "pixel_values": torch.randn(batch_size, 3, 224, 224),
                    "labels": {"classification": torch.randint(0, 2, (batch_size,)).float()},
                }
            ]
            * (steps + 1)
        )
    else:
        batches = iter(loader)

    def step() -> int:
        batch = next(batches)
        out = model(
            pixel_values=batch["pixel_values"], labels={"classification": batch["labels"]["classification"]}
        )
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        return batch["pixel_values"].shape[0]

    step()  # warm-up
    start = time.perf_counter()
    n = sum(step() for _ in range(steps))
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=3, help="BraTS-sized patients to write and cache")
    parser.add_argument("--batches", type=int, default=8, help="batches timed per loader setting")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="ViT-S/16 training steps timed")
    parser.add_argument("--train-batch-size", type=int, default=16)
    parser.add_argument(
        "--repeats", type=int, default=2, help="interleaved random / fed training repetitions"
    )
    args = parser.parse_args()

    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / "brats"
        start = time.perf_counter()
        write_brats_like(root, args.patients)
        print(f"wrote {args.patients} BraTS-sized patients in {time.perf_counter() - start:.1f} s")

        results = {}
        for modalities in (["flair"], ["flair", "t1ce", "t2"]):
            floor = bench_read(root, modalities)
            rate, per_volume, dataset = bench_cache(root, work, modalities, args.patients)
            results[len(modalities)] = dataset
            print(
                f"cache build, {len(modalities)} modality(ies) + segmentation: {rate:7.0f} slices/s, "
                f"{per_volume:.2f} s per 240x240x155 volume set (goal < 1 s); nibabel alone reads the "
                f"same files in {floor:.2f} s ({per_volume / floor:.1f}x)"
            )
        dataset = results[3]
        loader_rates = {}
        for workers in (0, 1, 2):
            loader_rates[workers] = bench_loader(dataset, workers, args.batches, args.batch_size, 224)
            print(
                f"data loader, {workers} worker(s), 224 px, augmentation on: {loader_rates[workers]:7.1f} images/s"
            )

        from mtl_hf import MTLImageProcessor
        from mtl_hf.data import MTLDataCollator, MTLTransform, worker_init_fn

        # Random tensors and the 1-worker loader, interleaved: on a shared machine the load changes
        # between runs, and only ratios within one repetition mean anything.
        ratios = []
        for rep in range(args.repeats):
            train = bench_training(args.steps, args.train_batch_size)
            fed_loader = DataLoader(
                dataset.with_transform(MTLTransform(MTLImageProcessor(size=224), train=True)),
                batch_size=args.train_batch_size,
                shuffle=True,
                num_workers=1,
                collate_fn=MTLDataCollator({"classification": "tumour"}, features=dataset.features),
                worker_init_fn=worker_init_fn,
            )
            fed = bench_training(args.steps, args.train_batch_size, fed_loader)
            ratios.append(fed / train)
            print(
                f"[{rep}] ViT-S/16 MTLModel classification training step, 224 px, batch {args.train_batch_size}: "
                f"{train:.2f} images/s on random tensors, {fed:.2f} images/s fed by a 1-worker data loader"
            )
        print()
        print(
            f"ratio loader(1 worker) / training step: {loader_rates[1] / train:.1f}x (needs > 1 to keep it fed)"
        )
        print(
            f"ratio fed / random-tensor training, per repetition: {', '.join(f'{r:.2f}' for r in ratios)} "
            "(1.0 = the worker costs the step nothing)"
        )


if __name__ == "__main__":
    main()
