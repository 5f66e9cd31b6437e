"""Prompt tuning and P-tuning through peft: learned virtual tokens prepended to the input.

Only the virtual token embeddings (plus, for P-tuning, the small encoder that produces them) and
the head train. The body then sees embeddings rather than token ids, so a decoder cannot locate
padding among them: `feeds_embeddings` makes liftkit pad decoder batches on the left, where the
last position is always a real token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from liftkit.errors import LiftError
from liftkit.methods import Method, MethodOptions
from liftkit.methods._common import no_layer_choice, peft_load, peft_save, peft_wrap

if TYPE_CHECKING:
    from torch import nn

    from liftkit.modeling import Arch


@dataclass
class PromptOptions(MethodOptions):
    name = "prompt"
    default_lr = 3e-2

    num_virtual_tokens: int = 20  # length of the learned prompt

    def problems(self) -> list[str]:
        return [] if self.num_virtual_tokens >= 1 else [f"method.num_virtual_tokens={self.num_virtual_tokens} must be at least 1"]


@dataclass
class PTuningOptions(PromptOptions):
    name = "ptuning"
    default_lr = 1e-2

    encoder_hidden_size: int = 128  # width of the MLP that produces the virtual tokens


def model_dims(model: nn.Module) -> dict[str, int]:
    """Sizes peft's prompt-learning configs need, read through the config's attribute aliases
    (peft reads the raw dict and misses DistilBERT's `dim` / `n_layers` / `n_heads`)."""
    config = model.config
    return {"token_dim": config.hidden_size, "num_layers": config.num_hidden_layers, "num_attention_heads": config.num_attention_heads}


def _check_embeddings(model: nn.Module, options: PromptOptions, arch: Arch) -> None:
    no_layer_choice(options, "prompt methods add virtual tokens at the input, which every layer sees")
    try:
        model.get_input_embeddings()
    except (NotImplementedError, AttributeError):
        raise LiftError(f"prompt methods need access to the input embeddings, which this {arch.model_type} model does not expose: use lora, ia3 or adapter") from None


def apply_prompt(model: nn.Module, options: PromptOptions, arch: Arch) -> nn.Module:
    from peft import PromptTuningConfig

    _check_embeddings(model, options, arch)
    return peft_wrap(model, PromptTuningConfig, arch, num_virtual_tokens=options.num_virtual_tokens, **model_dims(model))


def apply_ptuning(model: nn.Module, options: PTuningOptions, arch: Arch) -> nn.Module:
    from peft import PromptEncoderConfig

    _check_embeddings(model, options, arch)
    return peft_wrap(
        model, PromptEncoderConfig, arch, num_virtual_tokens=options.num_virtual_tokens,
        encoder_hidden_size=options.encoder_hidden_size, **model_dims(model),
    )


PROMPT = Method(options=PromptOptions, apply=apply_prompt, save=peft_save, load=peft_load, feeds_embeddings=True)
PTUNING = Method(options=PTuningOptions, apply=apply_ptuning, save=peft_save, load=peft_load, feeds_embeddings=True)
