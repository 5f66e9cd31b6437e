"""Pieces the method modules share: peft plumbing, head freezing, liftkit's own weight files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from peft import PeftModel, TaskType, get_peft_model
from peft.utils import ModulesToSaveWrapper
from safetensors.torch import save_file
from torch import nn

from liftkit.checkpoint import load_trainable, trainable_state
from liftkit.errors import LiftError
from liftkit.modeling import Arch, linear_paths, top_layer_paths
from liftkit.run_dir import WEIGHTS


def named_by(path: str, suffixes: list[str]) -> bool:
    """Whether a module path is one of `suffixes` or ends with one (`query` names `...self.query`)."""
    return any(path == s or path.endswith("." + s) for s in suffixes)


def targets_of(
    model: nn.Module, given: list[str] | None, arch: Arch, default: tuple[str, ...], what: str
) -> list[str]:
    """The targets a method adapts: `given` (method.target_modules) or the family's `default`.
    They must be linear layers outside the head, named by a suffix of their path; a family with
    no default (no record in `modeling.ARCHS`) asks for them, listing the model's own layers."""
    targets = list(given or default)
    heads = tuple(path + "." for path in head_paths(model, arch))
    layers = sorted({n.rsplit(".", 1)[-1] for n in linear_paths(model) if not (n + ".").startswith(heads)})
    if not targets:
        raise LiftError(
            f"liftkit has no default {what} targets for {arch.model_type!r} models: pass --target-modules "
            f"(method.target_modules) with some of its linear layers: {', '.join(layers)}"
        )
    clash = [t for t in targets if t.split(".")[0] in arch.head]
    if clash:
        raise LiftError(
            f"{what} target(s) {clash} are head modules, which liftkit trains in full: drop them from method.target_modules"
        )
    names = [name for name, _ in model.named_modules()]
    missing = [t for t in targets if not any(named_by(n, [t]) for n in names)]
    if missing:
        raise LiftError(
            f"{what} target module(s) {missing} not found in this {arch.model_type} model: "
            f"set method.target_modules to some of {layers}"
        )
    return targets


def place(model: nn.Module, targets: list[str], train_layers: int | str | None, what: str) -> list[str]:
    """`targets` (suffixes: every layer), or the full paths of those in the top `train_layers` layers."""
    if train_layers is None:
        return targets
    inside = top_layer_paths(model, train_layers)
    names = [n for n, _ in model.named_modules() if inside(n) and named_by(n, targets)]
    if not names:
        raise LiftError(
            f"method.train_layers={train_layers} leaves {what} nothing to adapt: use 1 or more, or the head method"
        )
    return names


def no_layer_choice(options: Any, why: str) -> None:
    """Methods that change every layer's input cannot be confined to the top layers."""
    if options.train_layers is not None:
        raise LiftError(f"{why}, so method.train_layers cannot apply: set it to null, or use lora, ia3 or adapter")


def peft_wrap(model: nn.Module, config_class: type, arch: Arch, **options: Any) -> nn.Module:
    """`get_peft_model` for sequence classification, the whole head trained and saved with the
    adapter (`modules_to_save`): the piece plain peft classification setups most often miss."""
    config = config_class(task_type=TaskType.SEQ_CLS, modules_to_save=list(arch.head), **options)
    return get_peft_model(model, config)


def model_dims(model: nn.Module, token_dim: int) -> dict[str, int]:
    """Sizes peft's prompt-learning configs need, read through the config's attribute aliases
    (peft reads the raw dict and misses DistilBERT's `dim` / `n_layers` / `n_heads`). `token_dim`
    is the width of what is learned: input embeddings for prompt tuning (ALBERT's and ELECTRA's
    are narrower than their hidden states), keys and values for prefix tuning."""
    config = model.config
    return {
        "token_dim": token_dim,
        "num_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
    }


def peft_save(model: nn.Module, run_dir: Path) -> None:
    # no embedding layer is trained; "auto" would look the base model up on the hub to find out
    model.save_pretrained(run_dir, save_embedding_layers=False)


def peft_load(model: nn.Module, options: Any, arch: Arch, run_dir: Path) -> nn.Module:
    return PeftModel.from_pretrained(model, str(run_dir))


def peft_merge(model: nn.Module) -> nn.Module:
    """LoRA / IA3 folded into the base weights, the trained head (modules_to_save) put in place.

    The head goes in first, by hand: peft's IA3 unload copies a `.weight` from every wrapped
    module and fails on a head module without one (BERT's pooler)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.modules_to_save[model.active_adapter])
    return model.merge_and_unload()


def plain(model: nn.Module) -> nn.Module:
    """The merge of methods that train the model's own weights (full, head): nothing to fold."""
    return model


def train_only(model: nn.Module, trainable: set[str]) -> None:
    """Freeze every parameter, then unfreeze those whose module path starts with a name given."""
    for name, param in model.named_parameters():
        param.requires_grad = any(name.startswith(t + ".") for t in trainable)


def head_paths(model: nn.Module, arch: Arch) -> set[str]:
    """Full module paths of the head (e.g. `bert.pooler`, `classifier`)."""
    return {name for name, _ in model.named_modules() if name.rsplit(".", 1)[-1] in arch.head}


def native_save(model: nn.Module, run_dir: Path) -> None:
    """Save exactly the trainable tensors: the method's own and the head's."""
    save_file(trainable_state(model), run_dir / WEIGHTS)


def native_load(model: nn.Module, run_dir: Path) -> nn.Module:
    """Copy saved tensors into a model that `apply` has already given the method's structure."""
    load_trainable(model, run_dir / WEIGHTS)
    return model


def native_loader(
    apply: Callable[[nn.Module, Any, Arch], nn.Module],
) -> Callable[[nn.Module, Any, Arch, Path], nn.Module]:
    """The `load` of a liftkit-native method: give the base model the method's structure again
    (`apply`), then copy the saved tensors in."""

    def load(model: nn.Module, options: Any, arch: Arch, run_dir: Path) -> nn.Module:
        return native_load(apply(model, options, arch), run_dir)

    return load
