"""``mtl-hf``: an error we raise ends a command with one line and an exit code, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtl_hf.cli import main, one_line, run_command
from mtl_hf.data.errors import CacheWriteError, DataError
from mtl_hf.errors import MtlHfError, UsageError
from mtl_hf.explain.errors import ExplainError
from mtl_hf.export.onnx_export import ExportError
from mtl_hf.extras import MissingExtraError, import_extra
from mtl_hf.hub.folders import HubFolderError
from mtl_hf.hub.push import HubPushError
from mtl_hf.inference.errors import ModelNotFoundError, NotAnMtlModelError, PredictionError
from mtl_hf.options import OptionsError
from mtl_hf.registry import UnknownNameError
from mtl_hf.security import UnsafeCheckpointError
from mtl_hf.train import TrainingError
from mtl_hf.training.checkpointing import RunFolderError
from mtl_hf.training.faults import CheckpointWriteError, DataFaultError


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (OptionsError, ValueError),
        (DataError, ValueError),
        (CacheWriteError, OSError),
        (UnsafeCheckpointError, ValueError),
        (HubFolderError, ValueError),
        (HubPushError, RuntimeError),
        (UnknownNameError, KeyError),
        (RunFolderError, RuntimeError),
        (CheckpointWriteError, RuntimeError),
        (DataFaultError, RuntimeError),
        (TrainingError, RuntimeError),
        (PredictionError, ValueError),
        (NotAnMtlModelError, TypeError),
        (ModelNotFoundError, OSError),
        (ExportError, ValueError),
        (ExplainError, ValueError),
        (MissingExtraError, ImportError),
    ],
)
def test_every_error_derives_from_the_base_and_keeps_its_builtin(error: type, builtin: type) -> None:
    assert issubclass(error, MtlHfError) and issubclass(error, builtin)


def test_run_command_prints_one_line_and_the_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    def fails(error: Exception):
        def command(argv) -> int:
            raise error

        return command

    written = "/out/checkpoints/step-3:\n  model.safetensors (10 bytes)\nkept: step-2"
    assert run_command("train", fails(CheckpointWriteError(written)), []) == 1
    err = capsys.readouterr().err
    assert err == (
        "mtl-hf train: error: CheckpointWriteError: /out/checkpoints/step-3:; "
        "model.safetensors (10 bytes); kept: step-2\n"
    )
    assert run_command("train", fails(OptionsError("training.lr: expected a number")), []) == 2
    assert capsys.readouterr().err == "mtl-hf train: error: OptionsError: training.lr: expected a number\n"
    assert OptionsError.exit_code == UsageError.exit_code == 2 and DataError.exit_code == 1
    assert run_command("x", fails(FileNotFoundError(2, "No such file", "/a/b")), []) == 1
    assert "/a/b" in capsys.readouterr().err
    # anything else is a bug: its traceback is kept
    with pytest.raises(ZeroDivisionError):
        run_command("x", fails(ZeroDivisionError("bug")), [])
    assert one_line(DataError("/d/x.nii.gz", "truncated")) == "DataError: /d/x.nii.gz: truncated"


@pytest.fixture
def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    """A plain file where folders are expected, a model folder holding only a pickle, and a run config
    whose data folder does not exist."""
    a_file = tmp_path / "a_file.png"
    a_file.write_bytes(b"not an image")
    pickle_model = tmp_path / "pickle_model"
    pickle_model.mkdir()
    (pickle_model / "config.json").write_text('{"model_type": "mtl_vit"}')
    (pickle_model / "pytorch_model.bin").write_bytes(b"\x80\x04")
    run = {
        "output_dir": str(tmp_path / "run"),
        "model": {"tasks": {"tumour": {"type": "binary_classification"}}},
        "data": {"kind": "brats", "root": str(tmp_path / "no_such_data")},
        "task_columns": {"tumour": "tumour"},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    compare = {"output_dir": str(tmp_path / "cmp"), "base": "run.yaml", "grid": {"strategies": ["stl"]}}
    (tmp_path / "compare.yaml").write_text(yaml.safe_dump(compare))
    return {"file": a_file, "pickle_model": pickle_model, "run": tmp_path / "run.yaml", "tmp": tmp_path}


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["train", "{run}", "training.bogus=1"], 2, "training.bogus: unknown key"),
        (["compare", "{tmp}/compare.yaml"], 1, "DataError: {tmp}/no_such_data: data folder not found"),
        (
            ["predict", "{pickle_model}", "{file}", "-o", "{tmp}/p"],
            1,
            "UnsafeCheckpointError: {pickle_model}: no safetensors weights",
        ),
        (["explain", "{pickle_model}", "--images", "{file}", "-o", "{tmp}/e"], 1, "only pickle files"),
        (["push", "{file}", "me/model"], 2, "{file}: not a folder"),
        (["make-demo-data", "{file}/out"], 1, "NotADirectoryError"),
        (["demo", "--data", "{file}", "--out", "{tmp}/demo"], 1, "Not a directory: '{file}'"),
    ],
)
def test_each_command_names_the_bad_input_without_a_traceback(
    argv: list[str], code: int, message: str, bad_inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    names = {k: str(v) for k, v in bad_inputs.items()}
    assert main([a.format(**names) for a in argv]) == code
    err = capsys.readouterr().err
    assert message.format(**names) in err and "Traceback" not in err
    # One line of ours; a progress bar drawn before the error (compare's) is redrawn with '\r', not a line.
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    ours = [line for line in lines if not line.startswith("runs:")]
    assert len(ours) == 1, ours


@pytest.mark.parametrize("command", ["plugins"])
def test_commands_without_inputs_refuse_unknown_options(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--no-such-option"])
    assert info.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_compare_in_a_fresh_process_prints_no_traceback(bad_inputs: dict[str, Path]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mtl_hf.cli", "compare", str(bad_inputs["tmp"] / "compare.yaml")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"mtl-hf compare: error: DataError: {bad_inputs['tmp']}/no_such_data" in done.stderr


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny mtl-hf model (a binary task and MIM), one with only a MIM task, a plain transformers ViT
    and a PNG, saved once for the module."""
    import numpy as np
    from PIL import Image
    from transformers import ViTConfig, ViTModel

    from tests.conftest import tiny_backbone
    from tests.inference.conftest import save_model

    root = tmp_path_factory.mktemp("cli_models")
    png = root / "slice.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(png)
    backbone = {k: v for k, v in tiny_backbone().items() if k != "model_type"}
    ViTModel(ViTConfig(**backbone)).save_pretrained(root / "plain_vit")
    return {
        "model": save_model(
            root / "model", {"tumour": {"type": "binary_classification"}, "mim": {"type": "mim"}}
        ),
        "mim_only": save_model(root / "mim_only", {"mim": {"type": "mim"}}),
        "vit": root / "plain_vit",
        "png": png,
    }


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ["predict", "{model}", "{png}", "--task", "nosuch", "-o", "{out}"],
            2,
            "mtl-hf predict: error: PredictionError: no task named 'nosuch'; the model's tasks are tumour, mim",
        ),
        (
            ["predict", "{model}", "{png}", "--batch-size", "0", "-o", "{out}"],
            2,
            "PredictionError: batch size must be at least 1, got 0",
        ),
        (
            ["predict", "{tmp}/no_such_model", "{png}", "-o", "{out}"],
            1,
            "ModelNotFoundError: {tmp}/no_such_model: not a folder here, and the Hub did not give it",
        ),
        (
            ["export", "{model}", "-o", "{out}", "--task", "mim"],
            2,
            "mtl-hf export: error: ExportError: task 'mim' reads the masked view",
        ),
        (
            ["export", "{model}", "-o", "{out}", "--opset", "3"],
            2,
            "ExportError: opset 3: torch's ONNX exporter writes opsets",
        ),
        (
            ["explain", "{model}", "--images", "{png}", "-o", "{out}", "--mass", "2"],
            2,
            "mtl-hf explain: error: ExplainError: mass must be in (0, 1], got 2.0",
        ),
        (
            ["explain", "{model}", "--images", "{png}", "-o", "{out}", "--mim-task", "nosuch"],
            2,
            "ExplainError: no model has a masked-image-modeling task named 'nosuch' (their tasks: model: tumour, mim)",
        ),
        (
            ["explain", "{vit}", "--images", "{png}", "-o", "{out}"],
            1,
            "NotAnMtlModelError: {vit}: expected an mtl-hf model (model_type 'mtl_vit'), got ViTModel",
        ),
        (  # refused before any server starts
            ["app", "{mim_only}"],
            2,
            "mtl-hf app: error: PredictionError: the model has no task that gives per-sample predictions or "
            "segmentation masks; its tasks are mim",
        ),
        (["app", "{tmp}/no_such_model"], 1, "ModelNotFoundError: {tmp}/no_such_model: not a folder here"),
    ],
)
def test_model_commands_name_the_bad_value_in_one_line(
    argv: list[str],
    code: int,
    message: str,
    models: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = {k: str(v) for k, v in models.items()} | {"tmp": str(tmp_path), "out": str(tmp_path / "out")}
    assert main([a.format(**names) for a in argv]) == code
    err = capsys.readouterr().err
    assert message.format(**names) in err and "Traceback" not in err
    # one line of ours; transformers' "Loading weights" bar is redrawn with '\r' before it, not a line of ours
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert len([line for line in lines if not line.startswith("Loading weights")]) == 1, err
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("argv", "module", "extra"),
    [(["app", "{model}"], "gradio", "app"), (["export", "{model}", "-o", "{out}"], "onnx", "onnx")],
)
def test_a_missing_optional_package_names_its_install_line(
    argv: list[str],
    module: str,
    extra: str,
    models: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import gradio` now fails as where it is not installed
    names = {"model": str(models["model"]), "out": str(tmp_path / "out")}
    assert main([a.format(**names) for a in argv]) == 1
    err = capsys.readouterr().err
    assert "error: MissingExtraError: " in err and f"needs {module} (" in err
    assert err.rstrip().endswith(f'pip install "mtl-hf[{extra}]"') and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_missing_extra_error_is_an_import_error_that_crosses_processes() -> None:
    import pickle

    with pytest.raises(ImportError) as info:
        import_extra("mtl_hf_no_such_package.sub", feature="the test feature", extra="dev")
    error = info.value
    assert isinstance(error, MissingExtraError) and error.name == "mtl_hf_no_such_package"
    assert str(error) == (
        "the test feature needs mtl_hf_no_such_package (No module named 'mtl_hf_no_such_package'): "
        'pip install "mtl-hf[dev]"'
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is MissingExtraError and str(copy) == str(error) and copy.extra == "dev"
