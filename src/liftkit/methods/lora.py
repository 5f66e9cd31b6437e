"""LoRA through peft, with the classifier head trained and saved alongside the adapter.

The head (pooler + classifier, pre_classifier + classifier, score, ...) is listed in peft's
`modules_to_save`, so it is trained in full and lands in `adapter_model.safetensors`: the run dir
is a standard peft adapter folder that plain `peft` loads. LoRA never wraps a head module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from liftkit.errors import LiftError
from liftkit.methods import Method, MethodOptions

if TYPE_CHECKING:
    from torch import nn

    from liftkit.modeling import Arch


@dataclass
class LoraOptions(MethodOptions):
    name = "lora"

    r: int = 8  # rank of the update matrices
    alpha: int = 16  # scaling numerator: the update is scaled by alpha / r
    dropout: float = 0.1  # dropout on the LoRA branch input
    target_modules: list[str] | None = None  # None: picked per architecture (BERT query,value; ...)

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
    from peft import LoraConfig, TaskType, get_peft_model

    targets = list(options.target_modules or arch.lora_targets)
    clash = [t for t in targets if t in arch.head]
    if clash:
        raise LiftError(f"LoRA target(s) {clash} are head modules, which liftkit trains in full: drop them from method.target_modules")
    linear = {name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if _is_linear(mod)}
    missing = [t for t in targets if t not in linear]
    if missing:
        raise LiftError(
            f"LoRA target module(s) {missing} not found in this {arch.model_type} model: "
            f"set method.target_modules to some of {sorted(linear)}"
        )
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=options.r,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=targets,
        fan_in_fan_out=arch.fan_in_fan_out,
        modules_to_save=list(arch.head),
    )
    return get_peft_model(model, config)


def _is_linear(module: nn.Module) -> bool:
    from torch import nn
    from transformers.pytorch_utils import Conv1D  # GPT-2's transposed linear layer

    return isinstance(module, (nn.Linear, Conv1D))


def load(model: nn.Module, run_dir: Path) -> nn.Module:
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(run_dir))


METHOD = Method(options=LoraOptions, apply=apply, load=load)
