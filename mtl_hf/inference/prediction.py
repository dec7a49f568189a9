"""``predict``: images and volumes in, each task's per-sample predictions out (CSV and JSON): class
probabilities of classifiers, values of regression heads; and masks of segmentation tasks (PNG, NIfTI;
:mod:`mtl_hf.inference.masks`).

What a user does with a trained or downloaded model::

    >>> from mtl_hf.inference import predict
    >>> result = predict("runs/mtl/best_model", ["scans/", "us_frame.png"], output_dir="predictions/")
    >>> result.volumes[0].predictions["tumour"]          # doctest: +SKIP
    array([0.91])

Files are read by :mod:`mtl_hf.inference.readers` (PNG, JPEG, BMP, TIFF, DICOM, NIfTI), processed by the
model's own image processor, and run in batches on the device Accelerate picks (a GPU when there is one).
Each head says what it predicts (:meth:`~mtl_hf.heads.TaskHead.predictions`, described by its
:class:`~mtl_hf.heads.PredictionSpec`: ``probabilities`` or ``values``, output names, CSV columns). A
source with several slices or frames also gets volume-level predictions per output, combined by the
head (:meth:`~mtl_hf.heads.TaskHead.aggregate_volume`): class probabilities by the rule asked for
(:mod:`mtl_hf.heads.volume_rules`, top-3 mean by default), a regression's values by its own
``volume_aggregation`` (the mean by default).

A file that cannot be read (missing, unsupported, truncated, damaged, over the readers' size limits)
does not stop the others: it is listed in ``PredictionResult.errors`` and in ``errors.csv`` with the
reason, and every other input is still predicted. Every file is written to a temporary file and
renamed into place, never through a symbolic link (:mod:`mtl_hf.inference.outputs`).

Launched on several processes (``accelerate launch``), the files are split between the processes and
the results gathered on every process, in input order; only the main process writes files.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object, parse_flag_from_env
from torch import nn
from tqdm.auto import tqdm

from ..data.errors import DataError
from ..heads import PredictionSpec
from ..image_processing_mtl import MTLImageProcessor, channel_mismatch, to_chw_tensor
from ..modeling_mtl import MTLModel
from .choices import AGGREGATIONS, Aggregation
from .errors import PredictionError
from .loading import load_model_and_processor
from .masks import MaskWriter, mask_tasks, masks_at_size
from .outputs import check_output_folder, output_subfolder, write_text_replacing
from .patients import Source, pixel_values, plan_sources, read_source
from .probabilities import prediction_spec, prediction_tasks, task_predictions
from .readers import InputImage, Intensity

PREDICTIONS_CSV = "predictions.csv"
VOLUME_PREDICTIONS_CSV = "volume_predictions.csv"
PREDICTIONS_JSON = "predictions.json"
ERRORS_CSV = "errors.csv"


@dataclass(frozen=True)
class InputError:
    """An input that could not be predicted on, and why.

    Attributes:
        source: The file (or the path as given, when it could not be listed).
        reason: What is wrong with it.
    """

    source: str
    reason: str


@dataclass(frozen=True)
class ImagePrediction:
    """Predictions for one image, slice or frame.

    Attributes:
        source: The input file.
        index: Slice or frame index within ``source``; ``None`` for a single 2-D image.
        predictions: ``{task: (K,) array}``, one value per output of the task (``K = 1`` for binary): a
            classifier's probabilities, a regression's values (``PredictionResult.tasks`` says which).
    """

    source: str
    index: int | None
    predictions: dict[str, np.ndarray]


@dataclass(frozen=True)
class VolumePrediction:
    """Volume-level predictions of a multi-slice source (NIfTI volume, multi-frame DICOM).

    Attributes:
        source: The input file.
        num_slices: Slices that were scored (empty slices skipped).
        predictions: ``{task: (K,) array}`` combined over the slices by each task's head
            (:meth:`~mtl_hf.heads.TaskHead.aggregate_volume`; :meth:`PredictionResult.volume_rule`).
        peak_slice: ``{task: index}`` of the slice with the highest value of the task's first output.
    """

    source: str
    num_slices: int
    predictions: dict[str, np.ndarray]
    peak_slice: dict[str, int]


@dataclass
class PredictionResult:
    """What :func:`predict` returns; ``save`` writes it as CSV and JSON.

    Attributes:
        model: The model's path or Hub id (``"<in memory>"`` for a model object).
        tasks: ``{task: PredictionSpec}``: what each predicted task's values are (``probabilities`` or
            ``values``), its output names and CSV columns, and its own volume rule if it has one.
        images: One entry per image, slice or frame, in input order.
        volumes: One entry per multi-slice source.
        aggregation, top_k: The volume rule asked for; tasks whose head has its own rule use that one.
        masks: ``{source: {task: path}}`` of the segmentation masks written (``task/<frame>`` keys for
            the frames of a multi-frame DICOM); empty without segmentation tasks or ``output_dir``.
        errors: The inputs that could not be read, in input order (none predicted from).
        intensity: How the image processor treated intensities and channels
            (:meth:`~mtl_hf.MTLImageProcessor.describe_intensity`).
    """

    model: str
    tasks: dict[str, PredictionSpec]
    images: list[ImagePrediction] = field(default_factory=list)
    volumes: list[VolumePrediction] = field(default_factory=list)
    aggregation: str = "topk_mean"
    top_k: int = 3
    masks: dict[str, dict[str, str]] = field(default_factory=dict)
    errors: list[InputError] = field(default_factory=list)
    intensity: str = ""

    @property
    def columns(self) -> dict[str, list[str]]:
        """``{task: CSV column names}``: ``task`` for a single output, ``task/<output>`` otherwise."""
        return {t: list(spec.columns) for t, spec in self.tasks.items()}

    @property
    def outputs(self) -> dict[str, list[str]]:
        """``{task: output names}`` (class or label names, a regression's output names, or indices)."""
        return {t: list(spec.outputs) for t, spec in self.tasks.items()}

    def volume_rule(self, task: str) -> dict[str, Any]:
        """The rule that formed task ``task``'s volume-level predictions: ``{"method": ...}`` (with
        ``"top_k"`` for ``topk_mean``), the head's own or else the one asked for."""
        method = self.tasks[task].volume_rule or self.aggregation
        return {"method": method, "top_k": self.top_k} if method == "topk_mean" else {"method": method}

    def image_rows(self) -> list[dict[str, Any]]:
        """Flat rows for ``predictions.csv``: ``source``, ``index`` (empty for 2-D images), then one
        column per task output."""
        return [
            {"source": p.source, "index": "" if p.index is None else p.index, **self._flat(p.predictions)}
            for p in self.images
        ]

    def volume_rows(self) -> list[dict[str, Any]]:
        """Flat rows for ``volume_predictions.csv``: ``source``, ``num_slices``, then the task outputs."""
        return [
            {"source": v.source, "num_slices": v.num_slices, **self._flat(v.predictions)}
            for v in self.volumes
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: the tasks (each with its ``key``, outputs, columns and volume rule),
        the rule asked for, and every prediction, grouped by key (``"probabilities"``, ``"values"``),
        with a single-output task's value as a number and other tasks' as ``{output: value}``."""
        return {
            "model": self.model,
            "tasks": {
                t: {
                    "key": spec.key,
                    "outputs": list(spec.outputs),
                    "columns": list(spec.columns),
                    "volume_aggregation": self.volume_rule(t),
                }
                for t, spec in self.tasks.items()
            },
            "aggregation": {"method": self.aggregation, "top_k": self.top_k},
            "intensity": self.intensity,
            "images": [
                {"source": p.source, "index": p.index, **self.grouped(p.predictions)} for p in self.images
            ],
            "volumes": [
                {
                    "source": v.source,
                    "num_slices": v.num_slices,
                    **self.grouped(v.predictions),
                    "peak_slice": v.peak_slice,
                }
                for v in self.volumes
            ],
            "masks": self.masks,
            "errors": [{"source": e.source, "reason": e.reason} for e in self.errors],
        }

    def save(self, output_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Write ``predictions.csv``, ``predictions.json``, ``errors.csv`` (``source``, ``reason``; only
        the header when every input was read) and, when there are volumes, ``volume_predictions.csv``
        into ``output_dir``; return their paths by name.

        Raises:
            UnsafeOutputError: one of these names in ``output_dir`` is a symbolic link.
        """
        out = output_subfolder(Path(output_dir))
        columns = [c for spec in self.tasks.values() for c in spec.columns]
        paths = {
            "predictions_csv": out / PREDICTIONS_CSV,
            "predictions_json": out / PREDICTIONS_JSON,
            "errors_csv": out / ERRORS_CSV,
        }
        _write_csv(paths["predictions_csv"], ["source", "index", *columns], self.image_rows())
        if self.volumes:
            paths["volume_predictions_csv"] = out / VOLUME_PREDICTIONS_CSV
            _write_csv(
                paths["volume_predictions_csv"], ["source", "num_slices", *columns], self.volume_rows()
            )
        errors = [{"source": e.source, "reason": e.reason} for e in self.errors]
        _write_csv(paths["errors_csv"], ["source", "reason"], errors)
        write_text_replacing(paths["predictions_json"], json.dumps(self.to_dict(), indent=2) + "\n")
        return paths

    def grouped(self, predictions: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
        """``{key: {task: value | {output: value}}}``: predictions as ``predictions.json`` nests them,
        under each task's spec key (a task with a single output named after it as a number)."""
        out: dict[str, dict[str, Any]] = {}
        for t, p in predictions.items():
            spec = self.tasks[t]
            names = spec.outputs
            value = float(p[0]) if names == (t,) else {n: float(v) for n, v in zip(names, p, strict=True)}
            out.setdefault(spec.key, {})[t] = value
        return out

    def _flat(self, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        return {
            c: float(v) for t, p in predictions.items() for c, v in zip(self.tasks[t].columns, p, strict=True)
        }


def tasks_to_predict(model: Any, tasks: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """``(tasks giving per-sample predictions, tasks giving segmentation masks)`` of ``model``: all of
    them, or those named in ``tasks``.

    Raises:
        PredictionError: a named task is unknown or gives neither, or no task gives either.
    """
    segmenting = mask_tasks(model, tasks)
    chosen = prediction_tasks(model, None if tasks is None else [t for t in tasks if t not in segmenting])
    if not chosen and not segmenting:
        raise PredictionError(
            "the model has no task that gives per-sample predictions or segmentation masks; its tasks are "
            + ", ".join(model.config.tasks or {})
        )
    return chosen, segmenting


def predict(
    model: str | os.PathLike[str] | MTLModel,
    inputs: Sequence[str | os.PathLike[str]],
    *,
    output_dir: str | os.PathLike[str] | None = None,
    image_processor: MTLImageProcessor | None = None,
    tasks: Sequence[str] | None = None,
    batch_size: int = 32,
    aggregation: Aggregation = "topk_mean",
    top_k: int = 3,
    slice_axis: int = 2,
    intensity: Intensity = "brain",
    skip_empty: bool = True,
    progress: bool = True,
    grayscale: bool = False,
    **hub_kwargs: Any,
) -> PredictionResult:
    """Each task's predictions (class probabilities, values) for every image, slice and frame of
    ``inputs``, and for every volume.

    Args:
        model: A ``save_pretrained`` folder, a training run folder (its ``best_model/``), a Hub id, or a
            loaded :class:`~mtl_hf.MTLModel`.
        inputs: Files and folders (searched recursively): PNG, JPEG, BMP, TIFF, DICOM, NIfTI.
        output_dir: When given, write ``predictions.csv``, ``predictions.json`` and
            ``volume_predictions.csv`` there (see :meth:`PredictionResult.save`), and the masks of
            segmentation tasks under ``masks/`` (see :mod:`mtl_hf.inference.masks`).
        image_processor: Overrides the processor saved with the model.
        tasks: Tasks to predict; default every task that gives predictions or masks.
        batch_size: Images per forward pass.
        aggregation: Volume-level rule for class probabilities, ``"topk_mean"`` (default), ``"max"``
            or ``"mean"``; a head with a rule of its own (a regression's ``volume_aggregation``) keeps it.
        top_k: Slices averaged by ``"topk_mean"``.
        slice_axis: Axis of a NIfTI volume (RAS+ after reorientation) to cut slices along; 2 = axial.
        intensity: NIfTI intensity scaling: ``"brain"`` (default, as the training data), ``"volume"``
            or ``"slice"`` (see :mod:`mtl_hf.inference.readers`).
        skip_empty: Leave out constant (background-only) slices and frames.
        progress: Show a tqdm progress bar.
        grayscale: Convert colour pictures and DICOM to grey when reading (as ``data.images.grayscale``
            does in training), for a model with a 1-channel backbone.
        **hub_kwargs: ``revision``, ``cache_dir``, ``token``, ``local_files_only`` for loading.

    Raises:
        PredictionError: an unknown task, a task without predictions or masks (or a model with none), a
            batch size or ``top_k`` under 1; raised before any input is read or output written.
        UnsafeOutputError: ``output_dir`` (or a folder above it) is a file, checked first; or an output
            file in it is a symbolic link.
        NotAnMtlModelError, mtl_hf.security.UnsafeCheckpointError: the model cannot be loaded (see
            :func:`~mtl_hf.inference.loading.load_model_and_processor`).
    """
    if batch_size < 1:
        raise PredictionError(f"batch size must be at least 1, got {batch_size}")
    if aggregation not in AGGREGATIONS:
        raise PredictionError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
    if top_k < 1:
        raise PredictionError(f"top_k must be at least 1, got {top_k}")
    if output_dir is not None:
        check_output_folder(Path(output_dir))
    net, processor = load_model_and_processor(model, image_processor, **hub_kwargs)
    files, listing_errors = plan_sources(inputs, processor)
    chosen, segmenting = tasks_to_predict(net, tasks)
    # As Accelerator does: ACCELERATE_USE_CPU=1 makes `accelerate launch` processes on a CPU one gloo group.
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    writer = MaskWriter(output_dir, slice_axis) if output_dir is not None and segmenting else None
    with state.split_between_processes(files) as my_files:
        images, errors = _predict_files(
            net,
            processor,
            list(my_files),
            chosen,
            batch_size=batch_size,
            reader_kwargs={
                "slice_axis": slice_axis,
                "intensity": intensity,
                "skip_empty": skip_empty,
                "grayscale": grayscale,
            },
            progress=progress and state.is_local_main_process,
            device=state.device,
            masks=(segmenting, writer) if writer is not None else None,
        )
    written = writer.written if writer is not None else {}
    if state.num_processes > 1:
        images = gather_object(images)
        errors = gather_object(errors)
        written = {k: v for part in gather_object([written]) for k, v in part.items()}
    specs = {t: prediction_spec(net, t) for t in chosen}
    result = PredictionResult(
        model="<in memory>" if isinstance(model, MTLModel) else os.fspath(model),
        tasks={t: spec for t, spec in specs.items() if spec is not None},
        images=images,
        volumes=volume_predictions(net, images, aggregation, top_k),
        aggregation=aggregation,
        top_k=top_k,
        masks=written,
        errors=[InputError(e.path, e.reason) for e in listing_errors] + errors,
        intensity=processor.describe_intensity(),
    )
    if output_dir is not None and state.is_main_process:
        result.save(output_dir)
    return result


def volume_predictions(
    model: MTLModel, images: Sequence[ImagePrediction], aggregation: str = "topk_mean", top_k: int = 3
) -> list[VolumePrediction]:
    """Combine the slice predictions of each multi-slice source (those whose predictions carry a slice
    index), in order of first appearance, each task by its head's
    :meth:`~mtl_hf.heads.TaskHead.aggregate_volume` (``aggregation`` and ``top_k``: the rule asked for)."""
    groups: dict[str, list[ImagePrediction]] = {}
    for p in images:
        if p.index is not None:
            groups.setdefault(p.source, []).append(p)
    volumes = []
    for source, slices in groups.items():
        tasks = list(slices[0].predictions)
        stacked = {t: np.stack([s.predictions[t] for s in slices]) for t in tasks}
        volumes.append(
            VolumePrediction(
                source=source,
                num_slices=len(slices),
                predictions={
                    t: model.head(t).aggregate_volume(stacked[t], aggregation, top_k) for t in tasks
                },
                peak_slice={t: int(slices[int(np.argmax(stacked[t][:, 0]))].index or 0) for t in tasks},
            )
        )
    return volumes


# -- internals ---------------------------------------------------------------------------------------
def _predict_files(
    model: MTLModel,
    processor: MTLImageProcessor,
    files: list[Source],
    tasks: list[str],
    *,
    batch_size: int,
    reader_kwargs: dict[str, Any],
    progress: bool,
    device: torch.device,
    masks: tuple[list[str], MaskWriter] | None = None,
) -> tuple[list[ImagePrediction], list[InputError]]:
    was_training = model.training
    nn.Module.to(model, device).eval()
    segmenting, writer = masks if masks is not None else ([], None)
    results: list[ImagePrediction] = []
    errors: list[InputError] = []
    bar = tqdm(total=len(files), unit="file", desc="predict", disable=not progress)
    try:
        for batch in _batches(
            _read_all(files, reader_kwargs, bar, errors, processor.num_channels), batch_size
        ):
            inputs = pixel_values(processor, batch).to(device=device, dtype=model.dtype)
            with torch.inference_mode():
                logits = model(inputs, tasks=[*tasks, *segmenting]).logits or {}
            predicted = task_predictions(model, logits, tasks)
            arrays = {t: p.cpu().numpy().astype(np.float64) for t, p in predicted.items()}
            for i, item in enumerate(batch):
                results.append(ImagePrediction(item.source, item.index, {t: a[i] for t, a in arrays.items()}))
                if writer is not None:
                    size = (item.image.shape[0], item.image.shape[1])
                    writer.add(
                        item.source,
                        item.index,
                        {t: masks_at_size(model.head(t), logits[t][i], size) for t in segmenting},
                    )
            bar.set_postfix(images=len(results))
        if writer is not None:
            writer.flush()
    finally:
        bar.close()
        model.train(was_training)
    return results, errors


def _check_channels(item: InputImage, num_channels: int) -> None:
    channels = int(to_chw_tensor(item.image).shape[0])
    problem = channel_mismatch(channels, num_channels)
    if problem is not None:
        raise DataError(
            item.source,
            f"{problem}: read colour images as grey (--grayscale, grayscale=True) or use a model whose "
            f"backbone takes {channels} channels",
        )


def _read_all(
    files: list[Source], reader_kwargs: dict[str, Any], bar: Any, errors: list[InputError], num_channels: int
) -> Iterator[InputImage]:
    """The images of each file in turn; a file that cannot be read, or whose images have channels the
    model does not take, is added to ``errors`` and skipped whole (all its images are read before the
    first is used)."""
    for path in files:
        try:
            images = list(read_source(path, **reader_kwargs))
            for item in images:
                _check_channels(item, num_channels)
        except DataError as exc:
            errors.append(InputError(exc.path, exc.reason))
            images = []
        bar.update(1)
        yield from images


def _batches(items: Iterator[InputImage], size: int) -> Iterator[list[InputImage]]:
    batch: list[InputImage] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_csv(path: Path, header: list[str], rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    write_text_replacing(path, buffer.getvalue())
