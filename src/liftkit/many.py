"""Many classifiers on one base model: one copy of its weights, its frozen bottom run once.

A run of the default recipe adapts the top half of its base model; every weight it did not
train is the pretrained base, bit for bit. Twenty such runs need those weights once, and a text
sent to several of them needs the bottom layers once:

- `Many.add` loads a run as its own model (unmerged, so the base stays the base), then points every
  tensor it did not train at the copy already loaded for an identical base. Identical is decided by
  a digest of the tensors, not by the model's name: two folders of the same name can hold different
  weights. Its own tensors (adapters, head) stay its own.
- `logits_many` computes one mixed batch. The rows of every member whose bottom layers are the
  base's go through that bottom once (identical token rows once), then each member's top layers and
  head run on its own rows from those hidden states (`liftkit.frozen`'s stand-ins). Members that
  touch layer 0 (prompt tuning, LoRA in every layer), decoders (left padding shifts positions) and
  exports (merged or ONNX) run their rows alone, as their single-model server would.

`liftkit.load_many` returns a `Many`; `lift serve` with several models holds one, and its batcher
calls `logits_many` with the requests it merged.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from liftkit.errors import LiftError
from liftkit.predict import Predictor, _batches, _check_batch_size, check_folder, inputs_of, load, sequences
from liftkit.run_dir import WEIGHTS, read_manifest

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class UnknownModel(LiftError):
    """No model of that name is loaded (404 on the server)."""


class ModelExists(LiftError):
    """A model of that name is already loaded (409 on the server)."""


@dataclass
class Member:
    """One loaded classifier: its predictor (encoding, labels, task, answers) and, for a run folder,
    its unmerged torch model with where its own layers start."""

    name: str
    path: Path
    predictor: Predictor
    model: Any = None  # torch model of a run folder; None: an export, run by its predictor alone
    layers: Any = None  # the model's transformer layer list
    depth: int = 0  # bottom layers computed once for every member of its base (0: runs alone)
    base: str = ""  # digest of the base weights it shares ("" when it shares none)
    own_bytes: int = 0  # bytes of the tensors only this member holds
    # a LoRA member (all it adds to its base is LoRA and a head): {projection path: (A, B, scale)}
    lora: dict[str, tuple[Any, Any, float]] | None = None

    def facts(self) -> dict[str, Any]:
        """What /info says of it beside its predictor's info."""
        return {
            "shares_base": self.base[:12] or None,
            "shared_layers": self.depth,
            "own_mb": round(self.own_bytes / 2**20, 3),
        }


@dataclass
class _Base:
    """The tensors of one base model that its members share, by parameter name."""

    tensors: dict[str, Any]
    users: set[str] = field(default_factory=set)


class Many:
    """Named classifiers loaded side by side, bases shared. At most `max_models` are held in memory:
    past that, the least recently used is unloaded and loaded again when asked for (`on_reload`
    hears of it)."""

    def __init__(
        self,
        backend: str = "auto",
        device: str = "auto",
        trust_remote_code: bool = False,
        max_models: int | None = None,
        on_reload: Callable[[str], None] = lambda name: None,
    ):
        if max_models is not None and max_models < 1:
            raise LiftError(f"max_models={max_models} must be at least 1 (or None: no bound)")
        self.backend, self.device, self.trust_remote_code = backend, device, trust_remote_code
        self.max_models, self.on_reload = max_models, on_reload
        self.paths: dict[str, Path] = {}  # every model by name, held in memory or not
        self.loaded: OrderedDict[str, Member] = OrderedDict()  # least recently used first
        self._bases: dict[str, _Base] = {}
        self._lock = threading.RLock()  # names and bases; loading itself runs outside it
        self._forward = threading.Lock()  # stand-ins are put in place per call: one mixed batch at a time

    @property
    def names(self) -> list[str]:
        return list(self.paths)

    def add(self, name: str, path: str | Path) -> Member:
        """Load the run or export at `path` under `name`; a bad name, a taken one or a folder that
        fails its checks is refused in one line, and nothing else changes."""
        path = Path(path)
        if not NAME.fullmatch(name):
            raise LiftError(
                f"model name {name!r} is not usable in a URL: use letters, digits, '.', '_' or '-' (at most 64)"
            )
        with self._lock:
            if name in self.paths:
                raise ModelExists(f"a model named {name!r} is already loaded: remove it first, or pick another name")
            self.paths[name] = path  # reserved while it loads: a second add of the name is refused
        try:
            member = self._load(name, path)
        except BaseException:
            with self._lock:
                self.paths.pop(name, None)
                self._release(name)
            raise
        with self._lock:
            self.loaded[name] = member
            self._bound(keep=name)
        return member

    def remove(self, name: str) -> None:
        """Forget `name`. Requests already computing with it finish: they hold the member itself."""
        with self._lock:
            if name not in self.paths:
                raise UnknownModel(f"no model named {name!r}: loaded are {', '.join(self.paths) or 'none'}")
            del self.paths[name]
            self.loaded.pop(name, None)
            self._release(name)

    def member(self, name: str) -> Member:
        """The loaded model `name`, loaded again first when `max_models` had unloaded it."""
        with self._lock:
            if name not in self.paths:
                raise UnknownModel(f"no model named {name!r}: loaded are {', '.join(self.paths) or 'none'}")
            member = self.loaded.get(name)
            if member is not None:
                self.loaded.move_to_end(name)
                return member
            path = self.paths[name]
        member = self._load(name, path)
        with self._lock:
            if name not in self.paths:  # removed while it reloaded
                self._release(name)
                raise UnknownModel(f"model {name!r} was removed: loaded are {', '.join(self.paths) or 'none'}")
            self.loaded[name] = member
            self._bound(keep=name)
        self.on_reload(name)
        return member

    def _bound(self, keep: str) -> None:
        """Unload the least recently used models past `max_models` (never `keep`, just asked for)."""
        while self.max_models is not None and len(self.loaded) > self.max_models:
            name = next(n for n in self.loaded if n != keep)
            del self.loaded[name]
            self._release(name)

    def _release(self, name: str) -> None:
        for digest, base in list(self._bases.items()):
            base.users.discard(name)
            if not base.users:
                del self._bases[digest]

    def _load(self, name: str, path: Path) -> Member:
        if check_folder(path) == "export" or self.backend == "onnx":
            return Member(name, path, load(path, self.backend, self.device, self.trust_remote_code))
        return _load_run(name, path, self.device, self.trust_remote_code, self._share)

    def _share(self, name: str, tensors: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The tensors a member loading `name` should use for its base tensors `tensors`: those of an
        identical base already loaded, else its own, now shared."""
        digest = tensor_digest(tensors)
        with self._lock:
            base = self._bases.setdefault(digest, _Base(tensors))
            base.users.add(name)
            return digest, base.tensors

    def logits_many(self, jobs: list[tuple[Member, list[Any]]]) -> list[np.ndarray]:
        """Logits of each (member, encoded rows) job, one mixed batch: the bottom layers of every
        member of one base run once, each member's top on its own rows."""
        with self._forward:
            return logits_many(jobs)

    def predict(
        self, texts: Any, model: str | Iterable[str] | None = None, batch_size: int = 64
    ) -> list[dict[str, Any]] | dict[str, list[dict[str, Any]]]:
        """`Predictor.predict` for the model named `model` (with one model loaded, it may be left
        out); several names: every text classified by each, answers keyed by name."""
        _check_batch_size(batch_size)
        several = model is not None and not isinstance(model, str)
        names = list(model) if several else [self._one(model)]
        members = [self.member(name) for name in names]
        rows = [m.predictor.encode(inputs_of(texts, m.predictor.pairs)) for m in members]
        logits = [np.empty((len(r), len(m.predictor.labels)), dtype=np.float32) for m, r in zip(members, rows)]
        for chunk in _batches(rows[0], batch_size, pad=True) if rows[0] else []:
            part = self.logits_many([(m, [r[i] for i in chunk]) for m, r in zip(members, rows)])
            for out, values in zip(logits, part):
                out[chunk] = values
        answers = {m.name: m.predictor.answers(m.predictor.task.probabilities(x)) for m, x in zip(members, logits)}
        return answers if several else answers[names[0]]

    def _one(self, name: str | None) -> str:
        if name is not None:
            return name
        if len(self.paths) != 1:
            raise LiftError(f"{len(self.paths)} models are loaded ({', '.join(self.paths)}): name one with model=...")
        return next(iter(self.paths))


def load_many(
    paths: Mapping[str, str | Path] | Iterable[str | Path],
    backend: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    max_models: int | None = None,
) -> Many:
    """Several run folders or exports, runs of one base sharing it: `{name: path}`, or paths
    (each named by its folder). `.predict(texts, model=name)` as `Predictor.predict`."""
    named = dict(paths) if isinstance(paths, Mapping) else named_paths([str(p) for p in paths])
    many = Many(backend, device, trust_remote_code, max_models)
    for name, path in named.items():
        many.add(name, path)
    return many


def named_paths(specs: list[str]) -> dict[str, Path]:
    """`PATH` or `NAME=PATH` each -> {name: path}; a folder's name names it unless given. Two of
    one name are refused."""
    named: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or "/" in name or not name:
            name, path = Path(spec).resolve().name, spec
        if name in named:
            raise LiftError(f"two models are named {name!r}: name one of them, e.g. {name}-2={path}")
        named[name] = Path(path)
    return named


def models_in(folder: Path) -> dict[str, Path]:
    """Every run folder or export directly inside `folder`, by its folder's name (--models-dir)."""
    if not folder.is_dir():
        raise LiftError(f"--models-dir {str(folder)!r} is not a folder: pass the folder that holds the runs")
    from liftkit.run_dir import EXPORT_INFO, MANIFEST

    found = {
        p.name: p
        for p in sorted(folder.iterdir())
        if p.is_dir() and ((p / MANIFEST).is_file() or (p / EXPORT_INFO).is_file())
    }
    if not found:
        raise LiftError(f"--models-dir {str(folder)!r} holds no run folder or export: pass the folder that holds them")
    return found


def tensor_digest(tensors: Mapping[str, Any]) -> str:
    """blake2b of every tensor's name, dtype, shape and bytes, in name order."""
    import torch

    h = hashlib.blake2b(digest_size=20)
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(memoryview(t.view(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def _load_run(
    name: str, path: Path, device: str, trust_remote_code: bool, share: Callable[[str, dict], tuple[str, dict]]
) -> Member:
    """A run folder as a member: its model unmerged, its untrained tensors pointed at the shared base."""
    import torch

    from liftkit.backends import torch_backend
    from liftkit.frozen import frozen_depth
    from liftkit.methods._common import head_paths
    from liftkit.modeling import transformer_layers
    from liftkit.predict import Encoder, _run_info
    from liftkit.tasks import task_named

    manifest = read_manifest(path)
    held: dict[str, Any] = {}

    def adopt(model: torch.nn.Module, arch: Any) -> None:
        heads = held["heads"] = head_paths(model, arch)
        tensors = {n: t for n, t in _named_tensors(model) if not any(n.startswith(h + ".") for h in heads)}
        tensors = {n: t for n, t in tensors.items() if n not in saved}
        held["base"], shared = share(name, tensors)
        for tensor_name, tensor in _named_tensors(model):
            # its own copy of what it does not share (the head): loaded tensors are views of the
            # mapped checkpoint file, which one of them would keep in memory whole
            _point(model, tensor_name, shared[tensor_name] if tensor_name in shared else _copy(tensor))
        held["shared"] = {id(t): t._version for t in shared.values()}

    saved = _saved_names(path)
    model = torch_backend.load_run_model(path, manifest, trust_remote_code, merge=False, share=adopt)
    changed = [1 for t in _tensor_values(model) if id(t) in held["shared"] and t._version != held["shared"][id(t)]]
    if changed:  # a method that writes into base tensors must not share them
        raise LiftError(
            f"run {str(path)!r}: its method wrote into {len(changed)} base tensor(s) while loading: report it"
        )
    own = [t for t in _tensor_values(model) if id(t) not in held["shared"]]
    for param in model.parameters():  # what frozen_depth reads: a member's own tensors as "trained"
        param.requires_grad_(id(param) not in held["shared"])
    encoder = Encoder.of_run(path, manifest)
    backend = torch_backend.TorchBackend(model, device)
    predictor = Predictor(
        manifest.labels, encoder, backend, _run_info(manifest, "torch"), task_named(manifest.task), manifest.thresholds
    )
    layers = transformer_layers(model)
    depth = 0
    if layers is not None and not encoder.left and encoder.pad_id is not None:
        probe = encoder.pad(encoder.encode([("warm-up", "warm-up")] if encoder.pairs else ["warm-up"]))
        depth = frozen_depth(model, layers, {k: torch.from_numpy(v).to(backend.device) for k, v in probe.items()})[0]
    own_bytes = sum(t.numel() * t.element_size() for t in own)
    lora = _lora_of(model, set(held["shared"]), held["heads"])
    return Member(name, path, predictor, model, layers, depth, held["base"], own_bytes, lora)


def _lora_of(model: Any, shared: set[int], heads: set[str]) -> dict[str, tuple[Any, Any, float]] | None:
    """A peft LoRA model's adapted projections as {path in the base model: (A, B, scale)}, when
    LoRA (plain: no DoRA, no bias) and the head are all it holds beside the shared base; else None."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    if not isinstance(model, PeftModel):
        return None
    body = model.get_base_model()
    out, covered = {}, set()
    for name, module in body.named_modules():
        if isinstance(module, LoraLayer):
            adapter = module.active_adapters[0]
            a, b = module.lora_A[adapter], module.lora_B[adapter]
            if module.use_dora.get(adapter) or getattr(b, "bias", None) is not None or not hasattr(a, "weight"):
                return None
            out[name] = (a.weight, b.weight, float(module.scaling[adapter]))
            covered |= {id(a.weight), id(b.weight)}
    for name, param in model.named_parameters():  # the PeftModel's: a prompt encoder sits beside the body
        name = name.removeprefix("base_model.model.")
        if id(param) not in shared and id(param) not in covered and not any(name.startswith(h + ".") for h in heads):
            return None
    return out


def _saved_names(path: Path) -> set[str]:
    """The base tensors a run trained, which it must not share: a liftkit-native method's file
    names them (the top layers of partial full fine-tuning, the head); peft's adapters never write
    into base tensors."""
    from safetensors import safe_open

    if not (path / WEIGHTS).is_file():
        return set()
    with safe_open(str(path / WEIGHTS), framework="pt") as f:
        return set(f.keys())


def _named_tensors(model: Any) -> list[tuple[str, Any]]:
    return [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]


def _tensor_values(model: Any) -> list[Any]:
    return [*model.parameters(), *model.buffers()]


def _copy(tensor: Any) -> Any:
    import torch

    copy = tensor.detach().clone()
    return (
        torch.nn.Parameter(copy, requires_grad=tensor.requires_grad)
        if isinstance(tensor, torch.nn.Parameter)
        else copy
    )


def _point(model: Any, name: str, tensor: Any) -> None:
    """Make the model's tensor `name` the shared `tensor` (its own copy is then freed)."""
    parent, _, leaf = name.rpartition(".")
    module = model.get_submodule(parent)
    if leaf in module._parameters:
        module._parameters[leaf] = tensor
    else:
        module._buffers[leaf] = tensor


def logits_many(jobs: list[tuple[Member, list[Any]]]) -> list[np.ndarray]:
    """Each job's logits: members sharing a bottom computed together (a member's jobs as one), the
    others alone."""
    out: list[Any] = [None] * len(jobs)
    together: dict[str, dict[int, list[int]]] = defaultdict(dict)  # base -> member -> its jobs
    for i, (member, rows) in enumerate(jobs):
        if member.depth and rows:
            together[member.base].setdefault(id(member), []).append(i)
        else:
            out[i] = member.predictor.logits_of(rows, batch_size=max(len(rows), 1), pad=True)
    for by_member in together.values():
        groups = list(by_member.values())
        items = [(jobs[group[0]][0], [row for i in group for row in jobs[i][1]]) for group in groups]
        for group, logits in zip(groups, _shared_pass(items)):
            ends = np.cumsum([len(jobs[i][1]) for i in group])
            for i, part in zip(group, np.split(logits, ends[:-1])):
                out[i] = part
    return out


def _shared_pass(items: list[tuple[Member, list[Any]]]) -> list[np.ndarray]:
    """The bottom once over every distinct token row of `items`; then the top layers of every
    LoRA member at once, as one batch (the base weights applied to all rows together, each row's
    LoRA product added to it) and each one's head; the top of any other member on its own."""
    import torch

    from liftkit.frozen import layer_output

    depth = min(member.depth for member, _ in items)
    unique: dict[Any, int] = {}
    where = [[unique.setdefault(_key(seq), len(unique)) for seq in sequences(rows)] for _, rows in items]
    distinct: list[Any] = [None] * len(unique)
    for (_, rows), places in zip(items, where):
        for seq, place in zip(sequences(rows), places):
            distinct[place] = seq
    runner = items[0][0]
    states: list[Any] = [None] * len(distinct)
    extras = None
    with torch.inference_mode():  # members are in eval mode since their load
        for chunk in _batches(distinct, len(distinct), pad=True):
            feed = _tensors(runner, runner.predictor.encoder.pad([distinct[i] for i in chunk]))
            hidden, extras = layer_output(runner.model, runner.layers[depth - 1], feed)
            for row, i in enumerate(chunk):
                states[i] = hidden[row, : len(distinct[i])]
        stacked = [i for i, (member, _) in enumerate(items) if member.lora is not None]
        if len(stacked) < 2:
            stacked = []
        tops = dict(
            zip(
                stacked,
                _stacked_top(
                    [items[i] for i in stacked], [[states[p] for p in where[i]] for i in stacked], depth, extras
                ),
            )
        )
        out = []
        for i, (member, rows) in enumerate(items):
            if i in tops:  # the top already ran: the head from the last layer's output
                hidden, start = tops[i], len(member.layers)
            else:
                hidden, start = [states[p] for p in where[i]], depth
            logits = _top(member, rows, hidden, start, extras)
            out.append(member.predictor.pooled(rows, logits))
    return out


def _top(member: Member, rows: list[Any], hidden: list[Any], depth: int, extras: int | None) -> np.ndarray:
    """The member's layers from `depth` on and its head, from the hidden states of its sequences."""
    from torch.nn.utils.rnn import pad_sequence

    from liftkit.frozen import FrozenBottom

    top = FrozenBottom(member.model, member.layers, depth, [], cached=True)
    top.inject.extras = extras
    with top.top_only():
        top.inject.hidden = pad_sequence(hidden, batch_first=True)
        logits = member.model(**_tensors(member, member.predictor.encoder.pad(rows))).logits
    return logits.float().cpu().numpy()


def _stacked_top(
    items: list[tuple[Member, list[Any]]], hidden: list[list[Any]], depth: int, extras: int | None
) -> list[list[Any]]:
    """The top layers (from `depth`) of several LoRA members of one base as one batch: the first
    one's model with its adapter off runs every member's sequences, and a hook on each adapted
    projection adds each row's own LoRA product, scale * B(A(x)). Each member's sequences' states
    leaving the last layer."""
    if not items:
        return []
    import torch
    from torch.nn.utils.rnn import pad_sequence

    from liftkit.frozen import FrozenBottom, layer_output

    runner = items[0][0]
    owner = [k for k, (_, rows) in enumerate(items) for _ in sequences(rows)]
    seqs = [seq for _, rows in items for seq in sequences(rows)]
    states = [h for part in hidden for h in part]
    paths = {path for member, _ in items for path in member.lora}
    deltas: dict[str, list[tuple[Any, Any, Any, float]]] = {}  # this chunk's: path -> (rows, A, B, scale)

    def adds(path: str) -> Callable[..., Any]:
        def hook(module: Any, args: Any, output: Any) -> Any:
            x = args[0]
            for rows, a, b, scale in deltas.get(path, ()):
                output.index_add_(0, rows, (x[rows] @ a.T) @ b.T, alpha=scale)
            return output

        return hook

    body = runner.model.get_base_model()
    hooks = [body.get_submodule(path).register_forward_hook(adds(path)) for path in paths]
    inject = FrozenBottom(runner.model, runner.layers, depth, [], cached=True)
    inject.inject.extras = extras
    out: list[Any] = [None] * len(seqs)
    try:
        with runner.model.disable_adapter(), inject.top_only():
            for chunk in _batches(seqs, len(seqs), pad=True):  # rows of like length together, as a single model's
                deltas.clear()
                for k in sorted({owner[i] for i in chunk}):
                    rows = torch.tensor([pos for pos, i in enumerate(chunk) if owner[i] == k])
                    for path, (a, b, scale) in items[k][0].lora.items():
                        deltas.setdefault(path, []).append((rows, a, b, scale))
                inject.inject.hidden = pad_sequence([states[i] for i in chunk], batch_first=True)
                feed = _tensors(runner, runner.predictor.encoder.pad([seqs[i] for i in chunk]))
                leaving = layer_output(runner.model, runner.layers[-1], feed)[0]
                for pos, i in enumerate(chunk):
                    out[i] = leaving[pos, : len(seqs[i])]
    finally:
        for handle in hooks:
            handle.remove()
    spans = np.cumsum([0] + [len(part) for part in hidden])
    return [out[int(start) : int(end)] for start, end in zip(spans[:-1], spans[1:])]


def _tensors(member: Member, feed: dict[str, np.ndarray]) -> dict[str, Any]:
    import torch

    device = member.predictor.backend.device
    return {k: torch.from_numpy(v).to(device) for k, v in feed.items()}


def _key(seq: Any) -> tuple[Any, ...]:
    types = getattr(seq, "type_ids", None)
    return (tuple(seq), tuple(types) if types is not None else None)
