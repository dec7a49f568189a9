"""``metrics.jsonl``: one JSON object per logged event, appended and flushed, readable while training."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..atomic import open_append, write_text
from ..run_folder import RunFolder

METRICS_FILE = RunFolder.METRICS


class MetricsLog:
    """Append-only JSONL log; on resume, rows beyond the resumed step are dropped so the log stays true."""

    def __init__(self, output_dir: str | Path, enabled: bool = True) -> None:
        self.path = RunFolder(output_dir).metrics_file
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """Keep only rows with ``step <= step`` (called when resuming from a checkpoint at ``step``)."""
        if not self.enabled or not self.path.exists():
            return
        kept = [row for row in read_metrics(self.path, skip_torn_tail=True) if row.get("step", 0) <= step]
        write_text(self.path, "".join(json.dumps(row) + "\n" for row in kept))

    def write(self, row: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: _jsonable(v) for k, v in row.items()}
        with open_append(self.path) as handle:
            handle.write(json.dumps(clean) + "\n")
            handle.flush()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them visible as strings
    return value


def read_metrics(path: str | Path, *, skip_torn_tail: bool = False) -> Iterator[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file.

    Args:
        skip_torn_tail: Ignore a last line cut short (a disk that filled up while it was appended), as
            resuming does; otherwise it raises ``ValueError`` naming the file and line.
    """
    with Path(path).open() as handle:
        lines = [line.strip() for line in handle if line.strip()]
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if skip_torn_tail and number == len(lines):
                return
            raise ValueError(f"{path}: line {number} is not JSON ({exc})") from exc
        yield row
