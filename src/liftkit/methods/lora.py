"""LoRA through peft, with the classifier head trained and saved alongside the adapter.

The head (pooler + classifier, pre_classifier + classifier, score, ...) is listed in peft's
`modules_to_save`, so it is trained in full and lands in `adapter_model.safetensors`: the run dir
is a standard peft adapter folder that plain `peft` loads. LoRA never wraps a head module.
By default it adapts the top half of the layers (`train_layers: 50%`), which lets training
compute the frozen bottom half once instead of every step (liftkit.frozen).
"""

from __future__ import annotations

from peft import LoraConfig
from torch import nn

from liftkit.methods._common import peft_load, peft_merge, peft_save, peft_wrap, place, targets_of
from liftkit.methods.base import Method, register
from liftkit.methods.options import LoraOptions
from liftkit.modeling import Arch


def apply(model: nn.Module, options: LoraOptions, arch: Arch) -> nn.Module:
    targets = targets_of(model, options.target_modules, arch, arch.lora_targets, "LoRA")
    targets = place(model, targets, options.train_layers, "LoRA")
    return peft_wrap(
        model,
        LoraConfig,
        arch,
        r=options.r,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=targets,
        fan_in_fan_out=arch.fan_in_fan_out,
    )


register(Method(options=LoraOptions, apply=apply, save=peft_save, load=peft_load, merge=peft_merge))
