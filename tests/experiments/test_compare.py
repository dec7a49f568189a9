"""`mtl-hf compare` end to end on tiny demo data: runs, tables, paired tests, plots, restart."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mtl_hf.evaluation import compare_scores, group_resamples
from mtl_hf.experiments.compare import CompareConfig, compare, read_predictions
from mtl_hf.experiments.demo import build, demo_run_config
from mtl_hf.options import from_dict


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    build(out, seed=0, brats_patients=16, ultrasound_patients=4)
    return out


def tiny_base(demo_data: Path, cache: Path) -> dict:
    """The demo's training config, shrunk: one epoch of a one-layer ViT, 8 / 3 / 5 patients."""
    base = demo_run_config("brats", demo_data)
    base["training"].update({"epochs": 1, "pretrain_epochs": 1, "batch_size": 16, "log_every_steps": 2})
    base["model"]["backbone_config"].update(
        {"hidden_size": 32, "num_hidden_layers": 1, "intermediate_size": 64}
    )
    base["data"]["split"] = {"train": 0.5, "validation": 0.2, "test": 0.3}
    base["cache_dir"] = str(cache)
    return base


def test_compare_grid_tables_paired_tests_and_restart(demo_data: Path, tmp_path: Path, capsys) -> None:
    torch.set_num_threads(1)
    base = tiny_base(demo_data, tmp_path / "cache")
    config = from_dict(
        CompareConfig,
        {
            "output_dir": str(tmp_path / "cmp"),
            "grid": {"strategies": ["stl", "mtl"], "sampling": ["all", "undersample"], "seeds": [0]},
            "bootstrap_resamples": 200,
        },
    )
    table = compare(config, base)
    out = tmp_path / "cmp"
    assert "MTL vs STL" in table and "Strategy" in table
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {(r["strategy"], r["sampling"]) for r in rows} == {
        ("stl", "all"), ("stl", "undersample"), ("mtl", "all"), ("mtl", "undersample"),
    }  # fmt: skip
    for r in rows:
        metrics = json.loads((Path(r["run_dir"]) / "test_metrics.json").read_text())["tumour"]
        assert float(r["roc_auc"]) == pytest.approx(metrics["roc_auc"])
        assert float(r["low"]) <= float(r["roc_auc"]) <= float(r["high"])
    # the paired test in comparisons.csv is the one computed from the two runs' predictions
    comp = next(
        r for r in csv.DictReader((out / "comparisons.csv").open())
        if r["model_a"] == "mtl" and r["model_b"] == "stl" and r["sampling"] == "all"
    )  # fmt: skip
    a = read_predictions(out / "runs" / "mtl_all_f1_s0" / "test_predictions.csv")["tumour"]
    b = read_predictions(out / "runs" / "stl_all_f1_s0" / "test_predictions.csv")["tumour"]
    assert list(a["ids"]) == list(b["ids"])  # same test set
    ref = compare_scores(
        a["labels"].astype(int), a["probs"], b["probs"], groups=a["patients"], n_resamples=200
    )
    assert float(comp["delta"]) == pytest.approx(ref.difference)
    assert float(comp["delong_p"]) == pytest.approx(ref.delong.p_value, nan_ok=True)
    md = (out / "results.md").read_text()
    assert "## Attention inside the lesion" in md  # the BraTS demo slices carry tumour masks
    loc = list(csv.DictReader((out / "attention_localization.csv").open()))
    assert {r["model"] for r in loc} >= {"stl", "mtl"}
    assert "| STL | All data |" in md and "| MTL | Under sampled |" in md
    assert (out / "plots" / "roc_auc_tumour.png").stat().st_size > 1000
    info = json.loads((out / "compare_info.json").read_text())
    assert len(info["split_manifest_hashes"]) == 1 and info["packages"]["mtl-hf"]
    capsys.readouterr()
    compare(config, base)  # restart: nothing is trained again
    printed = capsys.readouterr().out
    assert printed.count("finished earlier, skipped") == 4


def test_low_data_study_with_two_workers(demo_data: Path, tmp_path: Path) -> None:
    """Two fractions x two seeds x two strategies trained by two worker processes; the study pools the
    seeds: each point is the mean of its runs' test AUCs, each difference the difference of the means."""
    base = tiny_base(demo_data, tmp_path / "cache")
    grid = {"strategies": ["stl", "mtl"], "train_fractions": [0.5, 1.0], "seeds": [0, 1]}
    config = from_dict(
        CompareConfig,
        {"output_dir": str(tmp_path / "cmp"), "grid": grid, "bootstrap_resamples": 200, "attention": False},
    )
    table = compare(config, base, workers=2)
    out = tmp_path / "cmp"
    assert "Low-data study, task: tumour" in table and "MTL − STL:" in table
    results = list(csv.DictReader((out / "results.csv").open()))
    points = list(csv.DictReader((out / "low_data.csv").open()))
    assert {(p["model"], float(p["train_fraction"])) for p in points} == {
        (m, f) for m in ("stl", "mtl") for f in (0.5, 1.0)
    }
    mean_auc = {}
    for p in points:
        runs = [
            r for r in results if (r["strategy"], r["train_fraction"]) == (p["model"], p["train_fraction"])
        ]
        aucs = []
        for r in runs:  # each seed's AUC recomputed from its predictions
            pred = read_predictions(Path(r["run_dir"]) / "test_predictions.csv")["tumour"]
            aucs.append(roc_auc_score(pred["labels"], pred["probs"]))
        assert len(aucs) == 2 and float(p["roc_auc"]) == pytest.approx(np.mean(aucs))
        assert float(p["low"]) <= float(p["roc_auc"]) <= float(p["high"])
        assert int(p["n_train_patients"]) == (8 if p["train_fraction"] == "1.0" else 4)
        mean_auc[(p["model"], p["train_fraction"])] = np.mean(aucs)
    for d in csv.DictReader((out / "low_data_differences.csv").open()):
        assert (d["model_a"], d["model_b"]) == ("mtl", "stl")
        expected = mean_auc[("mtl", d["train_fraction"])] - mean_auc[("stl", d["train_fraction"])]
        assert float(d["delta"]) == pytest.approx(expected)
    md = (out / "results.md").read_text()
    assert "## Low-data study (test split)" in md and "### What the data show" in md
    assert (out / "plots" / "low_data_tumour.png").stat().st_size > 1000
    timing = json.loads((out / "compare_info.json").read_text())["timing"]
    assert timing["workers"] == 2 and len(timing["runs"]) == 8
    assert all(r["cpu_seconds"] > 0 and r["wall_seconds"] > 0 for r in timing["runs"])


def test_cross_validation_pools_the_folds_test_predictions(demo_data: Path, tmp_path: Path) -> None:
    """grid.folds: 3 folds per cell; each patient tested by exactly one fold; the pooled predictions are
    the union of the folds'; the paired test in comparisons.csv is the one computed on that union."""
    torch.set_num_threads(1)
    base = tiny_base(demo_data, tmp_path / "cache")
    grid = {"strategies": ["stl", "mtl"], "seeds": [0], "folds": 3}
    config = from_dict(
        CompareConfig,
        {"output_dir": str(tmp_path / "cv"), "grid": grid, "bootstrap_resamples": 200, "attention": False},
    )
    compare(config, base)
    out = tmp_path / "cv"
    manifests = [json.loads((out / "folds" / f"fold-{j}-of-3.json").read_text())["splits"] for j in range(3)]
    tested = [set(m["test"]) for m in manifests]
    assert sum(len(t) for t in tested) == len(set().union(*tested)) == 16  # each patient tested once
    for j, m in enumerate(manifests):
        assert m["validation"] == manifests[(j + 1) % 3]["test"]
        assert not set(m["train"]) & (set(m["test"]) | set(m["validation"]))
    pooled = {}
    for strategy in ("stl", "mtl"):
        rows = []
        for j in range(3):
            with (out / "runs" / f"{strategy}_all_f1_s0_k{j}" / "test_predictions.csv").open() as handle:
                fold_rows = list(csv.DictReader(handle))
            assert {r["patient_id"] for r in fold_rows} == tested[j]  # fold j's model tests fold j
            rows += fold_rows
        with (out / "pooled" / f"{strategy}_all_f1_s0" / "test_predictions.csv").open() as handle:
            assert sorted(map(tuple, (r.values() for r in csv.DictReader(handle)))) == sorted(
                map(tuple, (r.values() for r in rows))
            )
        pooled[strategy] = read_predictions(
            out / "pooled" / f"{strategy}_all_f1_s0" / "test_predictions.csv"
        )["tumour"]
    a, b = pooled["mtl"], pooled["stl"]
    order = [list(b["ids"]).index(i) for i in a["ids"]]
    labels, pa, pb = a["labels"].astype(int), a["probs"], b["probs"][order]
    result = {r["strategy"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert float(result["mtl"]["roc_auc"]) == pytest.approx(roc_auc_score(labels, pa))
    assert float(result["stl"]["roc_auc"]) == pytest.approx(roc_auc_score(b["labels"], b["probs"]))
    assert int(result["mtl"]["n_test"]) == len(labels) and int(result["mtl"]["n_patients"]) == 16
    comp = next(csv.DictReader((out / "comparisons.csv").open()))
    assert (comp["model_a"], comp["model_b"]) == ("mtl", "stl")
    assert float(comp["delta"]) == pytest.approx(roc_auc_score(labels, pa) - roc_auc_score(labels, pb))
    # the paired bootstrap by hand: patients drawn with replacement, sklearn's weighted AUC per draw
    codes = {p: i for i, p in enumerate(dict.fromkeys(a["patients"]))}
    sample_codes = np.array([codes[p] for p in a["patients"]])
    deltas = []
    for block in group_resamples(len(codes), 200, 0):
        for counts in block:
            w = counts[sample_codes]
            if len(np.unique(labels[w > 0])) == 2:
                deltas.append(
                    roc_auc_score(labels, pa, sample_weight=w) - roc_auc_score(labels, pb, sample_weight=w)
                )
    low, high = np.quantile(deltas, [0.025, 0.975])
    assert (float(comp["bootstrap_low"]), float(comp["bootstrap_high"])) == pytest.approx((low, high))
    p = min(1.0, 2 * min(np.mean(np.array(deltas) <= 0), np.mean(np.array(deltas) >= 0)))
    assert float(comp["bootstrap_p"]) == pytest.approx(p)
    delong = compare_scores(labels, pa, pb, groups=a["patients"], n_resamples=0).delong
    assert float(comp["delong_p"]) == pytest.approx(delong.p_value)
