"""The `lift run` recipe: wire data -> model + method -> train -> evaluate -> record -> save.

Each step is a call into a component module; this file only decides their order, which callbacks
listen to training, and what is written where (through `run_dir`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import itertools
import os
import platform
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import peft
import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import set_seed

from liftkit import bi_encoder, checkpoint, pages, report, run_dir, tracking
from liftkit.batching import (
    AUTO_PERCENTILE,
    Padding,
    TokenizedSplit,
    auto_max_length,
    loader,
    model_inputs,
    pair_separator,
    tokenize,
)
from liftkit.bi_encoder import is_sentence_encoder
from liftkit.callbacks import Callback, Checkpointer, EarlyStopping, MetricLogging, ProgressBar
from liftkit.config import RunConfig, portable_name
from liftkit.data import Splits, load_splits
from liftkit.errors import LiftError, first_line
from liftkit.evaluate import evaluate
from liftkit.losses import check_loss
from liftkit.methods import METHODS, Method
from liftkit.modelcard import model_card
from liftkit.modeling import (
    Arch,
    arch_of,
    length_limit,
    load_classifier,
    load_tokenizer,
    resolve_model_source,
    start_head_at,
)
from liftkit.record import RunInfo, RunRecord, TrainSummary
from liftkit.resources import fork_rng, parameter_counts
from liftkit.tasks import TASKS, Task, check_best_metric
from liftkit.tracking import JsonlLogger
from liftkit.train import fit, make_accelerator
from liftkit.version import __version__


@dataclass
class RunResult:
    run_dir: Path
    record: RunRecord

    @property
    def metrics(self) -> dict[str, Any]:
        """The document written to metrics.json."""
        return self.record.to_dict()


@dataclass
class _Prepared:
    """Everything loaded before the base evaluation: data, tokens, model, method, hardware."""

    splits: Splits
    tokens: dict[str, TokenizedSplit]
    tokenizer: Any
    model: torch.nn.Module
    arch: Arch
    method: Method
    padding: Padding
    accelerator: Accelerator
    max_length: int  # data.max_length resolved: tokens per text at most
    task: Task  # what the labels call for (liftkit.tasks), decided with the data
    inputs: tuple[str, ...]  # what the model is fed per batch (batching.model_inputs)
    pair_separator: str | None  # sentence pairs joined into one text by this (batching.pair_separator)
    pair_encoding: str | None  # sentence pairs: cross or bi (liftkit.bi_encoder); None for single texts


def preflight(cfg: RunConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """The checks that need no data and write nothing: the config, the model path, and a run
    folder that suits the request. Returns the run folder."""
    if resume and overwrite:
        raise LiftError("--resume continues the run in a folder and --overwrite deletes it: pass one of them")
    cfg.validate()
    resolve_model_source(cfg.model.name)  # a bad model path fails before any data is read
    out = run_dir.new_run_dir(cfg.output_dir, cfg.data.dataset, cfg.method.name)
    _check_folder(out, resume, overwrite)
    return out


def _check_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """A new run goes into a folder with no run in it (or replaces one with --overwrite); --resume
    needs an unfinished one."""
    if overwrite:
        return
    if run_dir.finished(out):
        what = (
            "nothing is left to resume"
            if resume
            else "pick another --output-dir (rerunning its config.yaml? add --output-dir NEW), or --overwrite it to replace it"
        )
        raise LiftError(f"{str(out)!r} already holds a finished run: {what}")
    if run_dir.started(out) and not resume:
        raise LiftError(f"{str(out)!r} holds an interrupted run: --resume it, or --overwrite it to start again")


def is_main_process() -> bool:
    """The process that owns the run folder: the only one in a plain run, rank 0 in a data-parallel
    launch (torch.distributed.run sets RANK and WORLD_SIZE)."""
    return os.environ.get("WORLD_SIZE", "1") == "1" or os.environ.get("RANK", "0") == "0"


def run(
    cfg: RunConfig, resume: bool = False, log: Callable[[str], None] = print, overwrite: bool = False
) -> RunResult:
    """Fine-tune as `cfg` says, evaluate before and after, save the run directory.

    The main process holds the folder's lock throughout (one run per folder) and is the only one
    that writes there. A run that fails after `preflight` leaves error.json (and error.txt, the
    traceback) in its folder; one that fails `preflight` writes nothing. `overwrite` deletes the
    run in the folder first; `resume` first recovers a checkpoint swap a kill interrupted. A run
    that fails before its first checkpoint in a folder it named itself (no --output-dir) removes
    that folder: nothing was trained, and the error has been shown."""
    named_here = cfg.output_dir is None and not resume  # runs/<dataset>-<method>-<time>, made by this call
    out = preflight(cfg, resume, overwrite)
    named_here = named_here and not out.exists()
    cfg.output_dir = str(out)
    main = is_main_process()
    with run_dir.lock(out) if main else contextlib.nullcontext():
        if main:
            _check_folder(out, resume, overwrite)  # again, now that no other run can write meanwhile
            if overwrite and (run_dir.finished(out) or run_dir.started(out)):
                log(f"--overwrite: deleting the run in {out}")
                run_dir.clear(out)
            if resume:
                checkpoint.recover(run_dir.checkpoint_dir(out))
            else:  # a resume writes its config once its data is known to be the interrupted run's
                run_dir.write_text(out / run_dir.CONFIG, cfg.to_yaml())
        try:
            record = _run(cfg, out, resume, log)
        except (Exception, KeyboardInterrupt) as exc:
            if main and named_here and not run_dir.checkpoint_dir(out).exists():
                shutil.rmtree(
                    out, ignore_errors=True
                )  # nothing trained, the error is on the terminal: no empty folder
            elif main:
                run_dir.write_error(out, exc)
            raise
        if main:
            run_dir.clear_error(out)
    return RunResult(out, record)


def train_only(cfg: RunConfig, callbacks: Sequence[Callback] = (), log: Callable[[str], None] = print) -> TrainSummary:
    """Fit as `cfg` says, with validation every epoch, and return what training did; no test pass
    and no folder written. This is a search trial (`lift tune`): the search must never see the
    test split, and its trials are not runs anyone keeps."""
    cfg.validate()
    p = _prepare(cfg, log)
    model = p.method.apply(p.model, cfg.method, p.arch)
    callbacks = [EarlyStopping(cfg.train.early_stopping_patience), *callbacks]
    return _fit(cfg, p, model, callbacks, log)


def _fit(
    cfg: RunConfig, p: _Prepared, model: torch.nn.Module, callbacks: list[Callback], log: Callable[[str], None]
) -> TrainSummary:
    """Train `model` on the prepared training split, validating on the validation split."""
    train, validation = p.tokens["train"], p.tokens["validation"]
    return fit(
        model,
        train,
        validation,
        cfg.train,
        p.accelerator,
        lr=cfg.learning_rate,
        padding=p.padding,
        callbacks=callbacks,
        log=log,
    )


def _prepare(cfg: RunConfig, log: Callable[[str], None]) -> _Prepared:
    splits = load_splits(cfg.data, cfg.train.seed, cfg.task.name)
    log(
        f"data: {splits.source} | train {len(splits.train)}, validation {len(splits.validation)}, test {len(splits.test)} | {TASKS[splits.task].target(splits.label_names)}"
    )
    task = TASKS[splits.task]
    log(f"task: {task.name} ({splits.task_reason})")
    check_best_metric(cfg.train.best_metric, task, len(splits.label_names))
    check_loss(cfg.train, task)
    for warning in splits.warnings:
        log(f"warning: {warning}")
    tokenizer = load_tokenizer(cfg.model)
    set_seed(cfg.train.seed)  # before the head is initialised: same seed, same run
    model = load_classifier(cfg.model, splits.label_names, tokenizer, task.problem_type)
    arch = arch_of(model)
    model, encoding, separator = _pairs(cfg, splits, tokenizer, model, arch, log)
    # virtual tokens (prompt, p-tuning; a decoder's prefix shifts positions too) take positions from the texts
    limit = length_limit(model, tokenizer) - getattr(cfg.method, "num_virtual_tokens", 0)
    max_length = _max_length(cfg.data.max_length, splits, tokenizer, limit, log, encoding)
    inputs = model_inputs(tokenizer, inspect.signature(model.forward).parameters)  # BERT: token_type_ids too
    chunk = _chunking(cfg, splits, tokenizer, max_length)
    tokens = _tokens(splits, tokenizer, max_length, inputs, encoding, chunk, log)
    if task.head_start is not None:
        _start_head(
            cfg,
            model,
            arch,
            encoding,
            tokens["train"],
            Padding.of(tokenizer),
            task.head_start(splits.targets("train")),
        )
    accelerator = make_accelerator(cfg.train)
    method = METHODS[cfg.method.name]
    with torch.random.fork_rng():  # dry run on a copy: a method that cannot apply fails now, not after evaluation
        method.apply(copy.deepcopy(model), cfg.method, arch)
    # the tokenizer's own side, except that a decoder seeing embeddings must pad left: its last
    # position must be a real token (see methods.prompt)
    padding = Padding.of(
        tokenizer, left=tokenizer.padding_side == "left" or (arch.decoder and method.feeds_embeddings)
    )
    return _Prepared(
        splits,
        tokens,
        tokenizer,
        model,
        arch,
        method,
        padding,
        accelerator,
        max_length,
        task,
        inputs,
        separator,
        encoding,
    )


def _tokens(
    splits: Splits,
    tokenizer: Any,
    max_length: int,
    inputs: tuple[str, ...],
    encoding: str | None,
    chunk: tuple[int, str] | None,
    log: Callable[[str], None],
) -> dict[str, TokenizedSplit]:
    """Every split tokenized as the run feeds it; the log says what was cut or windowed."""
    tokens = {
        name: tokenize(
            getattr(splits, name), tokenizer, max_length, splits.targets(name), inputs, encoding or "cross", chunk
        )
        for name in ("train", "validation", "test")
    }
    if chunk:
        shown = ", ".join(f"{name} {len(getattr(splits, name)):,} -> {len(data):,}" for name, data in tokens.items())
        log(
            f"long texts: windows of {max_length} tokens sharing {chunk[0]}, {chunk[1]}-pooled per text ({shown} rows)"
        )
    cut = {name: data.cut for name, data in tokens.items() if data.cut}
    if cut:
        shown = ", ".join(f"{name} {n:,} of {len(tokens[name]):,}" for name, n in cut.items())
        how = "each text cut alone" if encoding == "bi" else "the longer text first (longest_first)"
        log(f"pairs longer than {max_length} tokens cut, {how}: {shown}")
    return tokens


def _chunking(cfg: RunConfig, splits: Splits, tokenizer: Any, max_length: int) -> tuple[int, str] | None:
    """data.long_texts chunk as (stride, pool), checked against the data and the window; None: truncate."""
    if cfg.data.long_texts != "chunk":
        return None
    if splits.pair_columns:
        raise LiftError("data.long_texts=chunk windows single texts, and this data holds sentence pairs: use truncate")
    room = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if cfg.data.chunk_stride >= room:
        raise LiftError(
            f"data.chunk_stride={cfg.data.chunk_stride} leaves windows of {max_length} tokens ({room} of text) nothing new: "
            f"use less than {room}, or a larger data.max_length"
        )
    return cfg.data.chunk_stride, cfg.data.chunk_pool


def _start_head(
    cfg: RunConfig,
    model: torch.nn.Module,
    arch: Arch,
    encoding: str | None,
    train: TokenizedSplit,
    padding: Padding,
    start: tuple[float, float],
) -> None:
    """Start the head where the task says (a regression head at the training targets' mean and
    spread). A bi-encoder's head reads cosines, so it starts on those of about 512 random training
    pairs (liftkit.bi_encoder.start_head), the global RNG forked so the run is the same with or without."""
    if encoding != "bi":
        start_head_at(model, arch, *start)
        return
    batch_size = 64
    batches = loader(train, batch_size, padding, shuffle=True, seed=cfg.train.seed)
    with fork_rng(torch.device("cpu")):
        bi_encoder.start_head(model, itertools.islice(batches, max(1, 512 // batch_size)), *start)


def _pairs(
    cfg: RunConfig, splits: Splits, tokenizer: Any, model: torch.nn.Module, arch: Arch, log: Callable[[str], None]
) -> tuple[torch.nn.Module, str | None, str | None]:
    """Sentence pairs: how they are encoded (data.pair_encoding, `auto` decided from the base
    model), the model for it (a bi-encoder wraps the classifier's body) and the text joining a
    pair the tokenizer does not separate (cross-encoded decoders). None, None for single texts."""
    if not splits.pair_columns:
        return model, None, None
    a, b = splits.pair_columns
    found = "data.text_pair_column" if cfg.data.text_pair_column else "found: GLUE column names"
    encoding = cfg.data.pair_encoding
    if encoding == "auto":
        sentence = is_sentence_encoder(resolve_model_source(cfg.model.name), cfg.model.revision)
        encoding = "bi" if sentence else "cross"
        why = "a sentence-transformers model" if sentence else "not a sentence-transformers model"
        encoding_reason = f"{encoding} (auto: the base is {why})"
    else:
        encoding_reason = f"{encoding} (data.pair_encoding)"
    separator = pair_separator(tokenizer) if encoding == "cross" else None
    how = {
        "bi": "each text encoded alone, mean-pooled, a head on the pair",
        "cross": f"in one sequence, joined by {separator!r}"
        if separator
        else "in one sequence, as the tokenizer's pair template says",
    }[encoding]
    log(f"sentence pairs: {a!r} + {b!r} ({found}); encoding {encoding_reason}: {how}")
    return (bi_encoder.wrap(model, arch) if encoding == "bi" else model), encoding, separator


def _max_length(
    setting: int | str, splits: Splits, tokenizer: Any, limit: int, log: Callable[[str], None], encoding: str | None
) -> int:
    """data.max_length as a number of tokens: as set, or (auto) from the training texts; at most `limit`."""
    if setting != "auto":
        if setting > limit:
            log(
                f"warning: data.max_length={setting} is more than this model takes with this method ({limit} tokens): texts are cut at {limit}"
            )
        return min(int(setting), limit)  # int: a numpy integer built in Python would not go into JSON
    chosen = auto_max_length(splits.train, tokenizer, limit, encoding or "cross")
    log(
        f"max length: {chosen} tokens (auto: {AUTO_PERCENTILE}th percentile of the training texts' lengths; this model takes {limit} with this method)"
    )
    return chosen


def _run(cfg: RunConfig, out: Path, resume: bool, log: Callable[[str], None]) -> RunRecord:
    p = _prepare(cfg, log)
    # what the run resolved from its data, kept with each checkpoint and compared on resume
    train = p.tokens["train"]
    settings = {
        "data.max_length": p.max_length,
        "training rows": len(train),
        "training data digest": train.digest[:12],
    }
    if resume:
        _check_unchanged(out, settings)
        if p.accelerator.is_main_process:
            run_dir.write_text(out / run_dir.CONFIG, cfg.to_yaml())
    device, labels = p.accelerator.device, p.splits.label_names
    test_loader = loader(p.tokens["test"], cfg.train.eval_batch_size, p.padding, shuffle=False)
    base = _evaluate_base(cfg, p, test_loader, log)
    model = p.method.apply(p.model, cfg.method, p.arch)
    params = parameter_counts(model)
    share = f"{params.trainable_params:,} of {params.total_params:,} parameters ({params.trainable_percent:.2f}%)"
    log(f"method {cfg.method.name} (lr {cfg.learning_rate:g}): training {share}")
    main = p.accelerator.is_main_process
    # the values used, not null for "the method's default" or auto for "from the data"
    hyper = {
        **tracking.flatten(cfg.to_dict()),
        "train.learning_rate": cfg.learning_rate,
        "data.max_length": p.max_length,
    }
    trackers = tracking.trackers(cfg.train.report_to, out, hyper) if main else []
    with contextlib.ExitStack() as opened:
        callbacks = _listeners(cfg, out, resume, settings, trackers, opened, log)
        trained = _fit(cfg, p, model, callbacks, log)
        model = p.accelerator.unwrap_model(model)
        thresholds = _thresholds(cfg, p, model, log)
        log(f"evaluating the fine-tuned model (epoch {trained.best_epoch}) on test ...")
        with p.accelerator.autocast():
            tuned = evaluate(model, test_loader, device, labels, thresholds)
        record = RunRecord(
            run=_run_info(cfg, device),
            data=p.splits.summary(),
            parameters=params,
            majority=p.task.reference(p.splits.targets("train"), p.splits.targets("test"), labels),
            base=base.metrics if base else None,
            finetuned=tuned.metrics,
            train=trained,
            mistakes=_mistakes(p, tuned, thresholds),
        )
        if main:
            _finish(out, cfg, p, model, record, thresholds, (tuned, base), trackers, log)
    return record


def _mistakes(p: _Prepared, tuned: Any, thresholds: list[float] | None) -> list[Any]:
    """The fine-tuned model's 20 surest mistakes on test (largest errors, for a score), pairs with
    their second text."""
    test = p.splits.test
    found = p.task.mistakes(tuned.probabilities, tuned.labels, test.texts, p.splits.label_names, thresholds, 20)
    for mistake in found if test.pairs is not None else ():
        mistake.text_pair = test.pairs[mistake.row][:2000]
    return found


def _finish(
    out: Path,
    cfg: RunConfig,
    p: _Prepared,
    model: torch.nn.Module,
    record: RunRecord,
    thresholds: list[float] | None,
    evaluations: tuple[Any, Any],
    trackers: list[Any],
    log: Callable[[str], None],
) -> None:
    """What the main process writes once the run is measured: test predictions, the saved run
    (its manifest last), then what stands beside it (report.html, the trackers)."""
    tuned, base = evaluations
    run_dir.write_predictions(out, tuned.labels, tuned.probabilities, base.probabilities if base else None)
    _save(out, cfg, p, model, record, thresholds)
    _beside(f"report.html (`lift report {out}` draws it again)", partial(pages.write_run_report, out), log)
    for tracker in trackers:
        _beside(f"sending the finished run to {cfg.train.report_to}", partial(tracker.finish, record, out), log)


def _evaluate_base(cfg: RunConfig, p: _Prepared, test_loader: Any, log: Callable[[str], None]) -> Any:
    """The base model with its untrained head on test (None when the config skips it)."""
    if not cfg.evaluate_base:
        return None
    log("evaluating the base model (untrained head) on test ...")
    device = p.accelerator.device
    p.model.to(device)
    # iterating a DataLoader draws from the global RNG: fork it, so that evaluating the base
    # or not leaves the adapter's initialisation and the dropout masks unchanged
    with p.accelerator.autocast(), fork_rng(device):
        return evaluate(p.model, test_loader, device, p.splits.label_names)


def _listeners(
    cfg: RunConfig,
    out: Path,
    resume: bool,
    settings: dict[str, Any],
    trackers: list[Any],
    opened: contextlib.ExitStack,
    log: Callable[[str], None],
) -> list[Callback]:
    """What listens to this run's training: checkpoints, early stopping, history.jsonl and the
    trackers (closed by `opened` however the run ends), the progress bar."""
    history = JsonlLogger(run_dir.history_path(out))
    opened.callback(history.close)
    for tracker in trackers:  # a tracker that fails to close must not hide the run's own outcome
        opened.callback(_beside, f"closing the {cfg.train.report_to} run", tracker.close, log)
    return [
        Checkpointer(run_dir.checkpoint_dir(out), resume, log, settings),
        EarlyStopping(cfg.train.early_stopping_patience),
        MetricLogging([history, *trackers], cfg.train.log_every),
        ProgressBar(),
    ]


def _thresholds(
    cfg: RunConfig, p: _Prepared, model: torch.nn.Module, log: Callable[[str], None]
) -> list[float] | None:
    """The task's decision thresholds (multi-label), tuned on the validation split when
    task.threshold is `tuned`: the kept epoch's validation probabilities, never the test split's."""

    def validation() -> tuple[Any, Any]:
        log("choosing each label's decision threshold on the validation split ...")
        val_loader = loader(p.tokens["validation"], cfg.train.eval_batch_size, p.padding, shuffle=False)
        with p.accelerator.autocast():
            result = evaluate(model, val_loader, p.accelerator.device, p.splits.label_names)
        return result.probabilities, result.labels

    chosen = p.task.thresholds(cfg.task.threshold, p.splits.label_names, validation, cfg.task.min_positives)
    if chosen is not None:
        shown = ", ".join(f"{name} {t:.2f}" for name, t in zip(p.splits.label_names, chosen))
        log(f"thresholds ({cfg.task.threshold if not isinstance(cfg.task.threshold, dict) else 'given'}): {shown}")
    return chosen


def _check_unchanged(out: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume on other training data than the interrupted run's (changed files, or a
    data.* override given with --resume): its remaining epochs would train on other inputs."""
    saved = (checkpoint.last_state(run_dir.checkpoint_dir(out)) or {}).get(
        "settings", {}
    )  # older checkpoints kept none
    changed = [
        f"{key} {saved[key]} then, {value} now" for key, value in settings.items() if saved.get(key, value) != value
    ]
    if changed:
        raise LiftError(
            f"the training data changed since the interrupted run ({'; '.join(changed)}): resume with the data and "
            f"data.* settings it had, or start again with `lift run {out / run_dir.CONFIG} --overwrite`"
        )


def _save(
    out: Path, cfg: RunConfig, p: _Prepared, model: torch.nn.Module, record: RunRecord, thresholds: list[float] | None
) -> None:
    manifest = run_dir.Manifest(
        liftkit=__version__,
        method=cfg.method.name,
        base_model=portable_name(cfg.model.name),
        model_type=p.arch.model_type,
        labels=p.splits.label_names,
        max_length=p.max_length,
        padding_side=p.padding.side,
        trust_remote_code=cfg.model.trust_remote_code,
        revision=cfg.model.revision,
        method_options=dataclasses.asdict(cfg.method),
        pad_id=p.padding.pad_id,
        task=p.task.name,
        thresholds=thresholds,
        inputs=list(p.inputs),
        input_kind="pair" if p.splits.pair_columns else "text",
        pair_separator=p.pair_separator,
        pair_encoding=p.pair_encoding,
        chunk=list(p.tokens["train"].chunk) if p.tokens["train"].chunk else None,
    )
    # plain transformers users should load the side that was trained; save_pretrained writes only
    # attributes the tokenizer was constructed with, so the side goes into its init kwargs too
    p.tokenizer.padding_side = p.tokenizer.init_kwargs["padding_side"] = p.padding.side
    run_dir.write_record(out, record)
    run_dir.write_text(out / run_dir.REPORT, report.render_markdown(record))
    card = partial(model_card, record)
    run_dir.save_model(
        out, lambda folder: p.method.save(model, folder), p.tokenizer, manifest, card
    )  # its manifest last: finished


def _beside(what: str, action: Callable[[], None], log: Callable[[str], None]) -> None:
    """Work beside the run's results (its report page, its trackers). The run is saved by the time
    it runs: a failure there is reported in one line and does not fail the run (matplotlib, a
    font or a tracking server can fail in many ways; the trained model and metrics stand)."""
    try:
        action()
    except Exception as exc:
        log(f"warning: {what} failed ({first_line(exc)[:200]}); the run itself is saved")


def _run_info(cfg: RunConfig, device: torch.device) -> RunInfo:
    return RunInfo(
        dataset=cfg.data.dataset,
        model=cfg.model.name,
        method=cfg.method.name,
        seed=cfg.train.seed,
        learning_rate=cfg.learning_rate,
        date=time.strftime("%Y-%m-%d %H:%M:%S"),
        device=_device_name(device),
        torch=torch.__version__,
        liftkit=__version__,
        transformers=transformers.__version__,
        peft=peft.__version__,
    )


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
