"""Full fine-tuning: every weight trains. The reference column PEFT methods are measured against.

With `method.train_layers: N` it is partial fine-tuning: the top N layers and the head train in
full, the rest stays frozen (and is then computed once, see liftkit.frozen).
"""

from __future__ import annotations

from torch import nn

from liftkit.methods._common import head_paths, native_loader, native_save, plain, train_only
from liftkit.methods.base import Method, register
from liftkit.methods.options import FullOptions
from liftkit.modeling import Arch, top_layer_paths


def apply(model: nn.Module, options: FullOptions, arch: Arch) -> nn.Module:
    """Every weight trains; with method.train_layers, the top layers and the head only."""
    if options.train_layers is None:
        for param in model.parameters():
            param.requires_grad = True
        return model
    inside = top_layer_paths(model, options.train_layers)
    train_only(model, {n for n, _ in model.named_modules() if n and inside(n)} | head_paths(model, arch))
    return model


register(Method(options=FullOptions, apply=apply, save=native_save, load=native_loader(apply), merge=plain))
