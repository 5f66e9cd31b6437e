"""Per-epoch checkpoints of the trainable tensors, written atomically.

`checkpoints/last/` holds what resuming needs (trainable weights, optimizer and scheduler state,
the epoch history); `checkpoints/best/` holds the best epoch's trainable weights. Each folder is
written beside its final name, sealed with a manifest of its files, and renamed into place; a
kill at any step of the swap leaves a complete checkpoint, which resuming recovers (the newest
complete one wins). Nothing is unpickled: weights are safetensors, optimizer state is read
with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from liftkit.errors import LiftError


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors that train: what checkpoints and liftkit's own methods save."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: torch.nn.Module, path: Path) -> None:
    """Copy tensors saved by `trainable_state` back into a model of the same structure."""
    state = load_file(path)
    params = dict(model.named_parameters())
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise LiftError(
            f"{path} holds tensors this model lacks ({unknown[:3]}...): was it trained on another base model or method?"
        )
    misfit = [name for name, tensor in state.items() if tensor.shape != params[name].shape]
    if misfit:
        raise LiftError(
            f"{path} holds tensors of other shapes than this model's ({misfit[:3]}): the labels, model or method changed since it was saved"
        )
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)


MANIFEST = "manifest.json"  # written last into a checkpoint folder: what a complete one holds


def _write_manifest(folder: Path, epoch: int) -> None:
    """Seal a checkpoint folder: its files and their sizes, so a half-written one is recognised."""
    files = {p.name: p.stat().st_size for p in folder.iterdir() if p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"epoch": epoch, "files": files}))


def _complete(folder: Path) -> dict[str, Any] | None:
    """A checkpoint folder's manifest when every file it lists is there at its size, else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        ok = all((folder / name).stat().st_size == size for name, size in manifest["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return manifest if ok else None


def _replace_dir(tmp: Path, final: Path) -> None:
    """Swap a sealed `tmp` in for `final`. A crash at any step leaves a complete checkpoint behind
    (`final`, `final.old` or `tmp`) that `_recover` finds."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _epoch(folder: Path) -> int | None:
    """The epoch of a complete checkpoint folder, else None. Folders written before manifests
    count when their last-written file is there (`last`: state.json; `best`: its one file, epoch
    unknown: -1)."""
    if (folder / MANIFEST).is_file():
        manifest = _complete(folder)
        return manifest["epoch"] if manifest else None
    try:
        return int(json.loads((folder / "state.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1 if folder.name == "best" and (folder / "trainable.safetensors").is_file() else None


def _recover(root: Path, name: str) -> int | None:
    """Make `root/name` the newest complete checkpoint among `name`, `name.old` and `name.tmp` (what
    a kill mid-swap leaves; the final name wins a tie) and delete the rest. Returns its epoch, or
    None when none is complete."""
    final = root / name
    found = [
        (epoch, -i, path)
        for i, path in enumerate((final, root / f"{name}.old", root / f"{name}.tmp"))
        if (epoch := _epoch(path)) is not None
    ]
    epoch, _, chosen = max(found, key=lambda f: f[:2]) if found else (None, 0, None)
    if chosen is not None and chosen != final:
        shutil.rmtree(final, ignore_errors=True)
        os.rename(chosen, final)
    for path in (final, root / f"{name}.old", root / f"{name}.tmp"):
        if path != final or chosen is None:
            shutil.rmtree(path, ignore_errors=True)
    return epoch


def recover(root: Path) -> None:
    """Before resuming (by the one process that owns the run folder): settle `last` and `best` after
    an interrupted swap, and drop a best checkpoint newer than `last`, saved by an epoch the resume
    is about to redo (it will be saved again if it is still the best)."""
    last = _recover(root, "last")
    best = _recover(root, "best")
    if best is not None and (last is None or best > last):
        shutil.rmtree(root / "best")


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def save_best(root: Path, model: torch.nn.Module, epoch: int) -> None:
    tmp = _fresh(root / "best.tmp")
    save_file(trainable_state(model), tmp / "trainable.safetensors")
    _write_manifest(tmp, epoch)
    _replace_dir(tmp, root / "best")


def save_last(root: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any, state: dict[str, Any]) -> None:
    tmp = _fresh(root / "last.tmp")
    save_file(trainable_state(model), tmp / "trainable.safetensors")
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state()},
        tmp / "optimizer.pt",
    )
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    _write_manifest(tmp, state["epoch"])
    _replace_dir(tmp, root / "last")


def last_state(root: Path) -> dict[str, Any] | None:
    """The last complete checkpoint's training state (epoch, history, settings), read without
    loading any tensor; None when there is none."""
    last = root / "last"
    return json.loads((last / "state.json").read_text()) if _epoch(last) is not None else None


def load_last(root: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> dict[str, Any] | None:
    """Restore the last checkpoint into model/optimizer/scheduler; None when there is no complete
    one (`recover` first settles what an interrupted swap left)."""
    state = last_state(root)
    if state is None:
        return None
    last = root / "last"
    load_trainable(model, last / "trainable.safetensors")
    extra = torch.load(last / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["rng"])
    return state


def restore_best(root: Path, model: torch.nn.Module) -> None:
    best = root / "best" / "trainable.safetensors"
    if best.is_file():
        load_trainable(model, best)
