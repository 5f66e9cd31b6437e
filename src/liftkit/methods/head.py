"""Linear probe: the body stays frozen, only the classification head trains.

The floor every adaptation method must clear to have been worth its cost.
"""

from __future__ import annotations

from torch import nn

from liftkit.errors import LiftError
from liftkit.methods._common import head_paths, native_loader, native_save, plain, train_only
from liftkit.methods.base import Method, register
from liftkit.methods.options import HeadOptions
from liftkit.modeling import Arch


def apply(model: nn.Module, options: HeadOptions, arch: Arch) -> nn.Module:
    if options.train_layers:
        raise LiftError(
            f"the head method trains no layer (method.train_layers={options.train_layers}): use full or lora with train_layers"
        )
    train_only(model, head_paths(model, arch))
    return model


register(Method(options=HeadOptions, apply=apply, save=native_save, load=native_loader(apply), merge=plain))
