"""Prompt tuning and P-tuning through peft: learned virtual tokens prepended to the input.

Only the virtual token embeddings (plus, for P-tuning, the small encoder that produces them) and
the head train. The body then sees embeddings rather than token ids, so a decoder cannot locate
padding among them: `feeds_embeddings` makes liftkit pad decoder batches on the left, where the
last position is always a real token.
"""

from __future__ import annotations

from peft import PromptEncoderConfig, PromptTuningConfig
from torch import nn

from liftkit.errors import LiftError
from liftkit.methods._common import model_dims, no_layer_choice, peft_load, peft_save, peft_wrap
from liftkit.methods.base import Method, register
from liftkit.methods.options import PromptOptions, PTuningOptions
from liftkit.modeling import Arch


def _check_embeddings(model: nn.Module, options: PromptOptions, arch: Arch) -> None:
    no_layer_choice(options, "prompt methods add virtual tokens at the input, which every layer sees")
    try:
        model.get_input_embeddings()
    except (NotImplementedError, AttributeError):
        raise LiftError(
            f"prompt methods need access to the input embeddings, which this {arch.model_type} model does not expose: use lora, ia3 or adapter"
        ) from None


def apply_prompt(model: nn.Module, options: PromptOptions, arch: Arch) -> nn.Module:
    _check_embeddings(model, options, arch)
    return peft_wrap(
        model,
        PromptTuningConfig,
        arch,
        num_virtual_tokens=options.num_virtual_tokens,
        **model_dims(model, model.get_input_embeddings().embedding_dim),
    )


def apply_ptuning(model: nn.Module, options: PTuningOptions, arch: Arch) -> nn.Module:
    _check_embeddings(model, options, arch)
    return peft_wrap(
        model,
        PromptEncoderConfig,
        arch,
        num_virtual_tokens=options.num_virtual_tokens,
        encoder_hidden_size=options.encoder_hidden_size,
        **model_dims(model, model.get_input_embeddings().embedding_dim),
    )


register(Method(options=PromptOptions, apply=apply_prompt, save=peft_save, load=peft_load, feeds_embeddings=True))
register(Method(options=PTuningOptions, apply=apply_ptuning, save=peft_save, load=peft_load, feeds_embeddings=True))
