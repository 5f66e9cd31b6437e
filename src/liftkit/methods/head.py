"""Linear probe: the body stays frozen, only the classification head trains.

The floor every adaptation method must clear to have been worth its cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from liftkit.errors import LiftError
from liftkit.methods import Method, MethodOptions
from liftkit.methods._common import head_paths, native_load, native_save, train_only

if TYPE_CHECKING:
    from torch import nn

    from liftkit.modeling import Arch


@dataclass
class HeadOptions(MethodOptions):
    name = "head"
    default_lr = 5e-3


def apply(model: nn.Module, options: HeadOptions, arch: Arch) -> nn.Module:
    if options.train_layers:
        raise LiftError(f"the head method trains no layer (method.train_layers={options.train_layers}): use full or lora with train_layers")
    train_only(model, head_paths(model, arch))
    return model


def load(model: nn.Module, options: HeadOptions, arch: Arch, run_dir: Path) -> nn.Module:
    return native_load(apply(model, options, arch), run_dir)


METHOD = Method(options=HeadOptions, apply=apply, save=native_save, load=load)
