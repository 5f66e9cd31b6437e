"""Where training figures go: the `MetricLogger` protocol and the default JSONL history.

A logger receives flat dicts of numbers keyed by optimizer step (`MetricLogging` in
`liftkit.callbacks` decides what and when). TensorBoard or MLflow loggers implement the same three
methods; torchtune's `MetricLoggerInterface` is the model, kept smaller.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Protocol, TextIO


class MetricLogger(Protocol):
    def start(self, step: int) -> None:
        """Called once before training; `step` is the optimizer steps already taken (non-zero when
        resuming): anything logged after it belongs to the interrupted attempt and is dropped."""

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Record `metrics` (numbers) as of optimizer step `step`."""

    def close(self) -> None:
        """Flush and release whatever the logger holds."""


class JsonlLogger:
    """One JSON object per line in `path` (RUN_DIR/history.jsonl): the run's per-step history,
    readable with nothing but `json`. Lines are flushed as they are written, so a killed run keeps
    what it logged; a resumed run first drops the lines past its checkpoint."""

    def __init__(self, path: Path):
        self.path = path
        self._file: TextIO | None = None

    def start(self, step: int) -> None:
        kept = []
        if step and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines() if _step_of(line) <= step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)
        self._file = self.path.open("a", encoding="utf-8")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self._file is None:
            raise RuntimeError("JsonlLogger.log called before start()")
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        self._file.write(json.dumps({"step": step, **clean}) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _step_of(line: str) -> float:
    """A history line's step; infinite (dropped on resume) for a line a kill cut short."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf
