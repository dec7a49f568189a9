"""``mtl-hf compare CONFIG.yaml`` (:mod:`.compare_cli`): the paper's comparison as one restartable command.

A compare config names a base training config and a grid; every cell of the grid is an ordinary
training run in its own folder under ``output_dir/runs/``. Finished runs are skipped, an interrupted
one resumes from its last checkpoint, so the command can simply be run again after a crash.

Example::

    output_dir: runs/compare-brats
    base: demo-brats.yaml                  # a training config (relative to this file)
    run: {training: {epochs: 10}}          # optional overrides of the base
    grid:
      strategies: [stl, pretrain, mtl]
      weightings: [{type: fixed}, {type: uncertainty}]   # MTL runs once per weighting
      sampling: [all, undersample]
      train_fractions: [0.1, 0.25, 1.0]
      seeds: [0, 1, 2]

Every run uses the same patient split (the data seed is the base config's, not the grid's seed), so
test sets are identical and strategies are compared *paired*: DeLong's test and a patient-level
paired bootstrap give ΔAUC with its interval and a p-value. Outputs: ``results.md``, ``results.csv``
(one row per run and task), ``results_summary.csv`` (mean ± sd over seeds), ``comparisons.csv``,
plots in ``plots/``, and ``compare_info.json`` (grid, split hashes, versions, code revision). Every task's
every test metric (ROC AUC, a segmentation plugin's Dice, a regression's R² / MAE / RMSE / Pearson) is
listed with its patient-bootstrap interval in ``metrics.csv``, its paired differences between strategies
in ``paired_differences.csv``, and a section of ``results.md`` (:mod:`mtl_hf.experiments.task_results`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..options import OptionsError, from_dict, to_dict
from ..run_folder import RunFolder, read_test_predictions
from ..safe_yaml import read_yaml
from ..training.config import RunConfig, apply_overrides
from ..training.run_info import git_revision, package_versions
from ..training.strategies import get_strategy
from .folds import fold_fractions, fold_manifest_path, pool_folds, write_fold_manifests
from .grid_runner import GridJob, GridRunError, JobTiming, run_jobs
from .low_data import low_data_section
from .task_results import task_results_section


@dataclass
class GridSection:
    """The runs to make: every combination of these lists.

    Attributes:
        strategies: Training strategies (``stl``, ``pretrain``, ``mtl``).
        weightings: Loss weightings for ``mtl`` runs (``{type: ..., ...options}``); other strategies
            train one kind of task at a time and ignore it.
        sampling: ``all`` (the training split as is) and/or ``undersample`` (majority class undersampled).
        train_fractions: Shares of the training patients kept (nested: smaller subsets are inside larger).
        seeds: Training seeds (weights, order, masks); the patient split stays the base config's.
        folds: ``1``: the base config's train / validation / test split. ``K >= 3``: patient-level
            K-fold cross-validation (:mod:`mtl_hf.experiments.folds`): every cell is trained K times,
            fold ``j`` testing the j-th K-th of the patients, and the folds' test predictions are pooled
            into one test set for the intervals and the paired tests.
    """

    strategies: list[Literal["stl", "pretrain", "mtl"]] = field(
        default_factory=lambda: ["stl", "pretrain", "mtl"]
    )
    weightings: list[dict[str, Any]] = field(default_factory=lambda: [{"type": "fixed"}])
    sampling: list[Literal["all", "undersample"]] = field(default_factory=lambda: ["all"])
    train_fractions: list[float] = field(default_factory=lambda: [1.0])
    seeds: list[int] = field(default_factory=lambda: [0])
    folds: int = 1

    def __post_init__(self) -> None:
        if self.folds != 1 and self.folds < 3:
            raise ValueError(f"folds: 1 (no cross-validation) or at least 3, got {self.folds}")
        for name in ("strategies", "weightings", "sampling", "train_fractions", "seeds"):
            if not getattr(self, name):
                raise ValueError(f"{name}: needs at least one value")
        for w in self.weightings:
            if "type" not in w:
                raise ValueError(f"weightings: each needs a 'type', got {w}")
        for f in self.train_fractions:
            if not 0.0 < f <= 1.0:
                raise ValueError(f"train_fractions: each must be in (0, 1], got {f}")


@dataclass
class CompareConfig:
    """A comparison.

    Attributes:
        output_dir: Where runs, tables and plots go.
        base: Training config YAML the runs start from (relative paths: to the compare config's folder).
        run: Overrides of the base, as a nested mapping (e.g. ``{training: {epochs: 5}}``).
        grid: See :class:`GridSection`.
        tasks: Tasks to report (default: every task of the runs with test metrics).
        comparisons: Pairs ``[a, b]`` of run labels to test (``a`` minus ``b``); default: every pair in
            the order mtl, pretrain, stl. A label is the strategy, or ``mtl:<weighting>`` when several
            weightings run.
        bootstrap_resamples: Resamples for intervals and paired tests.
        confidence_level: Level of the intervals.
        attention: When the test split has lesion masks, also measure where each strategy's attention
            falls (share of attention inside the lesion, pointing game, pixel ROC AUC; first seed,
            first sampling, largest fraction) and add the table to the results.
    """

    output_dir: str
    base: str | None = None
    run: dict[str, Any] = field(default_factory=dict)
    grid: GridSection = field(default_factory=GridSection)
    tasks: list[str] | None = None
    comparisons: list[list[str]] = field(default_factory=list)
    bootstrap_resamples: int = 2000
    confidence_level: float = 0.95
    attention: bool = True


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    strategy: str
    weighting: dict[str, Any]
    sampling: str
    train_fraction: float
    seed: int
    label: str
    fold: int | None = None

    @property
    def weighting_name(self) -> str:
        return str(self.weighting["type"]) if get_strategy(self.strategy).uses_weighter else "none"

    @property
    def folder(self) -> str:
        frac = f"{self.train_fraction:g}".replace(".", "p")
        fold = "" if self.fold is None else f"_k{self.fold}"
        return f"{self.label.replace(':', '-')}_{self.sampling}_f{frac}_s{self.seed}{fold}"


def load_compare_config(
    path: str | Path, overrides: Sequence[str] = ()
) -> tuple[CompareConfig, dict[str, Any]]:
    """Read and validate a compare config; return it with the base training config (a plain dict)."""
    path = Path(path)
    raw = read_yaml(path, "compare config") or {}
    if not isinstance(raw, dict):
        raise OptionsError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides)
    try:
        config = from_dict(CompareConfig, raw)
    except OptionsError as exc:
        raise OptionsError(f"{path}: {exc}") from None
    base: dict[str, Any] = {}
    if config.base is not None:
        base_path = (path.parent / config.base).resolve()
        try:
            base = read_yaml(base_path, "base training config") or {}
        except OptionsError as exc:
            raise OptionsError(f"{path}: base: {exc}") from None
        if not isinstance(base, dict):
            raise OptionsError(f"{path}: base: {base_path} is not a mapping")
    base = _merge(base, config.run)
    base.setdefault("output_dir", config.output_dir)
    return config, base


def grid_cells(grid: GridSection) -> list[Cell]:
    several = len(grid.weightings) > 1
    cells = []
    for strategy, sampling, fraction, seed in product(
        grid.strategies, grid.sampling, grid.train_fractions, grid.seeds
    ):
        uses_weighter = get_strategy(strategy).uses_weighter
        weightings = grid.weightings if uses_weighter else [{"type": "fixed"}]
        for weighting in weightings:
            label = f"{strategy}:{weighting['type']}" if uses_weighter and several else strategy
            folds: list[int | None] = list(range(grid.folds)) if grid.folds > 1 else [None]
            cells += [Cell(strategy, weighting, sampling, fraction, seed, label, fold) for fold in folds]
    return cells


def cell_config(base: dict[str, Any], cell: Cell, out: Path, folds: int = 1) -> RunConfig:
    """The training config of ``cell``: ``base`` with the cell's strategy, seed, weighting, sampling,
    training fraction and (cross-validation with ``folds`` folds) its fold's split manifest."""
    raw = copy.deepcopy(base)
    raw["output_dir"] = str(out / "runs" / cell.folder)
    raw.setdefault("cache_dir", str(out / "cache"))
    raw.setdefault("training", {})["strategy"] = cell.strategy
    raw["training"]["seed"] = cell.seed
    if get_strategy(cell.strategy).uses_weighter:
        raw.setdefault("model", {})["weighting"] = cell.weighting
    sampling = raw.setdefault("data", {}).setdefault("sampling", {})
    sampling["undersample"] = cell.sampling == "undersample"
    sampling["train_fraction"] = cell.train_fraction
    if cell.fold is not None:
        raw["data"]["split"] = {
            **raw["data"].get("split", {}),
            **fold_fractions(folds),
            "manifest": str(fold_manifest_path(out, cell.fold, folds)),
        }
    return from_dict(RunConfig, raw)


def run_grid(
    config: CompareConfig, base: dict[str, Any], *, workers: int = 1
) -> tuple[list[tuple[Cell, Path]], list[JobTiming]]:
    """Train every cell that is not finished (resuming interrupted ones), ``workers`` at a time (see
    :mod:`mtl_hf.experiments.grid_runner`); return (cell, run folder) of every cell and the timings of
    the runs trained now."""

    out = Path(config.output_dir)
    cells = grid_cells(config.grid)
    done, jobs = [], []
    for i, cell in enumerate(cells, 1):
        run = cell_config(base, cell, out, config.grid.folds)
        run.training.bootstrap_resamples = config.bootstrap_resamples
        run.training.confidence_level = config.confidence_level
        folder = RunFolder(run.output_dir)
        header = f"[{i}/{len(cells)}] {cell.label} sampling={cell.sampling} fraction={cell.train_fraction:g} seed={cell.seed}"
        if folder.is_finished():
            print(f"{header}: finished earlier, skipped")
        else:
            resume = folder.latest_checkpoint() is not None
            jobs.append(
                GridJob(f"{header}: {'resuming' if resume else 'training'} in {folder.path}", run, resume)
            )
        done.append((cell, folder.path))
    if config.grid.folds > 1 and jobs:  # the cache and the folds' split manifests, before any run
        write_fold_manifests(jobs[0].config, config.grid.folds, out)
    elif workers > 1 and len(jobs) > 1:
        prepare_data(jobs[0].config)  # the cache and split manifest, once, before the workers read them
    return done, run_jobs(jobs, workers=workers)


def pooled_runs(runs: list[tuple[Cell, Path]], out: Path, config: CompareConfig) -> list[tuple[Cell, Path]]:
    """The folds of each cell pooled into one run (:func:`mtl_hf.experiments.folds.pool_folds`)."""
    groups: dict[str, tuple[Cell, list[Path]]] = {}
    for cell, folder in runs:  # folds of a cell come in fold order
        whole = dataclasses.replace(cell, fold=None)
        groups.setdefault(whole.folder, (whole, []))[1].append(folder)
    pooled = pool_folds(
        {name: folders for name, (_, folders) in groups.items()},
        out,
        n_resamples=config.bootstrap_resamples,
        confidence_level=config.confidence_level,
    )
    return [(cell, pooled[name]) for name, (cell, _) in groups.items()]


def prepare_data(run: RunConfig) -> None:
    """Build (or check) the data cache and split manifest a run of the grid reads."""
    from ..data import DataConfig, prepare_datasets

    prepare_datasets(from_dict(DataConfig, run.data, "data"), cache_dir=run.cache_dir)


read_predictions = read_test_predictions
"""A run's test predictions as ``{task: {"ids", "patients", "labels", "probs"}}`` (rows per sample)."""


def collect_results(config: CompareConfig, runs: list[tuple[Cell, Path]]) -> tuple[list[Any], list[Any]]:
    """Result rows of every run and task, and the paired comparisons."""
    from ..evaluation import ComparisonRow, ResultRow, align_by_sample_id, compare_scores
    from ..evaluation.inputs import roc_inputs

    rows = []
    metrics_of: dict[tuple[str, str, float, int], tuple[Path, dict[str, Any]]] = {}
    for cell, folder in runs:
        metrics = RunFolder(folder).read_test_metrics()
        if metrics is None:
            print(f"warning: {folder} has no test metrics (no best model?); left out", file=sys.stderr)
            continue
        metrics_of[(cell.label, cell.sampling, cell.train_fraction, cell.seed)] = (folder, metrics)
        for task, values in metrics.items():
            if task.startswith("_") or values.get("roc_auc") is None:
                continue
            if config.tasks is not None and task not in config.tasks:
                continue
            rows.append(
                ResultRow.from_metrics(
                    values,
                    strategy=cell.label,
                    weighting=cell.weighting_name,
                    sampling=cell.sampling,
                    train_fraction=cell.train_fraction,
                    seed=cell.seed,
                    task=task,
                    run_dir=str(folder),
                )
            )
    comparisons = []
    for (a, b), sampling, fraction, seed in product(
        strategy_pairs(config, runs), config.grid.sampling, config.grid.train_fractions, config.grid.seeds
    ):
        if (a, sampling, fraction, seed) not in metrics_of or (b, sampling, fraction, seed) not in metrics_of:
            continue
        folder_a, metrics_a = metrics_of[(a, sampling, fraction, seed)]
        folder_b, _ = metrics_of[(b, sampling, fraction, seed)]
        pred_a = RunFolder(folder_a).read_test_predictions()
        pred_b = RunFolder(folder_b).read_test_predictions()
        for task in pred_a.keys() & pred_b.keys():
            values = metrics_a.get(task, {})
            kind = values.get("kind")  # of a task scored by ROC AUC: the metric's configuration
            if (
                "roc_auc" not in values
                or kind is None
                or (config.tasks is not None and task not in config.tasks)
            ):
                continue  # not scored by ROC AUC: its paired differences come from its statistics
            order = align_by_sample_id(pred_a[task]["ids"], pred_b[task]["ids"], name_a=a, name_b=b)
            refs, scores_a = roc_inputs(pred_a[task]["labels"], pred_a[task]["probs"], kind)
            _, scores_b = roc_inputs(pred_a[task]["labels"], np.asarray(pred_b[task]["probs"])[order], kind)
            comparison = compare_scores(
                refs,
                scores_a,
                scores_b,
                task=kind,
                groups=pred_a[task]["patients"],
                confidence_level=config.confidence_level,
                n_resamples=config.bootstrap_resamples,
                seed=seed,
            )
            comparisons.append(
                ComparisonRow.from_comparison(
                    comparison,
                    task=task,
                    sampling=sampling,
                    train_fraction=fraction,
                    seed=seed,
                    model_a=a,
                    model_b=b,
                    n_test=len(refs),
                )
            )
    return rows, comparisons


def strategy_pairs(config: CompareConfig, runs: list[tuple[Cell, Path]]) -> list[tuple[str, str]]:
    """The pairs of strategies compared: ``config.comparisons``, or by default every pair in grid order."""
    order = {c.label: get_strategy(c.strategy).comparison_order for c, _ in runs}
    return [(a, b) for a, b in config.comparisons] or _default_pairs(order)


def _default_pairs(order: dict[str, int]) -> list[tuple[str, str]]:
    """Every pair of labels, each strategy against those of a higher comparison order (grid order within one)."""
    ordered = sorted(order, key=lambda label: order[label])
    return [(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :]]


def write_plots(out: Path, rows: list[Any], runs: list[tuple[Cell, Path]], grid: GridSection) -> list[Path]:
    from ..evaluation import aggregate_over_seeds, plot_auc_intervals, plot_roc_curves

    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    aggregates = aggregate_over_seeds(rows)
    written = []
    for task in sorted({r.task for r in rows}):
        fraction = max(grid.train_fractions)
        written.append(
            plot_auc_intervals(
                aggregates, plots / f"roc_auc_{task}.png", task=task, train_fraction=fraction
            ).path
        )
        curves = {}
        for cell, folder in runs:
            if (
                cell.seed == grid.seeds[0]
                and cell.sampling == grid.sampling[0]
                and cell.train_fraction == fraction
            ):
                path = RunFolder(folder).test_predictions_file
                if path.exists():
                    pred = read_predictions(path).get(task)
                    if pred is not None and np.ndim(pred["probs"]) == 1:
                        curves[cell.label] = (pred["labels"].astype(int), pred["probs"])
        if curves:
            written.append(
                plot_roc_curves(curves, plots / f"roc_curves_{task}.png", title=f"ROC curves: {task}").path
            )
    return [Path(p) for p in written]


def compare(config: CompareConfig, base: dict[str, Any], *, workers: int = 1) -> str:
    """Run the grid (``workers`` runs at a time), write tables, plots and ``compare_info.json``; return
    the terminal table."""
    from ..evaluation import render_text, write_results

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runs, timings = run_grid(config, base, workers=workers)
    grid_seconds = time.perf_counter() - started
    if config.grid.folds > 1:  # one pooled test set per cell: the union of its folds' test patients
        runs = pooled_runs(runs, out, config)
    rows, comparisons = collect_results(config, runs)
    if not rows:
        raise GridRunError(f"{out}: no run produced test metrics; see the runs' logs")
    write_results(out, rows, comparisons, title=f"Results: {out.name}")
    plots = write_plots(out, rows, runs, config.grid)
    study = low_data_section(config, runs, strategy_pairs(config, runs))
    if study is not None:
        with (out / "results.md").open("a") as handle:
            handle.write("\n## Low-data study (test split)\n\n" + study.markdown + "\n")
    every = task_results_section(config, runs, strategy_pairs(config, runs), comparisons)
    if every is not None:
        with (out / "results.md").open("a") as handle:
            handle.write("\n## Every task and metric (test split)\n\n" + every + "\n")
    warnings = sorted(
        {w for _, folder in runs for w in RunFolder(folder).read_run_info().get("warnings") or []}
    )
    if warnings:
        with (out / "results.md").open("a") as handle:
            handle.write("\n## Warnings\n\n" + "".join(f"- {w}\n" for w in warnings))
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
    attention = attention_table(config, runs) if config.attention else None
    if attention is not None:
        with (out / "results.md").open("a") as handle:
            handle.write("\n## Attention inside the lesion (test split)\n\n" + attention + "\n")
    info = {
        "config": to_dict(config),
        "runs": [str(folder) for _, folder in runs],
        "split_manifest_hashes": sorted({_split_hash(folder) or "" for _, folder in runs}),
        "packages": package_versions(),
        "git_revision": git_revision(),
        "plots": [str(p) for p in plots],
        "timing": {
            "workers": workers,
            "grid_wall_seconds": round(grid_seconds, 2),
            "report_wall_seconds": round(time.perf_counter() - started - grid_seconds, 2),
            "runs": _run_timings(out / "compare_info.json", runs, timings),
        },
    }
    (out / "compare_info.json").write_text(json.dumps(info, indent=2, default=str))
    text = render_text(rows, comparisons)
    if study is not None:
        text = f"{text}\n\n{study.text}"
    return text if every is None else f"{text}\n\nEvery task and metric (test split)\n{every}"


def attention_table(config: CompareConfig, runs: list[tuple[Cell, Path]]) -> str | None:
    """Attention localization of each strategy's best model on the test split (see ``CompareConfig``);
    ``None`` when the data carry no lesion masks. Writes ``attention_localization.{csv,md}``."""
    from transformers import AutoModel

    from ..explain import attention_localization, localization_markdown, write_localization_table
    from ..explain.run_data import split_loader

    grid = config.grid
    chosen = [
        (cell, folder)
        for cell, folder in runs
        if cell.seed == grid.seeds[0]
        and cell.sampling == grid.sampling[0]
        and cell.train_fraction == max(grid.train_fractions)
        and RunFolder(folder).has_best_model()
    ]
    if not chosen:
        return None
    models = {cell.label: AutoModel.from_pretrained(RunFolder(folder).best_model) for cell, folder in chosen}
    loader = split_loader(chosen[0][1], next(iter(models.values())), split="test")
    try:
        rows = attention_localization(
            models, loader, n_resamples=config.bootstrap_resamples, confidence=config.confidence_level
        )
    except ValueError as exc:  # no lesion masks in this data
        print(f"attention localization skipped: {exc}")
        return None
    write_localization_table(rows, config.output_dir)
    return localization_markdown(rows)


def _run_timings(
    info_path: Path, runs: list[tuple[Cell, Path]], timings: list[JobTiming]
) -> list[dict[str, Any]]:
    """Wall and CPU time of every run: of this call's runs, and from the previous ``compare_info.json``
    for runs trained by an earlier call (and skipped now)."""
    known: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        known = {r["output_dir"]: r for r in json.loads(info_path.read_text())["timing"]["runs"]}
    known.update({t.output_dir: dataclasses.asdict(t) for t in timings})
    return [known[str(folder)] for _, folder in runs if str(folder) in known]


def _split_hash(folder: Path) -> str | None:
    return RunFolder(folder).read_run_info().get("split_manifest_hash")


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result
