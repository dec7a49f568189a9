"""Patient-level, stratified, seeded train / validation / test splits, kept in a reusable manifest.

All images of a patient go to one split, so a model is never tested on a patient it trained on.
Stratification works on patients: each patient has a stratum (its class for the stratification
target, see :func:`patient_strata`), and the split keeps the strata's proportions in every part.

How: patients are put in a seeded *stratified order* (:func:`stratified_order`): within each stratum
in random order, the strata interleaved by their quantile position, so any prefix or contiguous
segment of the order holds the strata in (nearly) their overall proportions. The order is cut into
test, validation and train by the fractions. Unlike scikit-learn's ``train_test_split``, this never
fails on a stratum with one or two patients, and the same order gives nested training subsets
(:mod:`mtl_hf.data.sampling`).

The result is written as JSON (the *split manifest*) in the cache folder (never into the data folder,
unless ``split.manifest`` names a path there); a later run with the same settings reads it back instead
of splitting again, and its SHA-256 goes into the run's record.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, DataWarning
from .kinds import data_kind

SPLITS = ("train", "validation", "test")
MANIFEST_VERSION = 1


def stratified_order(strata: Mapping[str, str], seed: int) -> list[str]:
    """Patients in a seeded order whose every prefix keeps the strata's proportions.

    Patient ``j`` of a stratum of ``n`` patients (random rank ``r``) gets the key ``(r + u) / n``,
    ``u`` uniform in [0, 1); sorting by key interleaves the strata.
    """
    rng = np.random.default_rng(seed)
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for patient in sorted(strata):
        by_stratum[strata[patient]].append(patient)
    keyed: list[tuple[float, str]] = []
    for stratum in sorted(by_stratum):
        members = by_stratum[stratum]
        ranks = rng.permutation(len(members))
        jitter = rng.random(len(members))
        keyed.extend(
            ((int(r) + float(u)) / len(members), p) for p, r, u in zip(members, ranks, jitter, strict=True)
        )
    return [p for _, p in sorted(keyed)]


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Patients per split (train, validation, test): rounded, each non-zero fraction gets at least one
    patient while the train split keeps at least one."""
    _, val, test = fractions
    n_val = round(val * n)
    n_test = round(test * n)
    if val > 0 and n_val == 0 and n >= 3:
        n_val = 1
    if test > 0 and n_test == 0 and n >= 3:
        n_test = 1
    while n - n_val - n_test < 1 and (n_val or n_test):
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return [n - n_val - n_test, n_val, n_test]


def make_split(strata: Mapping[str, str], fractions: Sequence[float], seed: int) -> dict[str, list[str]]:
    """``{"train": [...], "validation": [...], "test": [...]}`` patient ids (each list sorted)."""
    order = stratified_order(strata, seed)
    n_train, n_val, _ = split_counts(len(order), fractions)
    # Test and validation are cut first so their strata are as balanced as the order allows.
    parts = {
        "test": order[: len(order) - n_train - n_val],
        "validation": order[len(order) - n_train - n_val : len(order) - n_train],
        "train": order[len(order) - n_train :],
    }
    return {name: sorted(parts[name]) for name in SPLITS}


@dataclass
class SplitManifest:
    """Which patients are in which split, and how that was decided.

    Attributes:
        splits: ``{"train" | "validation" | "test": [patient ids]}``.
        strata: ``{patient id: stratum}`` used for stratification.
        seed, fractions, stratify_by: The settings that made it.
    """

    splits: dict[str, list[str]]
    strata: dict[str, str]
    seed: int
    fractions: dict[str, float]
    stratify_by: str

    def split_of(self) -> dict[str, str]:
        """``{patient id: split name}``."""
        return {p: name for name, patients in self.splits.items() for p in patients}

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": MANIFEST_VERSION,
            "seed": self.seed,
            "fractions": self.fractions,
            "stratify_by": self.stratify_by,
            "splits": self.splits,
            "strata": self.strata,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the manifest as JSON (atomically: a temporary file renamed into place)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SplitManifest:
        try:
            data = json.loads(Path(path).read_text())
            return cls(
                splits={name: list(data["splits"].get(name, [])) for name in SPLITS},
                strata=dict(data.get("strata", {})),
                seed=int(data["seed"]),
                fractions={k: float(v) for k, v in data["fractions"].items()},
                stratify_by=str(data["stratify_by"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(str(path), f"not a valid split manifest ({type(exc).__name__}: {exc})") from exc


def file_sha256(path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def patient_strata(patient_ids: Sequence[str], labels: Sequence[Any], kind: str) -> dict[str, str]:
    """The stratum of each patient from its samples' stored values of the stratification target, as its
    data kind says (:meth:`~mtl_hf.data.targets.TargetEncoder.patient_strata`), from the labelled
    samples only; a patient without any labelled sample is stratum ``"none"``.

    Binary: ``"1"`` when any sample is positive (a BraTS patient with a tumour), else ``"0"``.
    Multiclass: the patient's most frequent class (ties: the smallest index). Multilabel: ``"1"`` when
    any label of any sample is positive (pathology vs healthy). Continuous: the quartile of the
    patient's mean value (first output) among the patients.
    """
    per_patient: dict[str, list[Any]] = defaultdict(list)
    for patient, label in zip(patient_ids, labels, strict=True):
        per_patient[patient].append(label)
    return data_kind(kind).patient_strata(per_patient)


def resolve_split(
    strata: Mapping[str, str],
    *,
    seed: int,
    fractions: Sequence[float],
    stratify_by: str,
    manifest_path: str | os.PathLike[str],
) -> SplitManifest:
    """Read the split manifest at ``manifest_path`` if it exists, else make one and write it there.

    Raises:
        DataError: the existing manifest is unreadable or lacks patients present in the data (delete it
            to split again).
    """
    path = Path(manifest_path)
    if path.is_file():
        manifest = SplitManifest.load(path)
        known = manifest.split_of()
        new = sorted(set(strata) - set(known))
        if new:
            shown = ", ".join(new[:5]) + (" ..." if len(new) > 5 else "")
            raise DataError(
                str(path),
                f"{len(new)} patients of the data are not in this split manifest ({shown}); "
                "delete it to split again",
            )
        gone = sorted(set(known) - set(strata))
        if gone:
            warnings.warn(
                f"{path}: {len(gone)} patients of the split manifest are not in the data (skipped or removed)",
                DataWarning,
                stacklevel=2,
            )
        wanted = dict(zip(SPLITS, fractions, strict=True))
        if manifest.seed != seed or any(
            abs(manifest.fractions.get(k, -1) - v) > 1e-9 for k, v in wanted.items()
        ):
            warnings.warn(
                f"{path}: reusing a split made with seed {manifest.seed} and fractions {manifest.fractions}",
                DataWarning,
                stacklevel=2,
            )
        return manifest
    splits = make_split(strata, fractions, seed)
    manifest = SplitManifest(
        splits=splits,
        strata=dict(sorted(strata.items())),
        seed=seed,
        fractions=dict(zip(SPLITS, (float(f) for f in fractions), strict=True)),
        stratify_by=stratify_by,
    )
    manifest.save(path)
    return manifest


def default_manifest_path(
    folder: str | os.PathLike[str], stratify_by: str, seed: int, fractions: Sequence[float]
) -> Path:
    """``<folder>/splits-<target>-seed<seed>-<train>-<val>-<test>.json`` (percentages)."""
    parts = "-".join(f"{100 * f:g}" for f in fractions)
    return Path(folder) / f"splits-{stratify_by}-seed{seed}-{parts}.json"


def fold_splits(strata: Mapping[str, str], k: int, seed: int) -> list[dict[str, list[str]]]:
    """Patient-level ``k``-fold cross-validation: ``k`` splits in which every patient is tested once.

    Patients are cut into ``k`` contiguous, equally sized segments of the seeded stratified order
    (:func:`stratified_order`), so each segment keeps the strata's proportions. Split ``j`` tests
    segment ``j``, validates on segment ``j + 1`` (cyclically; every patient chooses a model once) and
    trains on the other ``k - 2``.

    Raises:
        ValueError: ``k < 3`` (no training patients would remain) or fewer patients than folds.
    """
    if k < 3:
        raise ValueError(f"folds: needs at least 3 (test, validation and training folds), got {k}")
    order = stratified_order(strata, seed)
    if len(order) < k:
        raise ValueError(f"folds: {k} folds need at least {k} patients, the data have {len(order)}")
    bounds = [round(j * len(order) / k) for j in range(k + 1)]
    segments = [order[bounds[j] : bounds[j + 1]] for j in range(k)]
    splits = []
    for j in range(k):
        test, validation = segments[j], segments[(j + 1) % k]
        train = [p for i, segment in enumerate(segments) if i not in (j, (j + 1) % k) for p in segment]
        splits.append({"train": sorted(train), "validation": sorted(validation), "test": sorted(test)})
    return splits
