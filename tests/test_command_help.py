"""``mtl-hf --help`` and every ``mtl-hf COMMAND --help`` load none of the heavy libraries, and the packages
whose public names load on first use still give the function, never a submodule of the same name."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mtl_hf.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets", "accelerate", "evaluate", "gradio", "onnx", "numpy")
LAZY_PACKAGES = (
    "mtl_hf",
    "mtl_hf.app",
    "mtl_hf.data",
    "mtl_hf.data.readers",
    "mtl_hf.explain",
    "mtl_hf.export",
    "mtl_hf.hub",
    "mtl_hf.inference",
)

HELP = """
import contextlib, io, sys
from mtl_hf.cli import main
shown = io.StringIO()
with contextlib.redirect_stdout(shown):
    try:
        code = main({argv!r})
    except SystemExit as exit:
        code = exit.code
print(code, sorted(m for m in {heavy!r} if m in sys.modules))
print(shown.getvalue())
"""


@pytest.mark.parametrize("argv", [["--help"], *([name, "--help"] for name in COMMANDS)], ids=" ".join)
def test_help_loads_no_heavy_library(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(HELP.format(argv=argv, heavy=HEAVY))],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    status, _, shown = done.stdout.partition("\n")
    assert status == "0 []", (status, done.stderr[-2000:])
    prog = "mtl-hf" if argv == ["--help"] else f"mtl-hf {argv[0]}"
    assert shown.startswith(f"usage: {prog}") and "options:" in shown


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_no_public_name_is_also_a_submodule(name: str) -> None:
    # A submodule, once imported, is bound on its package under its own name and would hide the lazy
    # public name (``mtl_hf.inference.predict`` must stay the function).
    package = importlib.import_module(name)
    submodules = {info.name for info in pkgutil.iter_modules(package.__path__)}
    assert set(package.__all__) & submodules == set()
    assert set(package.__all__) <= set(dir(package))


def test_public_functions_stay_functions_after_every_submodule_is_imported() -> None:
    import mtl_hf.app.analysis
    import mtl_hf.explain.explanation  # noqa: F401
    from mtl_hf.explain import explain
    from mtl_hf.explain.explanation import explain as explain_function
    from mtl_hf.inference import predict
    from mtl_hf.inference.prediction import predict as predict_function

    assert predict is predict_function and callable(predict)
    assert explain is explain_function and callable(explain)
    with pytest.raises(AttributeError, match="'mtl_hf.inference' has no attribute 'nothing'"):
        _ = importlib.import_module("mtl_hf.inference").nothing
