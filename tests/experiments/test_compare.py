"""`mtl-hf compare` end to end on tiny demo data: runs, tables, paired tests, plots, restart."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from mtl_hf.evaluation import compare_scores
from mtl_hf.experiments.compare import CompareConfig, compare, read_predictions
from mtl_hf.experiments.demo import build, demo_run_config
from mtl_hf.options import from_dict


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    build(out, seed=0, brats_patients=10, ultrasound_patients=4)
    return out


def test_compare_grid_tables_paired_tests_and_restart(demo_data: Path, tmp_path: Path, capsys) -> None:
    torch.set_num_threads(1)
    base = demo_run_config("brats", demo_data)
    base["training"].update({"epochs": 1, "pretrain_epochs": 1, "batch_size": 16, "log_every_steps": 2})
    base["model"]["backbone_config"].update(
        {"hidden_size": 32, "num_hidden_layers": 1, "intermediate_size": 64}
    )
    base["cache_dir"] = str(tmp_path / "cache")
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
