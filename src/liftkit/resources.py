"""Machine resources: the cache folder, peak memory, parameter counts, device choice, RNG forks."""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

import torch

from liftkit.record import ParameterCounts


def cache_dir() -> Path:
    """liftkit's cache (token ids, converted models): $LIFT_CACHE_DIR, else ~/.cache/liftkit."""
    return Path(os.environ.get("LIFT_CACHE_DIR", Path.home() / ".cache" / "liftkit"))


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: allocated CUDA memory on a GPU, process peak RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def parameter_counts(model: torch.nn.Module) -> ParameterCounts:
    """Trainable and total parameters (shared tensors counted once) and the trainable share.

    peft keeps a frozen copy of each fully trained module (`original_module`) only to be able to
    unload the adapter; it is not part of the model that runs, so it is not counted.
    """
    seen, total, trainable = set(), 0, 0
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen or ".original_module." in name:
            continue
        seen.add(id(param))
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return ParameterCounts(trainable, total, 100 * trainable / total)


def fork_rng(device: torch.device):
    """A context in which random draws (a DataLoader's seed, dropout) leave the global RNG state
    as it was: the CPU generator and, on a GPU, that device's."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")
