"""Model cards for mtl-hf models: Hub metadata from the model's config and the run's results, rendered
from a Jinja template with ``huggingface_hub.ModelCard.from_template``.

The metadata (the README's YAML block) is a ``huggingface_hub.ModelCardData``: ``library_name: mtl-hf``
(the Hub accepts any library name; the ``transformers`` name would promise a loading snippet that
needs ``import mtl_hf`` first), tags, license, data sets, ``base_model`` (the DINO checkpoint the
backbone started from, when it is a Hub id) and a ``model-index`` with each task's headline test metric
(ROC AUC for classification, Dice for segmentation) as an ``EvalResult`` whose name carries the
confidence interval.

The body says what the model does (tasks, heads, loss weighting), how it was trained, its results and
plots, how to load it, its limitations, and that it is a research model, not a medical device. The
default template is ``mtl_hf/hub/templates/model_card.md``; pass ``template_path`` for your own.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeGuard

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from .. import __version__
from ..configuration_mtl import resolve_saved_options
from ..data.errors import DataError
from ..evaluation.task_metrics import MetricResult, results_of
from ..run_folder import RunFolder
from ..safe_yaml import load_yaml
from .folders import ShareableFolder, resolve_shareable

DEFAULT_TEMPLATE = "model_card.md"
LIBRARY_NAME = "mtl-hf"
BASE_TAGS = ("mtl-hf", "medical-imaging", "multi-task-learning", "vision-transformer", "dino")
HEADLINE_METRICS = {"roc_auc": ("ROC AUC", "image-classification"), "dice": ("Dice", "image-segmentation")}
"""Card names and Hub task types of the metrics a task's entry of ``test_metrics.json`` is summarised by
when it lists no result rows (files written before heads declared their metrics), in order of preference."""
BACKBONE_NAMES = {"vit": "ViT", "dinov2": "DINOv2", "dinov2_with_registers": "DINOv2 with registers"}


@dataclass
class ModelCardOptions:
    """What the card cannot read from the model or the run (all optional).

    Attributes:
        license: License of the weights, a Hub license id (default ``"apache-2.0"``, DINO's and
            mtl-hf's). Check the terms of your training data before sharing.
        datasets: Hub ids of the data sets the model was trained on (``datasets`` metadata); the first
            is also the evaluation data set of the ``model-index``.
        dataset_name: A readable name of the evaluation data set (default: the first data set id, or
            ``"private data set"``).
        base_model: Hub id of the backbone checkpoint; default: the backbone config's
            ``_name_or_path`` when it is a Hub id (``MTLModel.from_backbone`` records it).
        tags: More Hub tags (added to mtl-hf's).
        model_name: The card's title and the ``model-index`` name (default: the repo's name).
        description: A paragraph on what the model is for, placed under the title.
    """

    license: str = "apache-2.0"
    datasets: list[str] = field(default_factory=list)
    dataset_name: str | None = None
    base_model: str | None = None
    tags: list[str] = field(default_factory=list)
    model_name: str | None = None
    description: str | None = None


@dataclass
class TaskRow:
    """One task of the model, as the card lists it."""

    name: str
    head: str
    options: str
    source: str


@dataclass
class ResultRow:
    """One task's test results, as the card's table shows them."""

    task: str
    metric: str
    value: str
    interval: str
    others: str


def render_model_card(
    path: str | Path | ShareableFolder,
    repo_id: str | None = None,
    options: ModelCardOptions | None = None,
    *,
    template_path: str | Path | None = None,
) -> ModelCard:
    """The model card of a model folder or training run folder.

    Args:
        path: A ``save_pretrained`` folder, a training run folder (its ``best_model/``, results and
            plots are described) or an already resolved :class:`~mtl_hf.hub.folders.ShareableFolder`.
        repo_id: The Hub repository the card is for (used in the loading example); default: a
            placeholder ``<user>/<model>``.
        options: Metadata the folder cannot provide (license, data sets...).
        template_path: A Jinja template to use instead of mtl-hf's (it receives the same variables;
            see ``mtl_hf/hub/templates/model_card.md``).

    Returns:
        A ``huggingface_hub.ModelCard``: ``str(card)`` is the README, ``card.save(path)`` writes it.
    """
    folder = path if isinstance(path, ShareableFolder) else resolve_shareable(path)
    options = options or ModelCardOptions()
    repo_id = repo_id or "<user>/<model>"
    model_name = options.model_name or repo_id.split("/")[-1]
    card_data = build_card_data(folder, model_name, options)
    context = _template_context(folder, repo_id, model_name, options)
    if template_path is None:
        template = resources.files("mtl_hf.hub").joinpath("templates").joinpath(DEFAULT_TEMPLATE)
        return ModelCard.from_template(
            card_data, template_str=template.read_text(encoding="utf-8"), **context
        )
    return ModelCard.from_template(card_data, template_path=str(template_path), **context)


def build_card_data(folder: ShareableFolder, model_name: str, options: ModelCardOptions) -> ModelCardData:
    """The card's YAML metadata: library, tags, license, data sets, base model and evaluation results."""
    tasks = folder.config.get("tasks") or {}
    head_tags = [tag for spec in tasks.values() if (tag := hub_task(spec.get("type"))) is not None]
    eval_results = headline_eval_results(folder, options)
    has_classification = "image-classification" in head_tags
    return ModelCardData(
        library_name=LIBRARY_NAME,
        license=options.license,
        tags=list(dict.fromkeys([*BASE_TAGS, *head_tags, *options.tags])),
        datasets=list(options.datasets) or None,
        base_model=_base_model(folder, options),
        pipeline_tag="image-classification" if has_classification else None,
        metrics=list(dict.fromkeys(r.metric_type for r in eval_results)) or None,
        model_name=model_name if eval_results else None,  # only the model-index uses it
        eval_results=eval_results or None,
    )


def headline_eval_results(folder: ShareableFolder, options: ModelCardOptions) -> list[EvalResult]:
    """One ``EvalResult`` per test result row of the run's ``test_metrics.json`` whose metric the task's
    head sends to the ``model-index`` (:class:`~mtl_hf.heads.MetricSpec` ``model_index``: ROC AUC, Dice,
    a regression's R² and RMSE), the interval in the result's name; the task type is the head's
    ``hub_task``."""
    dataset_type = options.datasets[0] if options.datasets else "custom"
    dataset_name = options.dataset_name or (options.datasets[0] if options.datasets else "private data set")
    tasks = folder.config.get("tasks") or {}
    results = []
    for row in _index_rows(folder):
        head = tasks.get(row.task, {}).get("type", "unknown head")
        interval = _row_interval(row)
        results.append(
            EvalResult(
                task_type=hub_task(head) or HEADLINE_METRICS.get(row.metric, ("", "other"))[1],
                task_name=f"{row.task} ({head})",
                dataset_type=dataset_type,
                dataset_name=dataset_name,
                dataset_split="test",
                metric_type=row.metric,
                metric_value=round(row.value, 4),
                metric_name=f"{row.model_index} ({row.task})" + (f", {interval}" if interval else ""),
            )
        )
    return results


def hub_task(head_type: Any) -> str | None:
    """The Hub task type a head declares (``TaskHead.hub_task``); ``None`` for an unknown head (a plugin
    not installed here)."""
    from ..heads import HEADS
    from ..registry import UnknownNameError

    try:
        return HEADS.get(str(head_type)).hub_task
    except UnknownNameError:
        return None


def _index_rows(folder: ShareableFolder) -> list[MetricResult]:
    """The test result rows that go into the ``model-index``: those a head marked so, or, in a
    ``test_metrics.json`` without rows, each task's headline metric (:data:`HEADLINE_METRICS`)."""
    metrics = _test_metrics(folder)
    rows = [r for r in results_of(metrics) if r.model_index is not None and math.isfinite(r.value)]
    for task, values in metrics.items():
        key = None if values.get("metrics") is not None else _headline(values)
        if key is not None:
            low, high = (values.get(f"{key}_{end}") for end in ("low", "high"))
            rows.append(
                MetricResult(
                    task, key, float(values[key]),
                    float(low) if _is_number(low) else math.nan, float(high) if _is_number(high) else math.nan,
                    model_index=HEADLINE_METRICS[key][0],
                    confidence_level=float(values.get("confidence_level") or math.nan),
                )
            )  # fmt: skip
    return rows


def _row_interval(row: MetricResult) -> str | None:
    if not (math.isfinite(row.lower) and math.isfinite(row.upper)):
        return None
    prefix = f"{round(row.confidence_level * 100):g}% CI" if math.isfinite(row.confidence_level) else "CI"
    return f"{prefix} {row.lower:.3f}–{row.upper:.3f}"


def _base_model(folder: ShareableFolder, options: ModelCardOptions) -> str | None:
    """The backbone checkpoint's Hub id: given, named by an adapter's config, or recorded in the config."""
    adapter_base = (folder.adapter or {}).get("base_model_name_or_path")
    return (
        options.base_model
        or (adapter_base if _is_hub_id(adapter_base) else None)
        or hub_base_model(folder.config)
    )


def hub_base_model(config: dict[str, Any]) -> str | None:
    """The backbone checkpoint's Hub id, if the backbone config recorded one (not a local path)."""
    name = (config.get("backbone_config") or {}).get("_name_or_path")
    return name if _is_hub_id(name) else None


def plugin_distributions(config: dict[str, Any]) -> list[str]:
    """The distributions, besides mtl-hf, that a saved ``config.json`` needs: those that provided its
    heads (``head_sources``) and its weighter (``weighter_source``), sorted; for the install line."""
    sources = [*(config.get("head_sources") or {}).values(), config.get("weighter_source")]
    return sorted({source.split(" ")[0] for source in sources if source})


# -- template context ----------------------------------------------------------------------------
def _template_context(
    folder: ShareableFolder,
    repo_id: str,
    model_name: str,
    options: ModelCardOptions,
) -> dict[str, Any]:
    config = folder.config
    tasks, weighting = resolve_saved_options(config)
    head_sources = config.get("head_sources") or {}
    plugin_packages = plugin_distributions(config)
    return {
        "model_name": model_name,
        "repo_id": repo_id,
        "description": options.description,
        "mtl_hf_version": __version__,
        "backbone": _backbone_summary(config, _base_model(folder, options)),
        "tasks": [
            TaskRow(
                name=name,
                head=spec.get("type", "?"),
                options=_format_options({k: v for k, v in spec.items() if k != "type"}),
                source=head_sources.get(spec.get("type"), "mtl-hf (built in)"),
            )
            for name, spec in tasks.items()
        ],
        "classification_tasks": [
            n for n, s in tasks.items() if hub_task(s.get("type")) == "image-classification"
        ],
        "weighting": weighting.pop("type"),
        "weighting_options": _format_options(weighting),
        "view_layout": config.get("view_layout", "two_pass"),
        "plugin_packages": plugin_packages,
        "head_sources": head_sources,
        "weighter_source": config.get("weighter_source"),
        "has_image_processor": folder.has_image_processor,
        "adapter": _adapter_summary(folder.adapter),
        "is_run": folder.run_dir is not None,
        "training": _training_summary(folder),
        "training_config": _read_text(folder.run_file(RunFolder.CONFIG)),
        "run_info": _run_info(folder),
        "results": _result_rows(folder),
        "plots": folder.plots,
        "dataset_name": options.dataset_name or (options.datasets[0] if options.datasets else None),
    }


def _backbone_summary(config: dict[str, Any], base_model: str | None) -> dict[str, Any]:
    backbone = config.get("backbone_config") or {}
    model_type = backbone.get("model_type", "?")
    image_size = backbone.get("image_size")
    local_start = base_model is None and bool(backbone.get("_name_or_path"))
    return {
        "kind": BACKBONE_NAMES.get(model_type, model_type),
        "model_type": model_type,
        "hidden_size": backbone.get("hidden_size"),
        "num_hidden_layers": backbone.get("num_hidden_layers"),
        "num_attention_heads": backbone.get("num_attention_heads"),
        "patch_size": backbone.get("patch_size"),
        "image_size": image_size,
        "num_channels": backbone.get("num_channels"),
        "base_model": base_model,
        "from_local_checkpoint": local_start,
    }


def _adapter_summary(adapter: dict[str, Any] | None) -> dict[str, Any] | None:
    """Rank, scale, adapted layers and base backbone of an adapter-only folder."""
    if adapter is None:
        return None
    base = adapter.get("base_model_name_or_path")
    return {
        "r": adapter.get("r"),
        "alpha": adapter.get("lora_alpha"),
        "target_modules": ", ".join(f"`{m}`" for m in sorted(adapter.get("target_modules") or [])),
        "base_model": base,
        "base_on_hub": _is_hub_id(base),
    }


def _training_summary(folder: ShareableFolder) -> dict[str, Any] | None:
    """Steps, last epoch, final training loss, each task's best validation value of its selection metric
    and what selected the shared weights, from ``metrics.jsonl`` and the best model's ``selection.json``."""
    path = folder.run_file(RunFolder.METRICS)
    if path is None:
        return None
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}", f"not a JSON object ({exc})") from exc
    train = [r for r in records if r.get("split") == "train"]
    val = [r for r in records if r.get("split") == "val"]
    selection = _selection_record(folder)
    return {
        "steps": max((int(r["step"]) for r in records if _is_number(r.get("step"))), default=None),
        "last_epoch": max((int(r["epoch"]) for r in records if _is_number(r.get("epoch"))), default=None),
        "final_train_loss": _fmt(train[-1].get("loss")) if train else None,
        "best_validation": _best_validation(val, _selection_metrics(folder, selection, val)),
        "selection": _selection(selection),
    }


def _selection_metrics(
    folder: ShareableFolder, selection: dict[str, Any] | None, val: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """``{task: {"metric", "higher_is_better", "display"}}``: each task's selection metric as training
    recorded it in ``selection.json``; for a run that recorded only the monitored task's, that one and
    ROC AUC for the tasks that logged it (display names from the test rows' ``model-index`` names)."""
    if selection is not None and isinstance(selection.get("tasks"), dict):
        return {
            str(t): dict(m) for t, m in selection["tasks"].items() if isinstance(m, dict) and "metric" in m
        }
    names = {(r.task, r.metric): r.model_index for r in results_of(_test_metrics(folder))}
    metrics: dict[str, dict[str, Any]] = {}
    if selection is not None:
        task, metric = str(selection["monitor"]), str(selection["metric"])
        display = names.get((task, metric)) or metric
        metrics[task] = {
            "metric": metric,
            "higher_is_better": selection.get("higher_is_better", True),
            "display": display,
        }
    logged = dict.fromkeys(k.split("/", 1)[1] for r in val for k in r if k.startswith("roc_auc/"))
    return metrics | {
        t: {"metric": "roc_auc", "higher_is_better": True, "display": HEADLINE_METRICS["roc_auc"][0]}
        for t in logged
        if t not in metrics
    }


def _best_validation(
    records: list[dict[str, Any]], metrics: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """One entry per task with validation values: its selection metric's display name, which way is
    better, and its best value over the validation records (the highest, or the lowest for an error)."""
    best = []
    for task, spec in metrics.items():
        key = f"{spec['metric']}/{task}"
        values = [float(r[key]) for r in records if _is_number(r.get(key))]
        if values:
            higher = bool(spec.get("higher_is_better", True))
            best.append(
                {
                    "task": task,
                    "metric": spec.get("display") or spec["metric"],
                    "lower_is_better": not higher,
                    "value": _fmt(max(values) if higher else min(values)),
                }
            )
    return best


def _selection_record(folder: ShareableFolder) -> dict[str, Any] | None:
    """The best model's ``selection.json`` (written by training), or ``None`` if absent or incomplete."""
    path = RunFolder.selection_file(folder.model_dir)
    if folder.run_dir is None or not path.is_file():
        return None
    record = _read_json(path)
    if not isinstance(record, dict) or not {"monitor", "metric", "value"} <= set(record):
        return None
    return record


def _selection(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """What selected the shared weights: the monitored task, its metric, which way is better, the best
    value and its step; ``None`` without a ``selection.json``."""
    if record is None:
        return None
    return {
        "task": record["monitor"],
        "metric": record["metric"],
        "direction": "highest" if record.get("higher_is_better", True) else "lowest",
        "value": _fmt(record["value"]),
        "step": record.get("step"),
    }


def _read_json(path: Path) -> Any:
    """The JSON document in ``path``, or a :class:`~mtl_hf.data.errors.DataError` naming the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(str(path), f"not valid JSON ({exc})") from exc


def _run_info(folder: ShareableFolder) -> list[tuple[str, str]]:
    """``run_info.json`` flattened one level into (key, value) pairs for a table."""
    path = folder.run_file(RunFolder.RUN_INFO)
    if path is None:
        return []
    info = _read_json(path)
    if not isinstance(info, dict):
        raise DataError(str(path), "expected a JSON object")
    rows = []
    for key, value in info.items():
        if isinstance(value, dict):
            rows += [(f"{key}.{k}", _scalar(v)) for k, v in value.items()]
        else:
            rows.append((key, _scalar(value)))
    return rows


def _result_rows(folder: ShareableFolder) -> list[ResultRow]:
    """One line per task: its first ``model-index`` metric (or headline metric) and the other numbers."""
    rows = []
    indexed: dict[str, MetricResult] = {}
    for row in _index_rows(folder):
        indexed.setdefault(row.task, row)
    for task, values in _test_metrics(folder).items():
        headline = indexed.get(task)
        key = headline.metric if headline is not None else None
        shown = {key, f"{key}_low", f"{key}_high", "confidence_level"} if key else {"confidence_level"}
        others = {k: v for k, v in values.items() if k not in shown and _is_number(v)}
        rows.append(
            ResultRow(
                task=task,
                metric=headline.model_index or "–" if headline is not None else "–",
                value=(_fmt(headline.value) if headline is not None else None) or "–",
                interval=(_row_interval(headline) if headline is not None else None) or "–",
                others=", ".join(f"{k} {_fmt(v)}" for k, v in others.items()) or "–",
            )
        )
    return rows


def _headline(values: dict[str, Any]) -> str | None:
    return next((k for k in HEADLINE_METRICS if _is_number(values.get(k))), None)


def _test_metrics(folder: ShareableFolder) -> dict[str, dict[str, Any]]:
    path = folder.run_file(RunFolder.TEST_METRICS)
    if path is None:
        return {}
    data = _read_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DataError(str(path), "expected {task: {metric: value}}")
    return data


# -- formatting ----------------------------------------------------------------------------------
def _format_options(options: dict[str, Any]) -> str:
    shown = {k: v for k, v in options.items() if v is not None and v != {} and v != []}
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in shown.items()) or "defaults"


def _fmt(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # counts: samples, patients, resamples
    return f"{float(value):.3f}" if _is_number(value) else None


def _scalar(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_hub_id(name: Any) -> bool:
    if not isinstance(name, str) or not re.fullmatch(r"[\w.\-]+/[\w.\-]+", name) or Path(name).exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _read_text(path: Path | None) -> str | None:
    if path is None:
        return None
    text = path.read_text(encoding="utf-8")
    load_yaml(text, str(path))  # a broken config.yaml is an error, not a silently garbled card
    return text.rstrip()
