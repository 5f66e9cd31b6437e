"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020), liftkit's own.

A small down-project -> non-linearity -> up-project block with a residual connection, placed on
the output of a layer's attention projection and feed-forward projection (Houlsby) or of the
feed-forward projection only (Pfeiffer), before the model's own residual and norm. The
up-projection starts at zero, so training starts exactly from the base model. peft has no
bottleneck adapters and AdapterHub's `adapters` pins an old transformers, hence this module.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from liftkit.errors import LiftError
from liftkit.methods._common import head_paths, native_loader, native_save, train_only
from liftkit.methods.base import Method, register
from liftkit.methods.options import AdapterOptions
from liftkit.modeling import Arch, top_layer_paths

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "swish": nn.SiLU}  # options.ACTIVATIONS names them


class Bottleneck(nn.Module):
    """h + up(act(down(h))), with `up` zero-initialised: the identity at the start."""

    def __init__(self, width: int, reduction_factor: int, non_linearity: str):
        super().__init__()
        bottleneck = max(1, width // reduction_factor)
        self.down = nn.Linear(width, bottleneck)
        self.act = ACTIVATIONS[non_linearity]()
        self.up = nn.Linear(bottleneck, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + self.up(self.act(self.down(hidden)))


class WithAdapter(nn.Module):
    """An output projection followed by its adapter; a drop-in for the projection."""

    def __init__(self, projection: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.projection = projection
        self.adapter = adapter

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.adapter(self.projection(*args, **kwargs))


def _out_width(module: nn.Module) -> int:
    width = getattr(module, "out_features", None) or getattr(module, "nf", None)  # nn.Linear or GPT-2 Conv1D
    if width is None:
        raise LiftError(f"cannot place an adapter after a {type(module).__name__}: use lora or ia3 for this model")
    return int(width)


def apply(model: nn.Module, options: AdapterOptions, arch: Arch) -> nn.Module:
    patterns = [arch.ffn_output] + ([arch.attention_output] if options.variant == "houlsby" else [])
    if None in patterns:
        raise LiftError(f"liftkit has no adapter placement for {arch.model_type!r} models: use lora or ia3")
    inside = top_layer_paths(model, options.train_layers)
    sites = [name for name, _ in model.named_modules() if inside(name) and any(re.search(p, name) for p in patterns)]
    if not sites:
        raise LiftError(
            f"found no layer outputs to place adapters on in this {arch.model_type} model (method.train_layers={options.train_layers})"
        )
    for name in sites:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        projection = getattr(parent, child)
        adapter = Bottleneck(_out_width(projection), options.reduction_factor, options.non_linearity)
        setattr(parent, child, WithAdapter(projection, adapter.to(next(projection.parameters()).device)))
    adapters = {n for n, m in model.named_modules() if isinstance(m, Bottleneck)}
    train_only(model, adapters | head_paths(model, arch))
    return model


register(Method(options=AdapterOptions, apply=apply, save=native_save, load=native_loader(apply)))
