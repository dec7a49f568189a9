"""predict under two real processes (torchrun, gloo on the CPU): files split, results and the files that
could not be read gathered in order."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtl_hf.inference import predict
from tests.inference.conftest import save_model

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from accelerate import PartialState
    from mtl_hf.inference import predict

    folder = Path(sys.argv[1])
    state = PartialState(cpu=True)  # two gloo processes on a machine without GPU
    result = predict(folder / "model", [folder / "imgs"], output_dir=folder / "out", batch_size=2, progress=False)
    line = f"{state.process_index} {state.num_processes} {len(result.images)}"
    (folder / f"rank{state.process_index}.txt").write_text(line)  # stdout of the two processes interleaves
    """
)


@pytest.mark.slow
def test_two_processes_split_and_gather(tmp_path: Path) -> None:
    save_model(tmp_path / "model", {"tumour": {"type": "binary_classification"}})
    (tmp_path / "imgs").mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    for i in (1, 4):  # two bad files, one read by each process: both named in errors.csv
        data = (tmp_path / "imgs" / f"{i}.png").read_bytes()
        (tmp_path / "imgs" / f"{i}_truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "run.py").write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
    ]
    done = subprocess.run(
        [*torchrun, str(tmp_path / "run.py"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert lines == ["0 2 5", "1 2 5"]  # every process holds all five, gathered
    single = predict(tmp_path / "model", [tmp_path / "imgs"], progress=False)
    assert [e.source for e in single.errors] == [
        str(tmp_path / "imgs" / f"{i}_truncated.png") for i in (1, 4)
    ]
    errors = (tmp_path / "out" / "errors.csv").read_text().splitlines()[1:]
    assert [e.split(",")[0] for e in errors] == [e.source for e in single.errors]
    rows = (tmp_path / "out" / "predictions.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == [p.source for p in single.images]
    for row, p in zip(rows, single.images, strict=True):
        assert float(row.split(",")[2]) == pytest.approx(float(p.predictions["tumour"][0]), rel=1e-5)
