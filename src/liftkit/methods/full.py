"""Full fine-tuning: every weight trains. The reference column PEFT methods are measured against."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from liftkit.methods import Method, MethodOptions
from liftkit.methods._common import native_load, native_save

if TYPE_CHECKING:
    from torch import nn

    from liftkit.modeling import Arch


@dataclass
class FullOptions(MethodOptions):
    name = "full"
    default_lr = 5e-5  # pretrained weights move little: the usual full fine-tuning rate


def apply(model: nn.Module, options: FullOptions, arch: Arch) -> nn.Module:
    for param in model.parameters():
        param.requires_grad = True
    return model


def load(model: nn.Module, options: FullOptions, arch: Arch, run_dir: Path) -> nn.Module:
    return native_load(apply(model, options, arch), run_dir)


METHOD = Method(options=FullOptions, apply=apply, save=native_save, load=load)
