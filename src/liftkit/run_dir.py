"""The run-folder contract: what a run saves where, and how it is read back.

```
RUN_DIR/
  config.yaml                 the resolved config: `lift run RUN_DIR/config.yaml` reproduces the run
  liftkit.json                manifest: method, base model, labels, max_length, versions
  labels.json                 label names, position = class id
  adapter_config.json         \\ a standard peft adapter folder (PEFT methods): loads with plain
  adapter_model.safetensors   /  peft, classifier head included (modules_to_save)
  tokenizer.json, ...         the tokenizer, pad token set
  metrics.json                every figure of the report, measured by this run
  report.md                   the human-readable comparison
  checkpoints/last, best      per-epoch training state (resume) and best-epoch weights
```
Only this module decides paths. Files are written beside their final name and renamed into
place, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from liftkit.errors import LiftError

MANIFEST = "liftkit.json"


def new_run_dir(output_dir: str | None, dataset: str, method: str) -> Path:
    if output_dir:
        return Path(output_dir)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(dataset).name.split(".")[0] or "data")
    return Path("runs") / f"{stem}-{method}-{time.strftime('%Y%m%d-%H%M%S')}"


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; run dirs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def save_model(run_dir: Path, save_weights: Callable[[Path], None], tokenizer: Any, manifest: dict[str, Any]) -> None:
    """Write weights (through the method's saver), tokenizer, labels and manifest, each atomically."""
    run_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=run_dir, prefix=".model."))
    try:
        save_weights(staging)
        tokenizer.save_pretrained(staging)
        for path in staging.iterdir():
            os.replace(path, run_dir / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_json(run_dir / "labels.json", manifest["labels"])
    write_json(run_dir / MANIFEST, manifest)


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise LiftError(f"{str(run_dir)!r} is not a liftkit run directory (no {MANIFEST}): pass the folder `lift run` wrote")
    return read_json(path)
