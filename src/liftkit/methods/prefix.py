"""Prefix tuning: learned key/value prefixes in every attention layer.

Decoders (GPT-2, llama) go through peft, which feeds the prefixes in as a key/value cache.
Encoders have no cache to feed (peft: "Model does not support past key values" on DistilBERT,
MPNet, ...), so for them liftkit adds the prefixes itself, inside attention: each self-attention
module gets a `PrefixKV` holding its prefix, and a registered transformers attention function
prepends it to that module's keys and values (and opens the mask to it) before running SDPA.
This works for every encoder whose attention goes through transformers' `AttentionInterface`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from peft import PrefixTuningConfig
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from liftkit.errors import LiftError
from liftkit.methods._common import (
    head_paths,
    model_dims,
    native_load,
    native_save,
    no_layer_choice,
    peft_load,
    peft_save,
    peft_wrap,
    train_only,
)
from liftkit.methods.base import Method, register
from liftkit.methods.options import PrefixOptions
from liftkit.modeling import Arch, top_layer_paths

ATTENTION = "liftkit_prefix"  # name of the attention implementation registered below


class PrefixKV(nn.Module):
    """The key and value prefix of one attention layer, shape (heads, length, head_dim) each."""

    def __init__(self, heads: int, head_dim: int, length: int, reparameterize: bool, hidden: int):
        super().__init__()
        self.shape = (heads, length, head_dim)
        width = heads * head_dim
        if reparameterize:
            self.embedding = nn.Parameter(torch.randn(length, width) * 0.02)
            self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, 2 * width))
        else:
            self.embedding = nn.Parameter(torch.randn(length, 2 * width) * 0.02)
            self.mlp = None

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        kv = self.mlp(self.embedding) if self.mlp is not None else self.embedding
        heads, length, head_dim = self.shape
        key, value = kv.view(length, 2, heads, head_dim).permute(1, 2, 0, 3)
        return key, value


def _prefixed_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
):
    prefix = getattr(module, "liftkit_prefix", None)
    if prefix is not None:
        p_key, p_value = prefix()
        batch = key.shape[0]
        key = torch.cat([p_key.to(key.dtype).expand(batch, -1, -1, -1), key], dim=2)
        value = torch.cat([p_value.to(value.dtype).expand(batch, -1, -1, -1), value], dim=2)
        if attention_mask is not None:  # every query may attend to every prefix position
            length = p_key.shape[1]
            opened = torch.ones if attention_mask.dtype == torch.bool else torch.zeros
            pad = opened(
                (*attention_mask.shape[:-1], length), dtype=attention_mask.dtype, device=attention_mask.device
            )
            attention_mask = torch.cat([pad.expand(attention_mask.shape[0], -1, -1, -1), attention_mask], dim=-1)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def _register() -> None:
    AttentionInterface.register(ATTENTION, _prefixed_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def _apply_native(model: nn.Module, options: PrefixOptions, arch: Arch) -> nn.Module:
    _register()
    model.set_attn_implementation(ATTENTION)
    if model.config._attn_implementation != ATTENTION:
        raise LiftError(
            f"{arch.model_type!r} attention does not go through transformers' AttentionInterface, so liftkit cannot add prefixes: use lora, ia3 or adapter"
        )
    if arch.attention is None:
        raise LiftError(
            f"prefix tuning has no attention layout for {arch.model_type!r} models: use lora, ia3 or adapter"
        )
    config = model.config
    heads = getattr(config, "num_attention_heads", None) or config.n_heads
    width = getattr(config, "hidden_size", None) or config.dim
    pattern = re.compile(arch.attention)
    inside = top_layer_paths(model, options.train_layers)
    layers = [mod for name, mod in model.named_modules() if pattern.search(name) and inside(name)]
    if not layers:
        raise LiftError(
            f"found no attention layers matching {arch.attention!r} in this {arch.model_type} model (method.train_layers={options.train_layers})"
        )
    for layer in layers:
        layer.liftkit_prefix = PrefixKV(
            heads, width // heads, options.num_virtual_tokens, options.reparameterize, options.projection_hidden
        )
    train_only(model, head_paths(model, arch) | {n for n, m in model.named_modules() if isinstance(m, PrefixKV)})
    return model


def apply(model: nn.Module, options: PrefixOptions, arch: Arch) -> nn.Module:
    if not arch.decoder:
        return _apply_native(model, options, arch)
    no_layer_choice(options, "on decoders peft feeds the prefixes to every layer as a key/value cache")
    return peft_wrap(
        model,
        PrefixTuningConfig,
        arch,
        num_virtual_tokens=options.num_virtual_tokens,
        prefix_projection=options.reparameterize,
        encoder_hidden_size=options.projection_hidden,
        **model_dims(model, model.config.hidden_size),  # prefixes are keys and values: the hidden width
    )


def save(model: nn.Module, run_dir: Path) -> None:
    (peft_save if hasattr(model, "peft_config") else native_save)(model, run_dir)


def load(model: nn.Module, options: PrefixOptions, arch: Arch, run_dir: Path) -> nn.Module:
    if arch.decoder:
        return peft_load(model, options, arch, run_dir)
    return native_load(_apply_native(model, options, arch), run_dir)


register(Method(options=PrefixOptions, apply=apply, save=save, load=load))
