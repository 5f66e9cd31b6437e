"""Many runs, one child process each: a config goes in, a run record or a structured error comes out.

`lift compare` (and the coming `lift tune`) run each configuration as its own `lift run` process:
its runtime and peak memory are then its own (a process's peak RSS only grows), and a run that
crashes cannot take the others down. The child writes config.yaml, metrics.json or error.json
into its run folder (`liftkit.pipeline`); this module reads those back, and never parses a log.
A stale error.json from an earlier attempt is overwritten by a new failure and removed by a success.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from liftkit import run_dir
from liftkit.config import RunConfig
from liftkit.errors import LiftError
from liftkit.pipeline import preflight
from liftkit.record import RunRecord


@dataclass
class RunError:
    """Why a child run failed: the exception it raised, or how the process died."""

    type: str  # exception class name, or "Killed" / "Exit"
    message: str  # one line
    traceback: Path | None = None  # the full traceback, when the child could write one
    log: Path | None = None  # everything the child printed

    def __str__(self) -> str:
        return self.message if self.type == "LiftError" else f"{self.type}: {self.message}"


@dataclass
class ChildRun:
    """One configuration run in a child process: its folder and either its record or its error."""

    run_dir: Path
    record: RunRecord | None = None
    error: RunError | None = None


def run_child(cfg: RunConfig, resume: bool = False) -> ChildRun:
    """Run `cfg` as `lift run` in a child process (`resume`: continue the interrupted run in its
    folder); its output goes to RUN_DIR/run.log.

    `cfg.output_dir` names the run folder (see `run_dir.member_dir`). What the child would refuse
    before writing anything (a bad config or model path, a folder holding a finished run) is
    refused here, without a child: no error.json could tell it."""
    out = Path(cfg.output_dir)
    try:
        preflight(cfg, resume=resume)
    except LiftError as exc:
        return ChildRun(out, error=RunError("LiftError", str(exc)))
    config = out / run_dir.CONFIG
    if not resume:
        run_dir.write_text(config, cfg.to_yaml())
    log = run_dir.log_path(out)
    with log.open("a" if resume else "w") as sink:
        trust = (
            ["--trust-remote-code"] if cfg.model.trust_remote_code else []
        )  # the caller's word, passed on: files cannot carry it
        what = ["--resume", str(out)] if resume else [str(config), "--output-dir", str(out)]
        proc = subprocess.run(
            [sys.executable, "-m", "liftkit.cli", "run", *what, *trust], stdout=sink, stderr=subprocess.STDOUT
        )
    if proc.returncode == 0:
        return ChildRun(out, record=run_dir.read_record(out))
    return ChildRun(out, error=_error(out, proc.returncode, log))


def _error(out: Path, returncode: int, log: Path) -> RunError:
    saved = run_dir.read_error(out)
    if saved is not None:
        return RunError(saved["type"], saved["message"], out / saved["traceback"], log)
    if returncode < 0:  # killed by a signal: out of memory, a timeout, a user
        name = signal.Signals(-returncode).name
        return RunError(
            "Killed", f"the run was killed by {name} before it could report an error (see {log})", None, log
        )
    return RunError("Exit", f"the run exited with code {returncode} without reporting an error (see {log})", None, log)
