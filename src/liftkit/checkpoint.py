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
        raise LiftError(f"{path} holds tensors this model lacks ({unknown[:3]}...): was it trained on another base model or method?")
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


def _recover(root: Path, name: str) -> Path | None:
    """After an interrupted run, make `root/name` the newest complete checkpoint among `name`,
    `name.old` and `name.tmp` (what a kill mid-swap leaves), and clear the rest."""
    final = root / name
    candidates = [(m["epoch"], i, p) for i, p in enumerate((final, root / f"{name}.old", root / f"{name}.tmp")) if (m := _complete(p))]
    if not candidates and _legacy_complete(final):
        return final
    chosen = max(candidates, key=lambda c: (c[0], -c[1]))[2] if candidates else None
    if chosen is not None and chosen != final:
        shutil.rmtree(final, ignore_errors=True)
        os.rename(chosen, final)
    for leftover in (root / f"{name}.old", root / f"{name}.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    return final if chosen is not None else None


def _legacy_complete(folder: Path) -> bool:
    """Checkpoints written before manifests: `last` ends with state.json, `best` is one file."""
    return (folder / "state.json").is_file() or (folder.name == "best" and (folder / "trainable.safetensors").is_file())


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
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state()}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    _write_manifest(tmp, state["epoch"])
    _replace_dir(tmp, root / "last")


def load_last(root: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> dict[str, Any] | None:
    """Restore the newest complete last checkpoint into model/optimizer/scheduler (recovering from
    an interrupted swap first); None when there is none."""
    last = _recover(root, "last")
    _recover(root, "best")
    if last is None:
        return None
    load_trainable(model, last / "trainable.safetensors")
    extra = torch.load(last / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["rng"])
    return json.loads((last / "state.json").read_text())


def restore_best(root: Path, model: torch.nn.Module) -> None:
    best = root / "best" / "trainable.safetensors"
    if best.is_file():
        load_trainable(model, best)
