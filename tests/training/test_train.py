"""End-to-end training on generated data: strategies, outputs, resume, config errors, non-finite losses."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModel

from mtl_hf.cli import main as cli_main
from mtl_hf.options import OptionsError, from_dict
from mtl_hf.train import train
from mtl_hf.training.checkpointing import RunFolderError, list_checkpoints
from mtl_hf.training.config import RunConfig, load_config
from mtl_hf.training.metrics_log import read_metrics
from tests.training.synthetic import base_config, collate, make_data

REPO = Path(__file__).resolve().parents[2]


def run_config(tmp_path: Path, **training) -> RunConfig:
    return from_dict(RunConfig, base_config(str(tmp_path / "run"), **training))


@pytest.mark.parametrize("strategy", ["stl", "pretrain", "mtl"])
def test_each_strategy_trains_and_writes_its_outputs(tmp_path: Path, strategy: str) -> None:
    torch.set_num_threads(1)
    out = train(run_config(tmp_path, strategy=strategy), make_data()).output_dir
    model = AutoModel.from_pretrained(out / "best_model")
    assert AutoImageProcessor.from_pretrained(out / "best_model").num_channels == 1
    expected_tasks = {"tumour"} if strategy == "stl" else {"tumour", "mim"}
    assert set(model.config.tasks) == expected_tasks
    rows = list(read_metrics(out / "metrics.jsonl"))
    train_rows = [r for r in rows if r["split"] == "train"]
    val_rows = [r for r in rows if r["split"] == "val"]
    phases = [r["phase"] for r in val_rows]
    if strategy == "pretrain":
        assert phases == ["pretrain", "finetune", "finetune"]
        assert "loss/tumour" not in train_rows[0] and "loss/mim" in train_rows[0]
        assert "mse/mim" in val_rows[0] and "roc_auc/tumour" not in val_rows[0]
    else:
        assert phases == ["joint", "joint"] if strategy == "mtl" else ["finetune", "finetune"]
        assert all("roc_auc/tumour" in r for r in val_rows)
    assert [r["step"] for r in train_rows] == list(range(1, len(train_rows) + 1))  # 3 steps per epoch
    selection = json.loads((out / "best_model" / "selection.json").read_text())
    best_val = max(r["roc_auc/tumour"] for r in val_rows if "roc_auc/tumour" in r)
    assert selection["metric"] == "roc_auc" and selection["value"] == pytest.approx(best_val)
    test = json.loads((out / "test_metrics.json").read_text())
    t = test["tumour"]
    assert (
        t["roc_auc_low"] <= t["roc_auc"] <= t["roc_auc_high"] and t["n_samples"] == 12 and t["n_groups"] == 3
    )
    assert {"roc_auc_delong_low", "pr_auc", "sensitivity", "specificity", "threshold"} <= set(t)
    preds = (out / "test_predictions.csv").read_text().splitlines()
    assert len(preds) == 1 + 12
    info = json.loads((out / "run_info.json").read_text())
    assert info["seed"] == 0 and info["packages"]["torch"] and info["split_manifest_hash"] == "synthetic"
    assert yaml.safe_load((out / "config.yaml").read_text())["training"]["strategy"] == strategy
    assert json.loads((out / "trainer_state.json").read_text())["finished"] is True
    assert len(list_checkpoints(out)) == 2  # keep_checkpoints
    from mtl_hf.training.plots import curves

    plotted = curves(out / "metrics.jsonl")
    assert plotted["train"]["loss"][1] == [r["loss"] for r in train_rows]
    assert (out / "plots" / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pretrain_starts_finetuning_from_the_pretrained_backbone(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = train(
        run_config(tmp_path, strategy="pretrain", epochs=1, pretrain_epochs=2), make_data()
    ).output_dir
    rows = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]
    lrs = [r["lr"] for r in rows]
    # the schedule restarts: warm-up at the first fine-tuning step again
    assert lrs[6] < lrs[5] or lrs[6] == pytest.approx(lrs[0])


def test_finished_runs_are_not_overwritten_and_locks_are_honoured(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = run_config(tmp_path, epochs=1, strategy="stl")
    train(config, make_data())
    with pytest.raises(RunFolderError, match="holds a finished run; pass --overwrite"):
        train(config, make_data())
    lock = Path(config.output_dir) / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock.write_text(json.dumps({"host": os.uname().nodename, "pid": holder.pid}))
        with pytest.raises(RunFolderError, match=f"in use by another run .*pid {holder.pid}"):
            train(config, make_data(), overwrite=True)
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and taken over
    train(config, make_data(), overwrite=True)
    assert not lock.exists()


def test_config_errors_name_the_key(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(base_config(str(tmp_path / "run"))))
    with pytest.raises(OptionsError, match=r"c\.yaml: training\.epochz: unknown key"):
        load_config(path, ["training.epochz=3"])
    with pytest.raises(OptionsError, match="optimizer.lr: expected a number, got str 'fast'"):
        load_config(path, ["--optimizer.lr", "fast"])
    with pytest.raises(OptionsError, match="training.strategy: must be one of 'stl', 'pretrain', 'mtl'"):
        load_config(path, ["training.strategy=joint"])
    config = load_config(path, ["--optimizer.lr", "3e-4", "training.batch_size=4"])
    assert config.optimizer.lr == 3e-4 and config.training.batch_size == 4
    assert cli_main(["train", str(path), "--training.batch_size", "0"]) == 2
    assert "training: batch_size must be at least 1, got 0" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("training: [1, 2\n")
    with pytest.raises(OptionsError, match=r"bad\.yaml: not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def _synthetic_cmd(config_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tests.training.synthetic", str(config_path), *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def train_losses(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]


def test_killed_run_resumes_to_identical_losses_and_weights(tmp_path: Path) -> None:
    cfg = base_config(str(tmp_path / "full"), epochs=3, save_every_steps=2, keep_checkpoints=10)
    full_yaml = tmp_path / "full.yaml"
    full_yaml.write_text(yaml.safe_dump(cfg))
    subprocess.run(_synthetic_cmd(full_yaml), check=True, cwd=REPO, env=_env(), capture_output=True)
    total_steps = len(train_losses(tmp_path / "full"))  # 3 epochs of 3 steps, checkpoints at 2, 3, 4, 6...

    # The run SIGKILLs itself right after logging a step drawn at random between the first checkpoint
    # (step 2) and the last step (tests.reliability.chaos_run's `step` kill point): the kill lands there
    # however fast or loaded the machine is.
    kill_step = random.Random(14).randint(3, total_steps - 1)
    cfg["output_dir"] = str(tmp_path / "killed")
    killed_yaml = tmp_path / "killed.yaml"
    killed_yaml.write_text(yaml.safe_dump(cfg))
    killed = subprocess.run(
        [sys.executable, "-m", "tests.reliability.chaos_run", str(killed_yaml)],
        cwd=REPO,
        env={**_env(), "MTL_HF_KILLPOINT": f"step:{kill_step}"},
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, (kill_step, killed.stdout[-2000:], killed.stderr[-3000:])
    assert "chaos_run: killing myself" in killed.stdout
    assert train_losses(tmp_path / "killed")[-1][0] == kill_step
    assert list_checkpoints(tmp_path / "killed") and not (tmp_path / "killed" / "trainer_state.json").exists()
    resumed = subprocess.run(
        _synthetic_cmd(killed_yaml, "--resume"), cwd=REPO, env=_env(), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout  # from a checkpoint of the killed run, not from scratch
    assert train_losses(tmp_path / "killed") == train_losses(tmp_path / "full"), kill_step
    last_full = list_checkpoints(tmp_path / "full")[-1]
    last_resumed = list_checkpoints(tmp_path / "killed")[-1]
    assert last_full.name == last_resumed.name
    a, b = load_file(last_full / "model.safetensors"), load_file(last_resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert json.loads((tmp_path / "killed" / "test_metrics.json").read_text()) == json.loads(
        (tmp_path / "full" / "test_metrics.json").read_text()
    )


@pytest.mark.parametrize(
    "weighting",
    [{"type": "uncertainty"}, {"type": "pcgrad"}, {"type": "mgda", "gradients": "features"}, {"type": "dwa"}],
)
def test_adaptive_weighters_train_through_the_same_loop(tmp_path: Path, weighting: dict) -> None:
    torch.set_num_threads(1)
    raw = base_config(str(tmp_path / "run"), strategy="mtl", epochs=3)
    raw["model"]["weighting"] = weighting
    result = train(from_dict(RunConfig, raw), make_data())
    rows = [r for r in read_metrics(result.output_dir / "metrics.jsonl") if r["split"] == "train"]
    weights = [(r["weight/tumour"], r["weight/mim"]) for r in rows]
    assert all(w > 0 for pair in weights for w in pair)
    if weighting["type"] != "dwa":  # DWA keeps equal weights until it has two epochs of history
        assert len(set(weights)) > 1, "the weights should adapt during training"
    assert (result.output_dir / "plots" / "task_weights.png").stat().st_size > 1000
    reloaded = AutoModel.from_pretrained(result.output_dir / "best_model")
    assert reloaded.config.weighting["type"] == weighting["type"]


def test_mae_task_trains_and_is_validated_with_seeded_masks(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    raw = base_config(str(tmp_path / "run"), strategy="mtl", epochs=2)
    raw["model"]["tasks"]["mim"] = {"type": "mae", "mask_ratio": 0.75}
    out = train(from_dict(RunConfig, raw), make_data()).output_dir
    val = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "val"]
    assert all("mse/mim" in r and r["mse/mim"] > 0 for r in val)
    assert AutoModel.from_pretrained(out / "best_model").config.tasks["mim"]["type"] == "mae"


def test_bf16_accumulation_and_early_stopping_come_from_config_and_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    monkeypatch.setenv(
        "ACCELERATE_MIXED_PRECISION", "bf16"
    )  # what `accelerate launch --mixed_precision bf16` sets
    config = run_config(
        tmp_path, strategy="stl", epochs=6, gradient_accumulation_steps=2, early_stopping_patience=1
    )
    result = train(config, make_data(n_train=32))
    rows = list(read_metrics(result.output_dir / "metrics.jsonl"))
    train_rows = [r for r in rows if r["split"] == "train"]
    val_rows = [r for r in rows if r["split"] == "val"]
    # 32 samples / batch 8 = 4 micro-batches = 2 optimizer steps per epoch
    assert [r["step"] for r in val_rows] == [2 * (i + 1) for i in range(len(val_rows))]
    assert result.state.stopped_early == (len(val_rows) < 6)
    aucs = [r["roc_auc/tumour"] for r in val_rows]
    if result.state.stopped_early:  # stopped at the first evaluation that did not improve
        assert aucs[-1] <= max(aucs[:-1])
    assert all(math.isfinite(r["loss"]) for r in train_rows)
    assert all(p.dtype == torch.float32 for p in result.model.parameters())  # autocast, fp32 weights


def test_weighters_that_ask_get_the_steps_losses_after_the_update(tmp_path: Path) -> None:
    """A weighter with ``needs_losses_after_step`` (FAMO's ``same_batch``) gets each step's
    micro-batches re-evaluated with the updated weights: with 8 samples, micro-batches of 4 and
    accumulation 2, a step covers every sample, so the last step's losses after the update are the
    final model's mean classification loss on the whole training set (the clean view: no mask)."""
    import torch.nn.functional as F

    from mtl_hf.weighting import WEIGHTERS
    from mtl_hf.weighting.fixed import FixedWeights

    calls: list[tuple[dict, dict]] = []

    @WEIGHTERS.register("test_after_step")
    class AfterStep(FixedWeights):
        needs_losses_after_step = True

        def on_step_end(self, losses):
            calls.append((dict(losses), {}))

        def on_losses_after_step(self, losses):
            calls[-1][1].update(losses)

    torch.set_num_threads(1)
    raw = base_config(
        str(tmp_path / "run"), strategy="mtl", epochs=2, batch_size=4, gradient_accumulation_steps=2
    )
    raw["model"]["weighting"] = {"type": "test_after_step"}
    data = make_data(n_train=8)
    result = train(from_dict(RunConfig, raw), data)
    assert len(calls) == 2 and all(set(before) == set(after) == {"tumour", "mim"} for before, after in calls)
    model = result.model  # holds the best model's weights now: take the last step's from its checkpoint
    model.load_state_dict(load_file(list_checkpoints(result.output_dir)[-1] / "model.safetensors"))
    batch = collate([data.train[i] for i in range(8)])
    with torch.no_grad():
        logits = model.train()(batch["pixel_values"]).logits["tumour"]
    expected = F.binary_cross_entropy_with_logits(logits, batch["labels"]["tumour"]).item()
    assert calls[-1][1]["tumour"] == pytest.approx(expected, rel=1e-5)
    assert calls[-1][1]["tumour"] != pytest.approx(calls[-1][0]["tumour"], rel=1e-6)  # after != before
