"""What the accuracy benchmarks share: liftkit's default runs trained once and reused, and the
mean ± std cell of their tables. Not a benchmark itself."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import yaml

from liftkit import run_dir
from liftkit.config import load_config
from liftkit.record import RunRecord
from liftkit.runner import run_child


def reused_run(folder: Path, overrides: dict[str, Any]) -> RunRecord:
    """The record of the `lift run` that `overrides` describe, in `folder`: read when that folder
    holds it finished, resumed when interrupted, else trained now in a child process. A folder
    holding a run of other settings is refused rather than reported as this one."""
    cfg = load_config(None, {**overrides, "output_dir": str(folder)})
    stored = folder / run_dir.CONFIG
    if stored.is_file() and _settings(yaml.safe_load(stored.read_text())) != _settings(yaml.safe_load(cfg.to_yaml())):
        raise SystemExit(f"{folder} holds a run with other settings than these: pass another --output-dir")
    if (folder / run_dir.MANIFEST).is_file():
        return run_dir.read_record(folder)
    child = run_child(cfg, resume=stored.is_file())
    if child.error is not None:
        raise SystemExit(f"{folder.name}: {child.error}")
    return child.record


def _settings(config: dict) -> dict:
    """A stored config.yaml without where it was written: what makes two runs the same run."""
    return {k: v for k, v in config.items() if k != "output_dir"}


def mean_std(values: list[float], digits: int = 4) -> str:
    """mean ± std over seeds; one seed has no spread to show."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"
