"""Experiment trackers: ``training.report_to`` names Accelerate trackers that receive what ``metrics.jsonl`` holds.

Accelerate owns the trackers (``Accelerator(log_with=...)``, ``init_trackers``, ``log``); this module
checks the names before a run starts, starts the trackers in the run folder and sends them the run's
figures at the end. Every training row (losses, task weights, learning rate) and every validation row
of ``metrics.jsonl`` goes to every tracker at the same step (see :mod:`mtl_hf.training.loop`); only the
main process logs (Accelerate starts trackers on the main process alone).

Names are Accelerate's: ``tensorboard`` (``pip install 'mtl-hf[tensorboard]'``), ``wandb``, ``mlflow``,
``comet_ml``, ``aim``, ``clearml``, ``dvclive``, ``swanlab``, ``trackio``, or ``all`` (every installed
one). A name whose package is not installed stops the run before it starts, naming the package:
Accelerate itself would drop it silently.

Local trackers (TensorBoard, ...) write under ``<output_dir>/logs/<run folder name>/``; a resumed run
tells TensorBoard to drop the events beyond the resumed step, as ``metrics.jsonl`` drops its rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..options import OptionsError, to_dict

if TYPE_CHECKING:
    from accelerate import Accelerator

    from ..run_folder import RunFolder
    from .config import RunConfig

INSTALL_HINTS = {"tensorboard": "pip install 'mtl-hf[tensorboard]'"}
"""How to install a tracker's package where it is not simply ``pip install NAME``."""

IMAGE_OPTIONS: dict[str, dict[str, Any]] = {"tensorboard": {"dataformats": "NHWC"}}
"""Keyword arguments a tracker's ``log_images`` needs for a batch of one ``(1, H, W, C)`` uint8 image."""


class TrackerError(OptionsError):
    """``training.report_to`` names a tracker Accelerate does not know, or one whose package is missing."""


def tracker_names(report_to: Sequence[str]) -> list[str]:
    """The trackers ``report_to`` asks for, checked: known to Accelerate and installed.

    ``"none"`` (as in ``transformers.TrainingArguments.report_to``) and an empty list mean no tracker;
    ``"all"`` means every installed one.

    Raises:
        TrackerError: naming the unknown tracker (with the list Accelerate knows) or the missing package.
    """
    from accelerate.tracking import get_available_trackers
    from accelerate.utils import LoggerType

    names = [n for n in report_to if n != "none"]
    known = LoggerType.list()
    available = {str(t.value) for t in get_available_trackers()}
    for name in names:
        if name not in known:
            raise TrackerError(
                f"training.report_to: unknown tracker {name!r}; Accelerate knows {', '.join(known)} (or none)"
            )
        if name != "all" and name not in available:
            hint = INSTALL_HINTS.get(name, f"pip install {name}")
            raise TrackerError(
                f"training.report_to: tracker {name!r} needs the {name} package, which is not installed ({hint})"
            )
    return list(dict.fromkeys(names))


def start_trackers(
    accelerator: Accelerator, run: RunFolder, config: RunConfig, resumed_step: int | None
) -> None:
    """Start the configured trackers (main process only) with the run's configuration as hyperparameters.

    Args:
        resumed_step: The step a resumed run continues from (TensorBoard purges its later events), or
            ``None`` for a fresh run.
    """
    if not accelerator.log_with:
        return
    init_kwargs: dict[str, dict[str, Any]] = {}
    if resumed_step is not None:
        init_kwargs["tensorboard"] = {"purge_step": resumed_step + 1}
    accelerator.init_trackers(run.path.name, config=hyperparameters(config), init_kwargs=init_kwargs)


def hyperparameters(config: RunConfig) -> dict[str, Any]:
    """The run's configuration as ``section.key`` -> scalar pairs (deeper values, such as the task
    options, as text): the form every tracker's hyperparameter table accepts."""
    flat: dict[str, Any] = {}
    for section, values in to_dict(config).items():
        items = values.items() if isinstance(values, Mapping) else [("", values)]
        for key, value in items:
            name = f"{section}.{key}" if key else section
            if isinstance(value, (bool, int, float, str)):
                flat[name] = value
            elif value is not None:
                flat[name] = str(value)
    return flat


def log_figures(accelerator: Accelerator, figures: Iterable[Path], step: int) -> None:
    """Send the run's figures (PNG files) to every tracker that takes images (``log_images``), or files
    (``log_artifact``, MLflow), at ``step``, each under ``figures/<file stem>``."""
    trackers = list(accelerator.trackers)
    paths = sorted(figures)
    if not trackers or not paths:
        return
    import numpy as np
    from PIL import Image

    for tracker in trackers:
        if hasattr(tracker, "log_images"):
            images = {}
            for path in paths:
                with Image.open(path) as image:
                    images[f"figures/{path.stem}"] = np.asarray(image.convert("RGB"))[None]
            tracker.log_images(images, step=step, **IMAGE_OPTIONS.get(tracker.name, {}))
        elif hasattr(tracker, "log_artifact"):
            for path in paths:
                tracker.log_artifact(str(path), artifact_path="figures")
