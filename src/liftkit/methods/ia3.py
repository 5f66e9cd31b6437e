"""IA3 through peft: learned per-channel rescaling of keys, values and the feed-forward output.

Even fewer parameters than LoRA (one vector per adapted layer); the head is trained in full and
saved with the adapter, as for LoRA.
"""

from __future__ import annotations

from peft import IA3Config
from torch import nn

from liftkit.methods._common import named_by, peft_load, peft_merge, peft_save, peft_wrap, place, targets_of
from liftkit.methods.base import Method, register
from liftkit.methods.options import IA3Options
from liftkit.modeling import Arch


def apply(model: nn.Module, options: IA3Options, arch: Arch) -> nn.Module:
    targets = targets_of(model, options.target_modules, arch, arch.ia3_targets, "IA3")
    feedforward = list(options.feedforward_modules or ([] if options.target_modules else arch.ia3_feedforward))
    targets = place(model, targets, options.train_layers, "IA3")
    feedforward = [t for t in targets if named_by(t, feedforward)]
    return peft_wrap(
        model,
        IA3Config,
        arch,
        target_modules=targets,
        feedforward_modules=feedforward,
        fan_in_fan_out=arch.fan_in_fan_out,
    )


register(Method(options=IA3Options, apply=apply, save=peft_save, load=peft_load, merge=peft_merge))
