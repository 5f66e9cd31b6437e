"""Load a pretrained model and its tokenizer for sequence classification.

This is where architecture differences live, so nothing downstream needs to know them: which
modules form the classification head (always trained in full and saved), where LoRA goes by
default, and the decoder quirks (no pad token: GPT-2 and llama reuse EOS, set on the tokenizer
*and* on `model.config`, or the model cannot find each row's last token).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)
from transformers.pytorch_utils import Conv1D

from liftkit import packaged
from liftkit.config import DEFAULT_MODEL, ModelConfig, is_hub_id, portable_name
from liftkit.errors import LiftError, first_line
from liftkit.methods.options import share


@dataclass(frozen=True)
class Arch:
    """What liftkit needs to know about a model family: where its parts sit, by module name.

    Methods read their defaults from here (LoRA the query and value projections, IA3 keys, values
    and the feed-forward output, adapters the attention and feed-forward outputs, encoder prefix
    tuning the self-attention modules), so a family is added by one record in `ARCHS`. A family
    without one still gets its head found (`arch_of`), which is all `head` and `full` need.
    """

    model_type: str
    head: tuple[str, ...]  # modules of the classification head: trained in full, saved with the adapter
    lora_targets: tuple[str, ...] = ()  # default LoRA targets: the query and value projections (or a fused qkv)
    ia3_targets: tuple[str, ...] = ()  # default IA3 targets: keys, values, feed-forward output
    ia3_feedforward: tuple[str, ...] = ()  # those of the IA3 targets that are feed-forward layers
    attention: str | None = None  # regex of self-attention module paths (liftkit's own encoder prefix tuning)
    attention_output: str | None = None  # regex of attention output projections (Houlsby adapters)
    ffn_output: str | None = None  # regex of feed-forward output projections (adapters)
    fan_in_fan_out: bool = False  # weights stored transposed (GPT-2's Conv1D)
    decoder: bool = False  # causal LM body: pools the last non-pad token, needs a pad token
    onnx_fusion: str | None = None  # onnxruntime optimizer's model type that fuses its attention; None: unfused


_BERT_LIKE = dict(
    lora_targets=("query", "value"),
    ia3_targets=("key", "value", "output.dense"),
    ia3_feedforward=("output.dense",),
    attention=r"\.attention\.self$",
    attention_output=r"\.attention\.output\.dense$",
    ffn_output=r"\.layer\.\d+\.output\.dense$",
)
_LLAMA_LIKE = dict(
    head=("score",),
    lora_targets=("q_proj", "v_proj"),
    ia3_targets=("k_proj", "v_proj", "down_proj"),
    ia3_feedforward=("down_proj",),
    attention_output=r"\.self_attn\.o_proj$",
    ffn_output=r"\.mlp\.down_proj$",
    decoder=True,
)
ARCHS = {
    "bert": Arch("bert", head=("pooler", "classifier"), onnx_fusion="bert", **_BERT_LIKE),
    "roberta": Arch("roberta", head=("classifier",), onnx_fusion="bert", **_BERT_LIKE),
    "xlm-roberta": Arch("xlm-roberta", head=("classifier",), onnx_fusion="bert", **_BERT_LIKE),
    "electra": Arch("electra", head=("classifier",), onnx_fusion="bert", **_BERT_LIKE),
    "distilbert": Arch(
        "distilbert",
        head=("pre_classifier", "classifier"),
        lora_targets=("q_lin", "v_lin"),
        ia3_targets=("k_lin", "v_lin", "lin2"),
        ia3_feedforward=("lin2",),
        attention=r"\.layer\.\d+\.attention$",
        attention_output=r"\.attention\.out_lin$",
        ffn_output=r"\.ffn\.lin2$",
        onnx_fusion="bert",
    ),
    "albert": Arch(  # one layer's weights shared by every layer: no stack to freeze the bottom of
        "albert",
        head=("pooler", "classifier"),
        lora_targets=("query", "value"),
        ia3_targets=("key", "value", "ffn_output"),
        ia3_feedforward=("ffn_output",),
        attention=r"\.albert_layers\.\d+\.attention$",
        attention_output=r"\.attention\.dense$",
        ffn_output=r"\.ffn_output$",
    ),
    "mpnet": Arch(
        "mpnet",
        head=("classifier",),
        lora_targets=("q", "v"),
        ia3_targets=("k", "v", "output.dense"),
        ia3_feedforward=("output.dense",),
        attention_output=r"\.attention\.attn\.o$",
        ffn_output=r"\.layer\.\d+\.output\.dense$",
    ),
    "deberta-v2": Arch(  # DeBERTa v3 checkpoints are deberta-v2 models
        "deberta-v2",
        head=("pooler", "classifier"),
        lora_targets=("query_proj", "value_proj"),
        ia3_targets=("key_proj", "value_proj", "output.dense"),
        ia3_feedforward=("output.dense",),
        attention_output=r"\.attention\.output\.dense$",
        ffn_output=r"\.layer\.\d+\.output\.dense$",
    ),
    "modernbert": Arch(  # queries, keys and values are one fused layer: LoRA and IA3 adapt all three
        "modernbert",
        head=("head", "classifier"),
        lora_targets=("Wqkv",),
        ia3_targets=("Wqkv", "mlp.Wo"),
        ia3_feedforward=("mlp.Wo",),
        attention=r"\.layers\.\d+\.attn$",
        attention_output=r"\.attn\.Wo$",
        ffn_output=r"\.mlp\.Wo$",
    ),
    "gpt2": Arch(
        "gpt2",
        head=("score",),
        lora_targets=("c_attn",),
        ia3_targets=("c_attn", "mlp.c_proj"),
        ia3_feedforward=("mlp.c_proj",),
        attention_output=r"\.attn\.c_proj$",
        ffn_output=r"\.mlp\.c_proj$",
        fan_in_fan_out=True,
        decoder=True,
    ),
    "llama": Arch("llama", **_LLAMA_LIKE),
    "qwen2": Arch("qwen2", **_LLAMA_LIKE),
}


def arch_of(model: nn.Module) -> Arch:
    """The architecture record of a loaded classification model: its family's entry in `ARCHS`,
    or for a family without one, what `found_arch` reads from its structure."""
    return ARCHS.get(model.config.model_type) or found_arch(model)


def found_arch(model: nn.Module) -> Arch:
    """What the model's own structure says of a family liftkit has no record for: the head is
    every module the classification model adds beside its body (`base_model_prefix`), plus the
    body's pooler where it has one; a causal-LM checkpoint pools like a decoder. That is all
    `head` and `full` need; LoRA and IA3 then ask for `method.target_modules`, naming the
    model's linear layers, and adapters and prefixes say they have no placement."""
    model_type = model.config.model_type
    body = getattr(model, model.base_model_prefix, None)
    if not isinstance(body, nn.Module):
        raise LiftError(
            f"liftkit cannot tell the head from the body of this {model_type} model ({type(model).__name__} keeps "
            f"no {model.base_model_prefix!r} module): please report it"
        )
    head = [name for name, child in model.named_children() if child is not body and _has_weights(child)]
    pooler = getattr(body, "pooler", None)
    if isinstance(pooler, nn.Module) and _has_weights(pooler):
        head.insert(0, "pooler")
    if not head:
        raise LiftError(
            f"liftkit found no classification head beside the body of this {model_type} model ({type(model).__name__}): "
            "please report it"
        )
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    # a family transformers builds causal LMs of but no masked LM (GPT-NeoX, OPT, ...) pools like a decoder
    causal = model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    return Arch(model_type, head=tuple(head), decoder=causal or bool(getattr(model.config, "is_decoder", False)))


def _has_weights(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def linear_paths(model: nn.Module) -> list[str]:
    """Module path of every linear layer (GPT-2's transposed Conv1D included)."""
    return [name for name, mod in model.named_modules() if isinstance(mod, (nn.Linear, Conv1D))]


def layer_count(train_layers: int | str | None, total: int) -> int | None:
    """How many top layers `train_layers` means in a model of `total` layers (None: all)."""
    if isinstance(train_layers, str):
        return min(total, math.ceil(total * share(train_layers) / 100 - 1e-9))
    return train_layers


def transformer_layers(model: nn.Module) -> nn.ModuleList | None:
    """The model's stack of transformer layers (BERT `encoder.layer`, GPT-2 `h`, llama `layers`...):
    the outermost module list as long as the config's layer count, whatever wraps the model."""
    count = getattr(model.config, "num_hidden_layers", None)
    lists = [
        (name.count("."), module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) == count
    ]
    return min(lists, key=lambda x: x[0])[1] if lists else None


def top_layer_paths(model: nn.Module, train_layers: int | str | None) -> Callable[[str], bool]:
    """A test of module paths: inside one of the top `train_layers` layers (a count, or a share
    such as "50%"; every path when None).

    Methods use it to place their trainable parts only there, leaving a frozen bottom that
    training can cache (see `liftkit.frozen`).
    """
    layers = transformer_layers(model)
    if train_layers is None or (layers is None and isinstance(train_layers, str)):
        return lambda name: True  # a share of an unknown layer stack (ALBERT's shared layers): all of it
    if layers is None:
        raise LiftError(
            f"method.train_layers is set but liftkit found no layer stack in this {model.config.model_type} model: set it to null"
        )
    train_layers = layer_count(train_layers, len(layers))
    if train_layers > len(layers):
        raise LiftError(
            f"method.train_layers={train_layers} but the model has {len(layers)} layers: use at most {len(layers)}, or null for all"
        )
    path = next(name for name, module in model.named_modules() if module is layers)
    top = tuple(f"{path}.{i}." for i in range(len(layers) - train_layers, len(layers)))
    return lambda name: (name + ".").startswith(top)


def resolve_model_source(name: str) -> str:
    """Map a model name to something `from_pretrained` can load: a folder or a hub id."""
    model = packaged.find(name)
    if model is not None:
        try:
            return str(model.folder())
        except packaged.NotInstalled:
            if name.lower() != model.hub_id.lower():
                raise
            # its hub id, with the package absent: from the hub (or its cache), as any hub id
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise LiftError(f"model folder {name!r} has no config.json: point --model at a saved transformers model")
        return str(path)
    if not is_hub_id(name):
        raise LiftError(
            f"model path {name!r} does not exist: check the path, or pass a hub id such as distilbert-base-uncased"
        )
    return name  # a hub id


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Load a base model without transformers' load report and progress bar: predicting from a
    run rebuilds a fresh head that the saved one then replaces, so "classifier.weight MISSING ...
    Consider training" would be noise, not news."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="peft")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_error(name: str, exc: Exception) -> LiftError:
    """The one line for a model or tokenizer that would not load: remote code refused, or not found."""
    first = first_line(exc)
    if "trust_remote_code" in str(exc):
        return LiftError(
            f"model {name!r} needs its own code to load (its folder or repository ships custom modeling files), which "
            "liftkit does not run unless you ask: pass --trust-remote-code (liftkit.load(..., trust_remote_code=True)) if you trust it"
        )
    return LiftError(
        f"could not load model {name!r} ({first[:200]}): if it is a hub id, go online once or pre-download it "
        f"into the Hugging Face cache; or pass a local folder, or the embedded default {DEFAULT_MODEL!r}"
    )


def load_tokenizer(cfg: ModelConfig) -> PreTrainedTokenizerBase:
    source = resolve_model_source(cfg.name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise load_error(cfg.name, exc) from None
    if tokenizer.pad_token is None:  # GPT-2, llama: pad with EOS
        if tokenizer.eos_token is None:
            raise LiftError(f"tokenizer of {cfg.name!r} has neither a pad nor an EOS token: pick another model")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_classifier(
    cfg: ModelConfig,
    label_names: list[str],
    tokenizer: PreTrainedTokenizerBase,
    problem_type: str = "single_label_classification",
) -> nn.Module:
    """A sequence-classification model in fp32 with a fresh head of `len(label_names)` outputs.
    `problem_type` (the task's) goes into its config: a plain transformers pipeline reads it to
    pick softmax or sigmoid."""
    source = resolve_model_source(cfg.name)
    try:
        config = AutoConfig.from_pretrained(
            source,
            revision=cfg.revision,
            trust_remote_code=cfg.trust_remote_code,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
            problem_type=problem_type,
        )
        config.pad_token_id = tokenizer.pad_token_id
        model = AutoModelForSequenceClassification.from_pretrained(
            source,
            config=config,
            revision=cfg.revision,
            trust_remote_code=cfg.trust_remote_code,
            dtype=torch.float32,  # train in fp32; mixed precision is the training loop's business
        )
    except (OSError, ValueError) as exc:
        raise load_error(cfg.name, exc) from None
    # what peft's adapter_config.json and an exported config.json record as the base model
    model.config._name_or_path = model.name_or_path = portable_name(cfg.name)
    return model


def start_head_at(model: nn.Module, arch: Arch, bias: float, scale: float) -> None:
    """Start the head's output layer at `bias`, its initial weights times `scale` (a regression
    head at the training targets' mean and spread, see `liftkit.tasks.regression`): the layer of
    the head whose outputs are the model's (the last linear one, `num_labels` wide)."""
    outputs = [
        module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and module.out_features == model.config.num_labels
        and name.split(".")[0] in arch.head
    ]
    if not outputs:
        raise LiftError(
            f"liftkit found no {model.config.num_labels}-wide output layer in this {arch.model_type} model's head "
            f"({', '.join(arch.head)}): please report it"
        )
    with torch.no_grad():
        outputs[-1].weight.mul_(scale)
        if outputs[-1].bias is not None:
            outputs[-1].bias.fill_(bias)


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A digest that changes whenever the tokenizer would split text differently."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None), spec.pop("padding", None)  # call-time settings, not the split rules
        digest.update(json.dumps(spec, sort_keys=True).encode())
    else:
        digest.update(repr(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(repr(tokenizer.all_special_tokens).encode())
    return digest.hexdigest()[:16]


def length_limit(model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> int:
    """The most tokens one text may have: the tokenizer's declared limit where it declares one
    (transformers' "no limit" is a huge sentinel; RoBERTa's 514 positions hold 512 tokens), else
    the model's position table, else 512."""
    declared = [tokenizer.model_max_length] if tokenizer.model_max_length < 1_000_000 else []
    positions = [getattr(model.config, name, None) for name in ("max_position_embeddings", "n_positions")]
    return min(declared + [p for p in positions if isinstance(p, int) and p > 0] or [512])
