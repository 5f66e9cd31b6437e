"""Every method's options: the part of a method the run config holds. Plain dataclasses, no torch.

The config reads, validates and writes these without loading any model code, so `lift run` with a
typo fails in milliseconds and `import liftkit.config` stays light. Each options class registers
itself under its `name` when defined (`OPTIONS`); `module` names the module under
`liftkit.methods` that implements it (see `liftkit.methods.METHODS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

TRAIN_LAYERS = "a number of layers (0 or more), a share such as '50%', or null for all"
OPTIONS: dict[str, type[MethodOptions]] = {}  # method name -> its options class, filled as classes are defined


@dataclass
class MethodOptions:
    """Base of every method's options; subclasses add their own fields."""

    name: ClassVar[str] = ""
    module: ClassVar[str] = ""  # implementation module under liftkit.methods; empty: the method's name
    # learning rate used when train.learning_rate is null: methods that train a few parameters
    # from scratch want a far larger step than full fine-tuning of pretrained weights
    default_lr: ClassVar[float] = 1e-3

    # adapt only the top N transformer layers, or the top "P%" of them (null: all). The layers below
    # then stay frozen and training computes them once instead of every step (see liftkit.frozen)
    train_layers: int | str | None = field(default=None, metadata={"expects": TRAIN_LAYERS})

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:  # a subclass that keeps its parent's name is not a new method
            return
        if cls.name in OPTIONS:
            raise ValueError(
                f"two option classes name the method {cls.name!r}: {OPTIONS[cls.name].__qualname__} and {cls.__qualname__}"
            )
        OPTIONS[cls.name] = cls

    def problems(self) -> list[str]:
        """Return one message per invalid option (empty when all is well)."""
        return []

    def all_problems(self) -> list[str]:
        """`problems()` plus the checks every method shares."""
        out = self.problems()
        layers = self.train_layers
        if isinstance(layers, bool) or not (
            layers is None
            or (isinstance(layers, int) and layers >= 0)
            or (isinstance(layers, str) and share(layers) is not None)
        ):
            out.append(f"method.train_layers={layers!r} must be {TRAIN_LAYERS}")
        return out


def share(text: str) -> float | None:
    """0 < P <= 100 from "P%", else None."""
    try:
        value = float(text.strip().removesuffix("%")) if text.strip().endswith("%") else None
    except ValueError:
        return None
    return value if value is not None and 0 < value <= 100 else None


def _empty_targets(targets: list[str] | None) -> list[str]:
    if targets is not None and not targets:
        return ["method.target_modules is empty: name modules or leave it null for the architecture's default"]
    return []


@dataclass
class LoraOptions(MethodOptions):
    """LoRA (peft): low-rank updates of the attention projections."""

    name = "lora"
    default_lr = 2e-3

    r: int = 8  # rank of the update matrices
    alpha: int = 16  # scaling numerator: the update is scaled by alpha / r
    dropout: float = 0.1  # dropout on the LoRA branch input
    target_modules: list[str] | None = None  # None: picked per architecture (BERT query,value; ...)
    # the top half of the layers: the bottom half is then computed once instead of every step,
    # 1.75x faster training for 0.9 to 1.55 points of accuracy on emotion (docs/results.md,
    # Speed); null adapts every layer
    train_layers: int | str | None = field(default="50%", metadata={"expects": TRAIN_LAYERS})

    def problems(self) -> list[str]:
        out = []
        if self.r < 1:
            out.append(f"method.r={self.r} must be at least 1")
        if self.alpha <= 0:
            out.append(f"method.alpha={self.alpha} must be positive")
        if not 0 <= self.dropout < 1:
            out.append(f"method.dropout={self.dropout} must lie in [0, 1)")
        return out + _empty_targets(self.target_modules)


@dataclass
class IA3Options(MethodOptions):
    """IA3 (peft): learned per-channel scaling of keys, values and feed-forward output."""

    name = "ia3"
    default_lr = 1e-2

    target_modules: list[str] | None = None  # None: keys, values and feed-forward output per architecture
    feedforward_modules: list[str] | None = None  # those of the targets scaled on their input side

    def problems(self) -> list[str]:
        if self.target_modules is None and self.feedforward_modules:
            return ["method.feedforward_modules needs method.target_modules too"]
        return _empty_targets(self.target_modules)


@dataclass
class PromptOptions(MethodOptions):
    """Prompt tuning (peft): learned virtual input tokens."""

    name = "prompt"
    default_lr = 3e-2

    num_virtual_tokens: int = 20  # length of the learned prompt

    def problems(self) -> list[str]:
        return (
            []
            if self.num_virtual_tokens >= 1
            else [f"method.num_virtual_tokens={self.num_virtual_tokens} must be at least 1"]
        )


@dataclass
class PTuningOptions(PromptOptions):
    """P-tuning (peft): virtual tokens produced by a small MLP."""

    name = "ptuning"
    module = "prompt"
    default_lr = 1e-2

    encoder_hidden_size: int = 128  # width of the MLP that produces the virtual tokens


@dataclass
class PrefixOptions(MethodOptions):
    """Prefix tuning: learned key/value prefixes in every attention layer."""

    name = "prefix"
    default_lr = 1e-2

    num_virtual_tokens: int = 20  # prefix length per layer
    reparameterize: bool = False  # produce the prefix through an MLP (Li & Liang); False: direct (P-tuning v2)
    projection_hidden: int = 256  # hidden width of that MLP

    def problems(self) -> list[str]:
        out = []
        if self.num_virtual_tokens < 1:
            out.append(f"method.num_virtual_tokens={self.num_virtual_tokens} must be at least 1")
        if self.projection_hidden < 1:
            out.append(f"method.projection_hidden={self.projection_hidden} must be at least 1")
        return out


ACTIVATIONS = ("relu", "gelu", "tanh", "swish")  # bottleneck adapter non-linearities


@dataclass
class AdapterOptions(MethodOptions):
    """Bottleneck adapters (liftkit's own): Houlsby or Pfeiffer placement."""

    name = "adapter"
    default_lr = 1e-3

    variant: str = "houlsby"  # houlsby: after attention and feed-forward; pfeiffer: after feed-forward only
    reduction_factor: int = 16  # bottleneck width = hidden size / reduction_factor
    non_linearity: str = "relu"  # relu, gelu, tanh or swish

    def problems(self) -> list[str]:
        out = []
        if self.variant not in ("houlsby", "pfeiffer"):
            out.append(f"method.variant={self.variant!r}: use houlsby or pfeiffer")
        if self.reduction_factor < 1:
            out.append(f"method.reduction_factor={self.reduction_factor} must be at least 1")
        if self.non_linearity not in ACTIVATIONS:
            out.append(f"method.non_linearity={self.non_linearity!r}: use one of {', '.join(ACTIVATIONS)}")
        return out


@dataclass
class FullOptions(MethodOptions):
    """Full fine-tuning; with train_layers, partial fine-tuning of the top layers."""

    name = "full"
    default_lr = 5e-5  # pretrained weights move little: the usual full fine-tuning rate


@dataclass
class HeadOptions(MethodOptions):
    """Linear probe: the classification head only."""

    name = "head"
    default_lr = 5e-3
