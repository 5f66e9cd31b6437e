"""Frozen-bottom caching: run the layers nothing trains once, train the top from their output.

When every trainable tensor sits in the top k transformer layers or after them (LoRA, IA3,
adapters or encoder prefixes placed with `method.train_layers`, partial full fine-tuning, the
`head` method), the embeddings and the layers below are a pure function of the input tokens.
Recomputing them in every step of every epoch repeats the same arithmetic, so liftkit runs them
once over the training and validation rows, keeps each row's hidden states (unpadded, fp32, in
host memory) and trains from those: a step then costs the top layers only.

Where the bottom ends is measured, not declared: one probe forward records which modules run
before the first module that owns a trainable tensor. Any method that touches the input (prompt
tuning, decoder prefixes through peft) or adapts layer 0 therefore gets no frozen bottom, and the
reason is logged. The frozen bottom always runs deterministically (eval mode, no dropout), cached
or not, which is what makes caching exact: with `train.cache_frozen: false`, or when the cache
would exceed `train.cache_max_gb`, the same bottom is recomputed in every step instead.
"""

from __future__ import annotations

import itertools
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from liftkit.batching import CachedSplit, PadCollator, Padding, TokenizedSplit, loader
from liftkit.modeling import transformer_layers
from liftkit.resources import fork_rng


def _shaped(hidden: torch.Tensor, extras: int | None) -> Any:
    """Hidden states in the shape the replaced layer returned them: bare (BERT, llama in
    transformers 5), or first of a tuple whose other items (attention weights, unrequested) are
    None (MPNet's `(hidden,)`, DeBERTa's `(hidden, attentions)`)."""
    return hidden if extras is None else (hidden, *[None] * extras)


class _StandIn(nn.Module):
    """Takes a cached bottom layer's place. Attributes the model's layer loop reads off its layers
    (ModernBERT's `attention_type`, which picks the mask) are answered by the replaced layer."""

    def __init__(self) -> None:
        super().__init__()
        self.__dict__["replaced"] = None  # not a submodule: its weights stay the model's, unshared
        self.extras: int | None = None  # set by `FrozenBottom.features` from the real layer's output

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if self.__dict__.get("replaced") is None:
                raise
            return getattr(self.__dict__["replaced"], name)


class _Skip(_StandIn):
    """Stands in for a cached bottom layer: passes the hidden states through untouched."""

    def __init__(self, layer: nn.Module, extras: int | None) -> None:
        super().__init__()
        self.__dict__["replaced"] = layer
        self.extras = extras

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return _shaped(hidden_states, self.extras)


class _Inject(_StandIn):
    """Stands in for the last cached layer: returns the batch's cached hidden states."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden: torch.Tensor | None = None

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if self.hidden is None:
            raise RuntimeError("the frozen bottom is cached but no cached hidden states were fed for this batch")
        return _shaped(self.hidden.to(hidden_states.dtype), self.extras)


def model_feed(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What of a batch the model itself takes: every input (ids, mask, token type ids), not the
    targets nor the cached states."""
    return {name: value for name, value in batch.items() if name not in ("labels", "hidden", "weights")}


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the frozen bottom has run."""


@dataclass
class FrozenBottom:
    """The first `depth` transformer layers (and the embeddings before them) of a model."""

    model: nn.Module
    layers: nn.ModuleList
    depth: int
    below: list[nn.Module]  # every module that has finished when layer depth-1 has: held in eval mode
    cached: bool = False
    inject: _Inject = field(default_factory=_Inject)

    @torch.no_grad()
    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hidden states leaving the frozen bottom for a batch, (rows, width, hidden)."""
        was_training = self.model.training
        self.model.eval()
        try:
            hidden, self.inject.extras = layer_output(self.model, self.layers[self.depth - 1], model_feed(batch))
        finally:
            self.model.train(was_training)
        return hidden

    def cache(self, data: TokenizedSplit, batch_size: int, padding: Padding, device: torch.device) -> CachedSplit:
        """Run the frozen bottom once over `data`; keep every row's hidden states on the host."""
        offsets = np.concatenate([[0], np.cumsum(data.sequence_lengths)])
        flat = None
        batches = loader(data, batch_size, padding, shuffle=False)
        group = data.group  # token sequences per row: a bi-encoder's batch rows are a, b, a, b, ...
        for indices, batch in zip(batches.batch_sampler, batches):
            hidden = self.features({k: v.to(device) for k, v in batch.items()}).float().cpu()
            if flat is None:
                flat = torch.empty(int(offsets[-1]), hidden.shape[-1])
            mask = batch["attention_mask"].bool()
            for row, j in enumerate(group * i + k for i in indices for k in range(group)):
                flat[offsets[j] : offsets[j + 1]] = hidden[row][mask[row]]
        return CachedSplit(data, flat, offsets)

    def hold(self) -> None:
        """Put the frozen bottom back in eval mode (after a `model.train()`)."""
        for module in self.below:
            module.eval()

    @contextmanager
    def top_only(self) -> Iterator[None]:
        """While inside, the bottom layers are replaced: the model starts from fed hidden states."""
        if not self.cached:
            yield
            return
        originals = [self.layers[i] for i in range(self.depth)]
        for i in range(self.depth - 1):
            self.layers[i] = _Skip(originals[i], self.inject.extras)
        self.inject.__dict__["replaced"] = originals[-1]
        self.layers[self.depth - 1] = self.inject
        try:
            yield
        finally:
            for i, layer in enumerate(originals):
                self.layers[i] = layer


def layer_output(model: nn.Module, layer: nn.Module, feed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int | None]:
    """The hidden states `layer` returns when `model` runs `feed`, the forward stopped there; and
    how many other items its output tuple held (None: it returned the states bare)."""
    out: list[Any] = []

    def grab(module: nn.Module, args: Any, output: Any) -> None:
        out.append(output)
        raise _Stop

    handle = layer.register_forward_hook(grab)
    try:
        model(**feed)
    except _Stop:
        pass
    finally:
        handle.remove()
    output = out[0]
    return (output[0], len(output) - 1) if isinstance(output, tuple) else (output, None)


class Runner(nn.Module):
    """Calls the model with a batch that may carry cached hidden states; keeps the bottom frozen."""

    def __init__(self, model: nn.Module, bottom: FrozenBottom):
        super().__init__()
        self.model = model
        self._bottom = [bottom]  # a list: not a submodule of the runner

    def train(self, mode: bool = True) -> Runner:
        super().train(mode)
        if mode:
            self._bottom[0].hold()
        return self

    def forward(self, hidden: torch.Tensor | None = None, **batch: torch.Tensor) -> Any:
        inject = self._bottom[0].inject
        inject.hidden = hidden
        try:
            return self.model(**batch)
        finally:
            inject.hidden = None


def frozen_depth(
    model: nn.Module, layers: nn.ModuleList, batch: dict[str, torch.Tensor]
) -> tuple[int, list[nn.Module], str]:
    """Probe one forward: layers that finish before any trainable tensor is used, the modules run
    by then, and (when no layer is frozen) why, in words.

    A trainable tensor counts as used when its module starts, or, for containers that are never
    called themselves (peft's `ParameterDict`s), when the nearest enclosing module that runs starts.
    """
    clock = itertools.count()
    first_start: dict[nn.Module, int] = {}
    last_finish: dict[nn.Module, int] = {}

    def started(module: nn.Module, args: Any) -> None:  # hooks must return None, or they replace the data
        first_start.setdefault(module, next(clock))

    def finished(module: nn.Module, args: Any, output: Any) -> None:
        last_finish[module] = next(clock)

    hooks = [m.register_forward_pre_hook(started) for m in model.modules()]
    hooks += [m.register_forward_hook(finished) for m in model.modules()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(**model_feed(batch))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    modules = dict(model.named_modules())
    use: dict[str, float] = {}
    for name, module in modules.items():
        if any(p.requires_grad for p in module.parameters(recurse=False)):
            path = name
            while modules[path] not in first_start and path:
                path = path.rpartition(".")[0]
            use[name] = first_start.get(modules[path], 0)
    start = min(use.values(), default=math.inf)
    depth = 0
    while depth < len(layers) and last_finish.get(layers[depth], math.inf) < start:
        depth += 1
    if depth == 0:
        first = next(name for name, t in use.items() if t == start)
        return (
            0,
            [],
            f"a trainable tensor ({first}) is used before or in the first layer: set method.train_layers to adapt only the top layers",
        )
    boundary = last_finish[layers[depth - 1]]
    return depth, [m for m, t in last_finish.items() if t <= boundary], ""


def plan(
    model: nn.Module,
    data: list[TokenizedSplit],
    padding: Padding,
    cache: bool,
    max_gb: float,
    batch_size: int,
    device: torch.device,
    log: Callable[[str], None],
) -> tuple[FrozenBottom | None, list[TokenizedSplit]]:
    """Find the frozen bottom of `model` and cache its output for each split in `data` when it fits.

    Returns the bottom (None when nothing below the first layer is frozen) and the splits to train
    and validate on: cached ones, or `data` unchanged.
    """
    layers = transformer_layers(model)
    if layers is None:
        log("frozen-bottom cache: off (found no transformer layer list in this model)")
        return None, data
    probe = PadCollator(padding.pad_id, padding.left)([data[0][i] for i in range(min(2, len(data[0])))])
    probe = {k: v.to(device) for k, v in probe.items()}
    depth, below, reason = frozen_depth(model, layers, probe)
    if depth == 0:
        log(f"frozen-bottom cache: off ({reason})")
        return None, data
    bottom = FrozenBottom(model, layers, depth, below)
    where = f"embeddings + {depth} of {len(layers)} layers frozen"
    tokens = sum(int(split.sequence_lengths.sum()) for split in data)
    need_gb = tokens * model.config.hidden_size * 4 / 2**30
    if not cache:
        log(f"frozen-bottom cache: off (train.cache_frozen is false); {where}, recomputed every step")
    elif padding.left:
        log(f"frozen-bottom cache: off (left padding shifts positions with the batch); {where}, recomputed every step")
    elif need_gb > max_gb:
        log(
            f"frozen-bottom cache: off (would need {need_gb:.1f} GB > train.cache_max_gb={max_gb:g}); {where}, recomputed every step"
        )
    else:
        key = _cache_key(model, depth, data, padding)
        if _kept["on"] and _kept["key"] == key:
            data = _kept["splits"]
            bottom.features(probe)  # the stand-ins return what its last layer returns, learned here, not by caching
            log(
                f"frozen-bottom cache: on ({where}; {need_gb * 1024:.0f} MB of hidden states reused from the previous run)"
            )
        else:
            _kept["key"] = _kept["splits"] = None  # the previous run's states go before these are made
            began = time.perf_counter()
            with fork_rng(device):
                # iterating a DataLoader draws from the global RNG: caching must not shift the dropout
                # masks training draws next, or cached and recomputed runs would differ
                data = [bottom.cache(split, batch_size, padding, device) for split in data]
            if _kept["on"]:
                _kept["key"], _kept["splits"] = key, data
            log(
                f"frozen-bottom cache: on ({where}; {need_gb * 1024:.0f} MB of hidden states computed once, in {time.perf_counter() - began:.1f} s)"
            )
        bottom.cached = True
    return bottom, data


_kept: dict[str, Any] = {"on": False, "key": None, "splits": None}  # see reuse_between_runs


@contextmanager
def reuse_between_runs() -> Iterator[None]:
    """Within, `plan` keeps the hidden states it computed last and hands them to the next run whose
    frozen bottom and tokens are the same (lift tune's trials differ in what trains on top, not
    in the pretrained bottom). One copy is kept, replaced when a run needs other states, and
    dropped on exit, so memory does not grow from run to run."""
    _kept["on"] = True
    try:
        yield
    finally:
        _kept.update(on=False, key=None, splits=None)


def _cache_key(model: nn.Module, depth: int, data: list[TokenizedSplit], padding: Padding) -> tuple[Any, ...]:
    """What the bottom's output depends on: the pretrained weights (by the checkpoint's name), the
    depth, the tokens and their padding; and the labels, which the cached splits carry along."""
    digests = tuple(split.digest for split in data)
    return (
        model.config._name_or_path,
        getattr(model.config, "_commit_hash", None),
        depth,
        padding.pad_id,
        padding.left,
        digests,
    )
