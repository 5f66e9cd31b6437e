"""IA3 through peft: learned per-channel rescaling of keys, values and the feed-forward output.

Even fewer parameters than LoRA (one vector per adapted layer); the head is trained in full and
saved with the adapter, as for LoRA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from liftkit.methods import Method, MethodOptions
from liftkit.methods._common import check_targets, named_by, peft_load, peft_save, peft_wrap, place

if TYPE_CHECKING:
    from torch import nn

    from liftkit.modeling import Arch


@dataclass
class IA3Options(MethodOptions):
    name = "ia3"
    default_lr = 1e-2

    target_modules: list[str] | None = None  # None: keys, values and feed-forward output per architecture
    feedforward_modules: list[str] | None = None  # those of the targets scaled on their input side

    def problems(self) -> list[str]:
        if self.target_modules is not None and not self.target_modules:
            return ["method.target_modules is empty: name modules or leave it null for the architecture's default"]
        if self.feedforward_modules and not self.target_modules:
            return ["method.feedforward_modules needs method.target_modules too"]
        return []


def apply(model: nn.Module, options: IA3Options, arch: Arch) -> nn.Module:
    from peft import IA3Config

    targets = list(options.target_modules or arch.ia3_targets)
    feedforward = list(options.feedforward_modules or ([] if options.target_modules else arch.ia3_feedforward))
    check_targets(model, targets, arch, "IA3")
    targets = place(model, targets, options.train_layers, "IA3")
    feedforward = [t for t in targets if named_by(t, feedforward)]
    return peft_wrap(model, IA3Config, arch, target_modules=targets, feedforward_modules=feedforward, fan_in_fan_out=arch.fan_in_fan_out)


METHOD = Method(options=IA3Options, apply=apply, save=peft_save, load=peft_load)
