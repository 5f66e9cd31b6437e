"""Per-epoch checkpoints of the trainable tensors, written atomically.

`checkpoints/last/` holds what resuming needs (trainable weights, optimizer and scheduler state,
the epoch history); `checkpoints/best/` holds the best epoch's trainable weights. Each folder is
written beside its final name and renamed into place, so an interrupted save never leaves a
half-written checkpoint. Nothing is unpickled: weights are safetensors, optimizer state is read
with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
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


def _replace_dir(tmp: Path, final: Path) -> None:
    old = final.with_name(final.name + ".old")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def save_best(root: Path, model: torch.nn.Module) -> None:
    tmp = _fresh(root / "best.tmp")
    save_file(trainable_state(model), tmp / "trainable.safetensors")
    _replace_dir(tmp, root / "best")


def save_last(root: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any, state: dict[str, Any]) -> None:
    tmp = _fresh(root / "last.tmp")
    save_file(trainable_state(model), tmp / "trainable.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state()}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    _replace_dir(tmp, root / "last")


def load_last(root: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> dict[str, Any] | None:
    """Restore the last checkpoint into model/optimizer/scheduler; None when there is none."""
    last = root / "last"
    if not (last / "state.json").is_file():
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
