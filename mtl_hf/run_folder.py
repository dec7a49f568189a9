"""The output folder of a training run: the one place that knows its layout and file names.

``mtl-hf train`` writes, and ``compare``, ``explain``, ``predict`` and ``push`` read, a folder like::

    runs/brats-mtl/
      config.yaml               the resolved training configuration
      run_info.json             run identity, seed, split hash, package versions, code revision
      metrics.jsonl             training and validation rows, appended as the run goes
      data_errors.jsonl         training samples skipped as unreadable (``on_data_error: skip``)
      checkpoints/checkpoint-00000042/   resumable states (Accelerate's files + trainer_state.json)
      best_model/               save_pretrained folder of the selected model (+ selection.json)
      test_metrics.json         the best model's test metrics with intervals
      test_predictions.csv      one row per test sample, task and output (label, prediction)
      test_results.csv          one row per task and test metric (value, lower, upper)
      test_statistics_<task>.csv  per-sample metric statistics of non-classification tasks
      plots/                    training curves, task weights, example predictions
      logs/<run name>/          experiment-tracker logs (TensorBoard event files; ``training.report_to``)
      trainer_state.json        written last: the run is finished
      .lock                     held while a run trains here

Every whole-file write is atomic and replaces a symbolic link found in its place rather than writing
into the link's target (:mod:`mtl_hf.atomic`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_text
from .errors import MtlHfError


class RunFolderError(MtlHfError, RuntimeError):
    """The output folder cannot be used as asked (locked, finished, or holds no checkpoint)."""


class RunFolder:
    """A training run's output folder.

    Args:
        path: The folder (``output_dir`` of the run's configuration); it need not exist yet.
    """

    CONFIG = "config.yaml"
    RUN_INFO = "run_info.json"
    METRICS = "metrics.jsonl"
    DATA_ERRORS = "data_errors.jsonl"
    TRAINER_STATE = "trainer_state.json"
    BEST_MODEL = "best_model"
    SELECTION = "selection.json"
    TEST_METRICS = "test_metrics.json"
    TEST_PREDICTIONS = "test_predictions.csv"
    TEST_RESULTS = "test_results.csv"
    TEST_STATISTICS = "test_statistics_{task}.csv"
    CHECKPOINTS = "checkpoints"
    CHECKPOINT_PREFIX = "checkpoint-"
    PLOTS = "plots"
    TRACKER_LOGS = "logs"
    LOCK = ".lock"
    SHARED_RESULTS = (TEST_METRICS, METRICS, CONFIG, RUN_INFO)
    """Files that describe a run and may be shared with its model (never the test predictions, which
    name patients, nor checkpoints)."""
    OUTPUTS = (
        TRAINER_STATE,
        BEST_MODEL,
        TEST_METRICS,
        TEST_RESULTS,
        TEST_PREDICTIONS,
        PLOTS,
        TRACKER_LOGS,
        CHECKPOINTS,
    )
    """What a run leaves behind, besides its logs and records: removed when a run starts afresh."""
    _INTERRUPTED = (".tmp-", ".old-")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- where things are ------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG

    @property
    def run_info_file(self) -> Path:
        return self.path / self.RUN_INFO

    @property
    def metrics_file(self) -> Path:
        return self.path / self.METRICS

    @property
    def data_errors_file(self) -> Path:
        return self.path / self.DATA_ERRORS

    @property
    def state_file(self) -> Path:
        return self.path / self.TRAINER_STATE

    @property
    def best_model(self) -> Path:
        return self.path / self.BEST_MODEL

    @property
    def test_metrics_file(self) -> Path:
        return self.path / self.TEST_METRICS

    @property
    def test_results_file(self) -> Path:
        return self.path / self.TEST_RESULTS

    @property
    def test_predictions_file(self) -> Path:
        return self.path / self.TEST_PREDICTIONS

    @property
    def plots(self) -> Path:
        return self.path / self.PLOTS

    @property
    def tracker_logs(self) -> Path:
        """Where local experiment trackers (TensorBoard) write, one folder per run name."""
        return self.path / self.TRACKER_LOGS

    @property
    def lock_file(self) -> Path:
        return self.path / self.LOCK

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    def test_statistics_file(self, task: str) -> Path:
        return self.path / self.TEST_STATISTICS.format(task=task)

    def test_statistics_files(self) -> dict[str, Path]:
        """``{task: its test statistics file}`` for every such file of the run, by task name."""
        prefix, suffix = self.TEST_STATISTICS.split("{task}")
        if not self.path.is_dir():
            return {}
        found = {p.name[len(prefix) : -len(suffix)]: p for p in self.path.glob(f"{prefix}*{suffix}")}
        return dict(sorted(found.items()))

    @classmethod
    def selection_file(cls, model_dir: str | os.PathLike[str]) -> Path:
        """``selection.json`` of a best-model folder (also while it is written into a temporary one)."""
        return Path(model_dir) / cls.SELECTION

    # -- what state it is in -----------------------------------------------------------------------
    def is_finished(self) -> bool:
        """Whether a run completed here (its final ``trainer_state.json`` says so)."""
        state = self.read_trainer_state()
        return bool(state and state.get("finished"))

    def has_best_model(self) -> bool:
        return self.best_model.is_dir()

    @classmethod
    def of_model(cls, path: str | os.PathLike[str]) -> RunFolder | None:
        """The run folder ``path`` is, or whose ``best_model/`` it is; ``None`` for anything else."""
        p = Path(path)
        if (p / cls.BEST_MODEL).is_dir():
            return cls(p)
        if p.name == cls.BEST_MODEL and p.is_dir():
            return cls(p.parent)
        return None

    @classmethod
    def model_folder(cls, path: str | os.PathLike[str]) -> str:
        """``path`` itself, or its ``best_model/`` when ``path`` is a run folder (not a model folder)."""
        p = Path(path)
        if p.is_dir() and not (p / "config.json").exists() and (p / cls.BEST_MODEL / "config.json").exists():
            return str(p / cls.BEST_MODEL)
        return os.fspath(path)

    @classmethod
    def display_name(cls, path: str | os.PathLike[str]) -> str:
        """The run's name for ``run/best_model``, else the last component of ``path`` (or the Hub id)."""
        p = Path(path)
        if p.exists():
            p = p.resolve()
            return p.parent.name if p.name == cls.BEST_MODEL else p.name
        return str(path)

    # -- checkpoints ------------------------------------------------------------------------------
    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"{self.CHECKPOINT_PREFIX}{step:08d}"

    def list_checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (temporary folders of interrupted saves are ignored)."""
        if not self.checkpoints.is_dir():
            return []
        prefix = self.CHECKPOINT_PREFIX
        found = [
            p
            for p in self.checkpoints.iterdir()
            if p.is_dir() and p.name.startswith(prefix) and (p / self.TRAINER_STATE).is_file()
        ]
        return sorted(found, key=lambda p: int(p.name[len(prefix) :]))

    def latest_checkpoint(self) -> Path | None:
        found = self.list_checkpoints()
        return found[-1] if found else None

    @classmethod
    def read_checkpoint_state(cls, checkpoint: Path) -> dict[str, Any]:
        """The trainer state saved in ``checkpoint``."""
        return _read_json(checkpoint / cls.TRAINER_STATE, required=True)

    @classmethod
    def checkpoint_state_file(cls, folder: Path) -> Path:
        return folder / cls.TRAINER_STATE

    # -- records ---------------------------------------------------------------------------------
    def write_config(self, text: str) -> None:
        write_text(self.config_file, text)

    def read_config_text(self) -> str | None:
        return self.config_file.read_text(encoding="utf-8") if self.config_file.is_file() else None

    def write_run_info(self, info: Mapping[str, Any]) -> None:
        write_text(self.run_info_file, json.dumps(info, indent=2, default=str))

    def read_run_info(self) -> dict[str, Any]:
        """``run_info.json`` (empty when missing or unreadable: older runs, a run killed at its start)."""
        try:
            return _read_json(self.run_info_file)
        except RunFolderError:
            return {}

    def run_id(self) -> str | None:
        """The identity of the run that owns this folder now (recorded at its start)."""
        value = self.read_run_info().get("run_id")
        return value if isinstance(value, str) else None

    def write_trainer_state(self, text: str) -> None:
        write_text(self.state_file, text)

    def read_trainer_state(self) -> dict[str, Any] | None:
        """The final trainer state, ``None`` when the run has not finished or it cannot be read."""
        try:
            return _read_json(self.state_file) or None
        except RunFolderError:
            return None

    def read_selection(self) -> dict[str, Any]:
        """How ``best_model`` was chosen: monitor task, metric, value and step."""
        return _read_json(self.selection_file(self.best_model))

    @classmethod
    def write_selection(cls, model_dir: str | os.PathLike[str], selection: Mapping[str, Any]) -> None:
        write_text(cls.selection_file(model_dir), json.dumps(dict(selection), indent=2))

    def write_test_metrics(self, results: Mapping[str, Any], default: Any = str) -> None:
        write_text(self.test_metrics_file, json.dumps(results, indent=2, default=default))

    def read_test_metrics(self) -> dict[str, Any] | None:
        """``test_metrics.json``; ``None`` when the run has none (no best model, no test split)."""
        if not self.test_metrics_file.is_file():
            return None
        return _read_json(self.test_metrics_file, required=True)

    def write_test_predictions(self, tasks: Mapping[str, Mapping[str, Any]]) -> None:
        """``test_predictions.csv``: a row per sample, task and output, with its label and prediction (a
        classifier's probability, a regression's value: what the head's ``predictions`` gives).

        Args:
            tasks: ``{task: {"samples", "patients", "output_names", "predictions", "labels"}}`` as the
                evaluation loop collects them: ``(N, K)`` predictions (``None`` for a head without any,
                which adds no row) and label columns of the task's labelled samples.
        """
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        writer.writerow(["sample_id", "patient_id", "task", "output", "label", "prediction"])
        for t, task in tasks.items():
            if task.get("predictions") is None:
                continue
            patients = task["patients"] or [""] * len(task["samples"])
            for sample, patient, values, labels in zip(
                task["samples"], patients, task["predictions"], task["labels"], strict=True
            ):
                for name, value, label in zip(task["output_names"], values, labels, strict=True):
                    writer.writerow([sample, patient, t, name, _plain(label), f"{float(value):.9g}"])
        write_text(self.test_predictions_file, buffer.getvalue())

    def read_test_predictions(self) -> dict[str, dict[str, Any]]:
        """``test_predictions.csv`` as ``{task: {"ids", "patients", "labels", "probs"}}`` (a row per sample)."""
        return read_test_predictions(self.test_predictions_file)

    # -- starting a run here -------------------------------------------------------------------------
    def ensure_writable(self) -> None:
        """Create the folder if needed and check that a file can be written in it, before anything starts.

        Raises:
            RunFolderError: the path is a file, cannot be created, or is not writable (saying why).
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(
                f"{self.path}: output_dir is a file, not a folder; choose another output_dir"
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.path, prefix=".tmp-probe-"):
                pass
        except OSError as exc:
            raise RunFolderError(
                f"{self.path}: cannot be used as output_dir ({exc.strerror or exc}); choose a folder you can "
                "write to"
            ) from exc

    def remove_interrupted_writes(self) -> list[Path]:
        """Delete the temporary and set-aside folders (``.tmp-*``, ``.old-*``) that a run killed while
        writing ``best_model``, a checkpoint or a file left behind; return what was removed.

        Call only while holding the run's lock: a live run's temporary folders look the same.
        """
        removed = []
        for folder in (self.path, self.checkpoints):
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if entry.name.startswith(self._INTERRUPTED):
                    _remove(entry)
                    removed.append(entry)
        return removed

    def clear_outputs(self) -> None:
        """Remove a previous run's checkpoints, best model, test outputs, plots and final state, so a run
        started afresh (``--overwrite``) can never resume from, or report, the previous run's files.

        Each is first renamed out of its name (atomic), then deleted: a run killed meanwhile leaves
        ``.old-*`` leftovers that :meth:`remove_interrupted_writes` clears, never a half-deleted output.
        """
        names = [*self.OUTPUTS]
        names += [p.name for p in self.test_statistics_files().values()]
        doomed = []
        for name in names:
            path = self.path / name
            if path.is_symlink() or path.exists():
                aside = self.path / f".old-{name}-{os.getpid()}"
                os.replace(path, aside)
                doomed.append(aside)
        for path in doomed:
            _remove(path)


def read_test_predictions(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Parse a ``test_predictions.csv`` (see :meth:`RunFolder.write_test_predictions`) into
    ``{task: {"ids", "patients", "outputs", "labels", "probs"}}``: a row per sample, one column per
    output (1-D for a single output). ``probs`` holds the predictions (named so for files written when
    they were probabilities only, under a ``probability`` header, which is read too)."""
    per_task: dict[str, dict[str, dict[str, Any]]] = {}
    with Path(path).open(newline="") as handle:
        for row in csv.DictReader(handle):
            sample = per_task.setdefault(row["task"], {}).setdefault(
                row["sample_id"], {"patient": row["patient_id"], "labels": {}, "probs": {}}
            )
            value = row["prediction"] if "prediction" in row else row["probability"]
            sample["labels"][row["output"]] = float(row["label"])
            sample["probs"][row["output"]] = float(value)
    result = {}
    for task, samples in per_task.items():
        ids = list(samples)
        outputs = list(next(iter(samples.values()))["probs"])
        probs = np.array([[samples[i]["probs"][j] for j in outputs] for i in ids])
        labels = np.array([[samples[i]["labels"][j] for j in outputs] for i in ids])
        result[task] = {
            "ids": np.array(ids),
            "patients": [samples[i]["patient"] for i in ids],
            "outputs": outputs,
            "labels": labels[:, 0] if len(outputs) == 1 else labels,
            "probs": probs[:, 0] if len(outputs) == 1 else probs,
        }
    return result


def _read_json(path: Path, *, required: bool = False) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        if required:
            raise RunFolderError(f"{path}: missing") from exc
        return {}
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path}: cannot be read ({exc})") from exc
    if not isinstance(value, dict):
        raise RunFolderError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
