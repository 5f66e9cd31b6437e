"""Full fine-tuning: every weight trains. The reference column PEFT methods are measured against.

With `method.train_layers: N` it is partial fine-tuning: the top N layers and the head train in
full, the rest stays frozen (and is then computed once, see liftkit.frozen).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from liftkit.methods import Method, MethodOptions
from liftkit.methods._common import head_paths, native_load, native_save, train_only

if TYPE_CHECKING:
    from torch import nn

    from liftkit.modeling import Arch


@dataclass
class FullOptions(MethodOptions):
    name = "full"
    default_lr = 5e-5  # pretrained weights move little: the usual full fine-tuning rate


def apply(model: nn.Module, options: FullOptions, arch: Arch) -> nn.Module:
    """Every weight trains; with method.train_layers, the top layers and the head only."""
    from liftkit.modeling import top_layer_paths

    if options.train_layers is None:
        for param in model.parameters():
            param.requires_grad = True
        return model
    inside = top_layer_paths(model, options.train_layers)
    train_only(model, {n for n, _ in model.named_modules() if n and inside(n)} | head_paths(model, arch))
    return model


def load(model: nn.Module, options: FullOptions, arch: Arch, run_dir: Path) -> nn.Module:
    return native_load(apply(model, options, arch), run_dir)


METHOD = Method(options=FullOptions, apply=apply, save=native_save, load=load)
