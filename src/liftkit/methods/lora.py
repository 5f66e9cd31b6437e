"""LoRA through peft, with the classifier head trained and saved alongside the adapter.

The head (pooler + classifier, pre_classifier + classifier, score, ...) is listed in peft's
`modules_to_save`, so it is trained in full and lands in `adapter_model.safetensors`: the run dir
is a standard peft adapter folder that plain `peft` loads. LoRA never wraps a head module.
By default it adapts the top half of the layers (`train_layers: 50%`), which lets training
compute the frozen bottom half once instead of every step (liftkit.frozen).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from liftkit.methods import Method, MethodOptions
from liftkit.methods._common import check_targets, peft_load, peft_save, peft_wrap, place

if TYPE_CHECKING:
    from torch import nn

    from liftkit.modeling import Arch


@dataclass
class LoraOptions(MethodOptions):
    name = "lora"
    default_lr = 2e-3

    r: int = 8  # rank of the update matrices
    alpha: int = 16  # scaling numerator: the update is scaled by alpha / r
    dropout: float = 0.1  # dropout on the LoRA branch input
    target_modules: list[str] | None = None  # None: picked per architecture (BERT query,value; ...)
    # the top half of the layers: the bottom half is then computed once instead of every step,
    # 1.75x faster training for 0.9 to 1.55 points of accuracy on emotion (docs/results.md,
    # Speed); null adapts every layer
    train_layers: int | str | None = "50%"

    def problems(self) -> list[str]:
        out = []
        if self.r < 1:
            out.append(f"method.r={self.r} must be at least 1")
        if self.alpha <= 0:
            out.append(f"method.alpha={self.alpha} must be positive")
        if not 0 <= self.dropout < 1:
            out.append(f"method.dropout={self.dropout} must lie in [0, 1)")
        if self.target_modules is not None and not self.target_modules:
            out.append("method.target_modules is empty: name modules or leave it null for the architecture's default")
        return out


def apply(model: nn.Module, options: LoraOptions, arch: Arch) -> nn.Module:
    from peft import LoraConfig

    targets = list(options.target_modules or arch.lora_targets)
    check_targets(model, targets, arch, "LoRA")
    targets = place(model, targets, options.train_layers, "LoRA")
    return peft_wrap(
        model, LoraConfig, arch, r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
        target_modules=targets, fan_in_fan_out=arch.fan_in_fan_out,
    )


METHOD = Method(options=LoraOptions, apply=apply, save=peft_save, load=peft_load)
