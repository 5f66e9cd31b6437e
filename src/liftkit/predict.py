"""Classify text with a run folder or an export: `liftkit.load(PATH).predict([...])`.

    predictor = liftkit.load("runs/emotion-lora-...")            # a run folder: torch, adapters merged
    predictor = liftkit.load("runs/emotion-lora-...-onnx-int8")  # an export: onnxruntime, no torch
    predictor.predict(["i feel great"])  # [{"label": "joy", "probabilities": {...}}]
    # a multi-label run: [{"labels": ["admiration", "joy"], "probabilities": {...}}], at its thresholds

Speed comes from doing only the model's work: texts are tokenized in one call by the saved
`tokenizer.json` (the Rust tokenizer, as training did), grouped by length so that no batch holds
padding, and handed as numpy arrays to a backend (`liftkit.backends`) that runs one forward per
batch. This module imports neither torch nor any training code; only the torch backend does.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from liftkit.data import joined
from liftkit.errors import LiftError, first_line
from liftkit.run_dir import EXPORT_INFO, MANIFEST, WEIGHTS, damaged, read_export_info, read_manifest, write_text
from liftkit.tasks import Task, task_named

BACKENDS = ("auto", "torch", "onnx")
PADDING_BUDGET = 1.25  # padded batches: at most this many tokens computed per real token
Backend = Callable[[dict[str, np.ndarray]], np.ndarray]  # {input name: int64 array (rows, tokens)} -> logits
PLAIN_INPUTS = ("input_ids", "attention_mask")  # what runs and exports older than `inputs` feed


Text = str | tuple[str, str]  # one input: a text, or a sentence pair (text, text_pair)


class Tokens(list):
    """One row's token ids (a list, as it always was), with its token type ids where they are not
    all zero: the second text of a pair is type 1 for models that take token types (BERT)."""

    type_ids: list[int] | None = None


@dataclass
class PairTokens:
    """A bi-encoder row: the tokens of its two texts, encoded alone. Its length is its longer
    text's: what batches are grouped and padded by."""

    first: list[int]
    second: list[int]

    def __len__(self) -> int:
        return max(len(self.first), len(self.second))


@dataclass
class Windows:
    """A long text in windows (data.long_texts chunk): each window's tokens. Its length is its
    longest window's."""

    parts: list[list[int]]

    def __len__(self) -> int:
        return max(len(part) for part in self.parts)


def sequences(rows: list[Any]) -> list[list[int]]:
    """The token sequences the model runs for `rows`: a bi-encoder row gives two, one after the
    other; a long text, each of its windows."""
    out: list[list[int]] = []
    for row in rows:
        out += (
            [row.first, row.second]
            if isinstance(row, PairTokens)
            else row.parts
            if isinstance(row, Windows)
            else [row]
        )
    return out


@dataclass
class Encoder:
    """Texts (or sentence pairs) -> padded input arrays, exactly as training tokenized and padded
    them: the saved tokenizer.json, truncated at the run's max_length (a pair's longer text first),
    padded with its pad id on its side, and every input the model takes (`inputs`: ids, mask,
    BERT's token type ids)."""

    tokenizer: Any  # tokenizers.Tokenizer
    pad_id: int | None  # None: the tokenizer has no pad token (predict never pads; Encoder.pad then refuses)
    left: bool = False
    inputs: tuple[str, ...] = PLAIN_INPUTS
    # sentence pairs, read as one sequence ("cross") or each text alone ("bi", liftkit.bi_encoder);
    # None: the model reads single texts
    pair_encoding: str | None = None
    separator: str | None = None  # pairs the tokenizer does not separate: joined into one text by this
    chunk: tuple[int, str] | None = None  # long texts in windows: (stride, pool); None: cut at max_length

    @property
    def pairs(self) -> bool:
        """Whether the model reads sentence pairs (two texts in, one prediction out)."""
        return self.pair_encoding is not None

    @classmethod
    def from_folder(
        cls,
        folder: Path,
        max_length: int,
        left: bool,
        pad_id: int | None = None,
        inputs: Iterable[str] = PLAIN_INPUTS,
        input_kind: str = "text",
        separator: str | None = None,
        pair_encoding: str | None = None,
        chunk: Iterable[Any] | None = None,
    ) -> Encoder:
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            settings = (
                json.loads((folder / "tokenizer_config.json").read_text())
                if (folder / "tokenizer_config.json").is_file()
                else {}
            )
        except Exception as exc:  # the Rust tokenizer raises its own exception type
            raise damaged(folder, f"its tokenizer.json cannot be read ({first_line(exc)[:160]})") from None
        tokenizer.no_padding()
        # longest_first: a pair's longer text loses tokens first, as transformers' truncation=True
        chunk = tuple(chunk) if chunk else None
        tokenizer.enable_truncation(
            max_length,
            stride=chunk[0] if chunk else 0,  # a chunked text's windows overlap as in training
            strategy="longest_first",
            direction=settings.get("truncation_side") or "right",
        )
        if pad_id is None:  # older manifests: the pad token by name
            pad = settings.get("pad_token")
            pad_id = tokenizer.token_to_id(pad["content"] if isinstance(pad, dict) else pad) if pad else None
        # pair runs older than bi-encoding recorded no pair_encoding: they read one sequence
        pairs = (pair_encoding or "cross") if input_kind == "pair" else None
        return cls(tokenizer, pad_id, left, tuple(inputs), pairs, separator, chunk)

    @classmethod
    def of_run(cls, folder: Path, manifest: Any) -> Encoder:
        """The encoder of a run folder, as its manifest (`run_dir.Manifest`) describes its inputs."""
        return cls.from_folder(
            folder,
            manifest.max_length,
            manifest.padding_side == "left",
            manifest.pad_id,
            manifest.inputs,
            manifest.input_kind,
            manifest.pair_separator,
            manifest.pair_encoding,
            manifest.chunk,
        )

    def encode(self, texts: list[Text]) -> list[list[int]]:
        """Token ids of each text or pair (`Tokens`, carrying a pair's token types; `PairTokens`
        for a bi-encoder)."""
        if self.pair_encoding == "bi":
            flat = self._encode([text for pair in texts for text in pair])
            return [PairTokens(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        return self._encode(joined(texts, self.separator))

    def _encode(self, texts: list[Text]) -> list[list[int]]:
        if len(texts) == 1:  # encode_batch's thread pool costs more than it saves on one text
            encodings = [
                self.tokenizer.encode(*texts[0]) if isinstance(texts[0], tuple) else self.tokenizer.encode(texts[0])
            ]
        else:
            encodings = self.tokenizer.encode_batch(texts)
        if self.chunk:  # every window of each text, as training saw them
            return [Windows([self._tokens(w) for w in (e, *e.overflowing)]) for e in encodings]
        return [self._tokens(e) for e in encodings]

    @staticmethod
    def _tokens(encoding: Any) -> list[int]:
        tokens = Tokens(encoding.ids)
        if any(encoding.type_ids):
            tokens.type_ids = encoding.type_ids
        return tokens

    def pad(self, rows: list[list[int]]) -> dict[str, np.ndarray]:
        """The batch a backend takes: ids, mask, and token types (zeros for single texts); a
        bi-encoder's pairs as two rows each (a, b, a, b, ...)."""
        rows = sequences(rows)
        width = max(len(row) for row in rows)
        if self.pad_id is None and any(len(row) < width for row in rows):
            raise LiftError("this tokenizer has no pad token, so rows of different lengths cannot share a batch")
        ids = np.full((len(rows), width), self.pad_id if self.pad_id is not None else 0, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        types = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            span = slice(width - len(row), width) if self.left else slice(0, len(row))
            ids[i, span], mask[i, span] = row, 1
            if getattr(row, "type_ids", None) is not None:
                types[i, span] = row.type_ids
        batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: batch.get(name, np.zeros_like(ids)) for name in self.inputs}


class Predictor:
    """A fine-tuned classifier: labels, the encoder of its texts, a backend that runs it, and its
    task (what the logits mean) with the decision thresholds the run chose (multi-label)."""

    def __init__(
        self,
        labels: list[str],
        encoder: Encoder,
        backend: Backend,
        info: dict[str, Any],
        task: Task | None = None,
        thresholds: list[float] | None = None,
    ):
        self.labels = labels
        self.encoder = encoder
        self.backend = backend
        self.task = task or task_named("single_label")
        self.thresholds = thresholds
        # what was loaded: source ("run" or "export"), format, backend, method, base model, task
        self.info = {
            **info,
            "task": self.task.name,
            "input": "pair" if encoder.pairs else "text",
            **({"thresholds": dict(zip(labels, thresholds))} if thresholds else {}),
        }

    @property
    def pairs(self) -> bool:
        """Whether the model reads sentence pairs (two texts in, one prediction out)."""
        return self.encoder.pairs

    def logits(self, texts: list[Any], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Raw scores, one row per text (or pair), columns in `self.labels` order."""
        texts = inputs_of(texts, self.pairs)
        _check_batch_size(batch_size)
        return self.logits_of(self.encode(texts), batch_size, progress=progress)

    def encode(self, texts: list[Text]) -> list[list[int]]:
        """Token ids of each text or pair, as the run tokenized; a text that gives no token is refused."""
        rows = self.encoder.encode(texts) if texts else []
        empty = [i for i, row in enumerate(rows) if not all(sequences([row]))]
        if empty:
            which = ", ".join(f"texts[{i}]" for i in empty[:5])
            raise LiftError(
                f"{len(empty)} text(s) give this model no tokens at all ({which}, e.g. empty): pass some text"
            )
        return rows

    def logits_of(
        self, rows: list[list[int]], batch_size: int = 64, pad: bool = False, progress: bool = False
    ) -> np.ndarray:
        """Scores of encoded rows. By default batches hold one length each (no padding); `pad`
        lets rows of different lengths share a batch, which a server merging requests needs, where
        padding cannot change a score (right padding; on the left a decoder's positions shift)."""
        logits = np.empty((len(rows), len(self.labels)), dtype=np.float32)
        if len(rows) == 1:  # a lone text: straight to the model
            return self._forward(rows)
        batches = _batches(rows, batch_size, pad and not self.encoder.left and self.encoder.pad_id is not None)
        for chunk in _progress(batches) if progress else batches:
            logits[chunk] = self._forward([rows[i] for i in chunk])
        return logits

    def _forward(self, rows: list[Any]) -> np.ndarray:
        """One model call for `rows`; a long text's windows go in the same call and are pooled."""
        return self.pooled(rows, self.backend(self.encoder.pad(rows)))

    def pooled(self, rows: list[Any], logits: np.ndarray) -> np.ndarray:
        """The logits of the model's rows for `rows` -> one row per text: a long text's windows pooled."""
        if self.encoder.chunk is None:
            return logits
        documents = np.repeat(np.arange(len(rows)), [len(row.parts) for row in rows])
        return pool_windows(logits, documents, self.encoder.chunk[1])

    def predict_proba(self, texts: list[Any], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Probabilities, one row per text, columns in `self.labels` order: over the classes
        (softmax, single-label), or each label's own (sigmoid, multi-label); the score itself
        (regression, one column)."""
        return self.task.probabilities(self.logits(texts, batch_size, progress))

    def predict(self, texts: list[Any], batch_size: int = 64, progress: bool = False) -> list[dict[str, Any]]:
        """For each text (or sentence pair: `("a", "b")` or `{"text": "a", "text_pair": "b"}` for a
        model trained on pairs), the label (single-label), the label set (multi-label, `"labels"`,
        at the run's thresholds) and every label's probability; or the score (regression)."""
        return self.answers(self.predict_proba(texts, batch_size, progress))

    def answers(self, probs: np.ndarray) -> list[dict[str, Any]]:
        """Probabilities (`predict_proba`'s) -> what `predict` returns."""
        return self.task.answer(probs, self.labels, self.thresholds)


def _batches(rows: list[list[int]], batch_size: int, pad: bool = False) -> list[np.ndarray]:
    """Row indices in batches of one token length each: no padding at all, so no compute spent
    on it, and a row's scores never depend on which rows share its batch (GPT-2's positions, for
    one, shift under left padding). With `pad`, rows sorted by length share a batch as long as
    padding stays under a quarter of its tokens: a server's mixed requests then take a few
    forwards, not one per length, and none pads 20-token texts to the longest one's 60."""
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    order = np.argsort(lengths, kind="stable")
    if not pad:
        groups = np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1)
        return [group[i : i + batch_size] for group in groups for i in range(0, len(group), batch_size)]
    batches, start, real = [], 0, 0
    for end, i in enumerate(order):
        real += lengths[i]
        if end > start and ((end - start + 1) * lengths[i] > PADDING_BUDGET * real or end - start == batch_size):
            batches.append(order[start:end])
            start, real = end, lengths[i]
    batches.append(order[start:])
    return batches


def pool_windows(logits: np.ndarray, documents: np.ndarray, pool: str) -> np.ndarray:
    """One row of logits per document from its windows' rows (`documents[i]`: row i's document,
    0..n-1): their mean, or their elementwise max."""
    count = int(documents.max()) + 1 if len(documents) else 0
    if pool == "max":
        out = np.full((count, logits.shape[-1]), -np.inf, dtype=logits.dtype)
        np.maximum.at(out, documents, logits)
        return out
    out = np.zeros((count, logits.shape[-1]), dtype=np.float64)
    np.add.at(out, documents, logits)
    return (out / np.bincount(documents, minlength=count)[:, None]).astype(logits.dtype)


def inputs_of(texts: Any, pairs: bool) -> list[Text]:
    """What to classify as a list of texts, or of (text, text_pair) pairs for a model trained on
    pairs; a lone text (or pair) becomes a list of one. Anything else is refused in one line that
    names the item and what the model takes."""
    if isinstance(texts, str) or (pairs and _pair(texts) is not None and isinstance(texts, (tuple, dict))):
        texts = [texts]
    items = list(texts)
    bad = [i for i, item in enumerate(items) if not isinstance(item, str) and _pair(item) is None]
    if bad:
        kinds = ", ".join(f"texts[{i}] is {type(items[i]).__name__}" for i in bad[:5])
        what = "pairs of texts" if pairs else "text"
        raise LiftError(
            f"{len(bad)} item(s) to classify are not {what} ({kinds}): pass {'pairs of strings' if pairs else 'strings'}"
        )
    out: list[Text] = []
    for i, item in enumerate(items):
        pair = _pair(item)
        if pair is not None and not pairs:
            raise LiftError(
                f"texts[{i}] is a sentence pair, but this model was trained on single texts: pass one string per text"
            )
        if isinstance(item, str) and pairs:
            raise LiftError(
                f"texts[{i}] is one text, but this model was trained on sentence pairs: pass (text, text_pair) "
                'tuples or {"text": ..., "text_pair": ...}'
            )
        out.append(pair if pair is not None else item)
    return out


def _pair(item: Any) -> tuple[str, str] | None:
    """A sentence pair given as ("a", "b"), ["a", "b"] or {"text": "a", "text_pair": "b"}; else None."""
    if isinstance(item, dict) and set(item) == {"text", "text_pair"}:
        item = (item["text"], item["text_pair"])
    if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(t, str) for t in item):
        return (item[0], item[1])
    return None


def _check_batch_size(batch_size: Any) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise LiftError(f"batch_size={batch_size!r} must be a whole number of at least 1")


def _progress(chunks: list[np.ndarray]) -> Iterator[np.ndarray]:
    from tqdm.auto import tqdm

    return iter(tqdm(chunks, desc="predict", leave=False))


def load(path: str | Path, backend: str = "auto", device: str = "auto", trust_remote_code: bool = False) -> Predictor:
    """The public entry point: a run folder (`lift run`) or an export folder (`lift export`).

    backend "auto" runs a run folder and an hf export on torch (LoRA and IA3 merged into the
    weights at load) and an onnx export on onnxruntime; "onnx" on a run folder or hf export
    converts it to ONNX in memory first; "torch" cannot run an onnx export. Whether the base
    model's own code may run is the caller's decision (`trust_remote_code`), never the folder's."""
    path = Path(path)
    if backend not in BACKENDS:
        raise LiftError(f"backend {backend!r} is unknown: use one of {', '.join(BACKENDS)}")
    if check_folder(path) == "export":
        return _load_export(path, backend, device, trust_remote_code)
    from liftkit.backends import torch_backend

    manifest = read_manifest(path)
    encoder = Encoder.of_run(path, manifest)
    run_backend = _torch_or_onnx(
        torch_backend.load_run_model(path, manifest, trust_remote_code), backend, device, encoder.inputs
    )
    info = _run_info(manifest, "onnx" if backend == "onnx" else "torch")
    return Predictor(manifest.labels, encoder, run_backend, info, task_named(manifest.task), manifest.thresholds)


def _run_info(manifest: Any, backend: str) -> dict[str, Any]:
    """What `Predictor.info` says of a run folder."""
    return {
        "source": "run",
        "format": "run",
        "backend": backend,
        "method": manifest.method,
        "base_model": manifest.base_model,
    }


def _torch_or_onnx(model: Any, backend: str, device: str, inputs: tuple[str, ...]) -> Backend:
    """A torch model run as it is, or converted to ONNX in memory (`backend="onnx"`, CPU only)."""
    from liftkit.backends import torch_backend

    return (
        torch_backend.onnx_from_torch(model, inputs)
        if backend == "onnx"
        else torch_backend.TorchBackend(model, device)
    )


def _load_export(path: Path, backend: str, device: str, trust_remote_code: bool) -> Predictor:
    export = read_export_info(path)
    encoder = Encoder.from_folder(
        path,
        export["max_length"],
        export["padding_side"] == "left",
        export["pad_id"],
        export.get("inputs", PLAIN_INPUTS),
        export.get("input_kind", "text"),
        export.get("pair_separator"),
        export.get("pair_encoding"),
        export.get("chunk"),
    )
    if export["format"] == "onnx":
        if backend == "torch":
            raise LiftError(
                f"{str(path)!r} is an ONNX export, which holds no torch weights: use backend 'onnx' (or 'auto'), or load the run folder or an hf export"
            )
        from liftkit.backends.onnx_backend import OnnxBackend

        run_backend = OnnxBackend(path / export["model_file"])
    else:
        from liftkit.backends import torch_backend

        run_backend = _torch_or_onnx(
            torch_backend.load_hf_export(path, trust_remote_code), backend, device, encoder.inputs
        )
    used = "onnx" if export["format"] == "onnx" or backend == "onnx" else "torch"
    info = {
        "source": "export",
        "format": export["format"],
        "quantize": export.get("quantize"),
        "backend": used,
        "method": export["method"],
        "base_model": export["base_model"],
    }
    return Predictor(
        export["labels"], encoder, run_backend, info, task_named(export.get("task")), export.get("thresholds")
    )


def check_folder(path: Path) -> str:
    """ "run" or "export", once the folder holds what loading needs (read, not loaded: cheap
    enough for `lift serve` to refuse a damaged folder before it starts listening)."""
    if (path / EXPORT_INFO).is_file():
        read_export_info(path)
        return "export"
    if not path.is_dir():
        raise LiftError(f"{str(path)!r} does not exist: pass a folder that `lift run` or `lift export` wrote")
    if not (path / MANIFEST).is_file():
        raise LiftError(
            f"{str(path)!r} is not a liftkit run directory or export (no {MANIFEST} or {EXPORT_INFO}): pass a folder that `lift run` or `lift export` wrote"
        )
    check_files(path, read_manifest(path).files)
    return "run"


def check_files(path: Path, files: list[str]) -> None:
    """The files a run folder must hold: those its manifest lists (weights and tokenizer; a lost
    tokenizer.json would otherwise quietly turn every word into [UNK]), else, for manifests that
    list none, peft's adapter pair or liftkit's own tensors."""
    missing = [name for name in files if not (path / name).is_file()]
    if missing:
        raise damaged(
            path, f"{', '.join(missing)} listed in liftkit.json {'is' if len(missing) == 1 else 'are'} missing"
        )
    if (path / "adapter_config.json").is_file():
        if not (path / "adapter_model.safetensors").is_file():
            raise damaged(path, "adapter_model.safetensors (the adapter and the classifier head) is missing")
    elif not (path / WEIGHTS).is_file():
        raise damaged(
            path, f"it holds no weights (neither adapter_config.json + adapter_model.safetensors nor {WEIGHTS})"
        )
    if not (path / "tokenizer.json").is_file():
        raise damaged(path, "its tokenizer cannot be loaded (tokenizer.json is missing)")


def write_predictions(
    path: Path, texts: list[Text], predictions: list[dict[str, Any]], labels: list[str], task: Task
) -> None:
    """`.csv`: text (and text_pair for pairs), then the answer in the task's columns (a label,
    its probability and one probability column per label; a multi-label run's set as "a|b" then
    the columns; a regression run's score); anything else: JSON lines ({"text"(, "text_pair"),
    then what predict returned}). Written atomically."""
    pairs = bool(texts) and isinstance(texts[0], tuple)
    given = [list(t) if isinstance(t, tuple) else [t] for t in texts]
    if path.suffix.lower() == ".csv":
        out = io.StringIO(newline="")
        writer = csv.writer(out)
        writer.writerow(["text", *(["text_pair"] if pairs else []), *task.answer_columns(labels)])
        for text, pred in zip(given, predictions):
            writer.writerow([*text, *task.answer_cells(pred, labels)])
        content = out.getvalue()
    else:
        fields = ["text", "text_pair"]
        content = "".join(
            json.dumps({**dict(zip(fields, text)), **pred}, ensure_ascii=False) + "\n"
            for text, pred in zip(given, predictions)
        )
    write_text(path, content)


def check_input(path: Path) -> None:
    """An input file that exists and has a format `read_texts` reads (checked before a model loads)."""
    if not path.is_file():
        raise LiftError(f"input file {str(path)!r} not found: check the path")
    if not path.name.lower().endswith((".txt", ".jsonl", ".csv")):
        raise LiftError(f"input file {str(path)!r} has an unknown format: use .txt, .jsonl or .csv")


def read_texts(
    path: Path, text_column: str = "text", pair_column: str | None = None, pairs: bool = False
) -> list[Text]:
    """Texts from a .txt (one per line), .jsonl or .csv file (UTF-8, a byte-order mark allowed).
    `pairs` (a model trained on sentence pairs): (text, text_pair) pairs, from two tab-separated
    texts per .txt line, or two columns of .jsonl/.csv: `text_column` and `pair_column` (default
    "text_pair", or GLUE's names such as sentence1/sentence2 where the file has those)."""
    check_input(path)
    name = path.name.lower()
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise LiftError(
            f"input file {str(path)!r} is not UTF-8 text (line {line}, byte {exc.start}): convert it to UTF-8"
        ) from None
    lines = [line.removesuffix("\r") for line in content.split("\n")]  # only newlines end a line, not U+2028 & co.
    if name.endswith(".txt"):
        if pairs:
            return _some(_tab_pairs(lines, path), path)
        return _some([line for line in lines if line.strip()], path)
    rows = (
        list(_json_lines(lines, path))
        if name.endswith(".jsonl")
        else [
            (reader.line_num, row) for reader in [csv.DictReader(io.StringIO(content, newline=""))] for row in reader
        ]
    )
    if not pairs:
        return _some(_column(rows, text_column, path), path)
    first, second = _input_pair_columns(rows, text_column, pair_column, path)
    return _some(list(zip(_column(rows, first, path), _column(rows, second, path, "--text-pair-column"))), path)


def _some(texts: list[Any], path: Path) -> list[Any]:
    if not texts:
        raise LiftError(f"input file {str(path)!r} holds no texts: add some")
    return texts


def _tab_pairs(lines: list[str], path: Path) -> list[Text]:
    """Sentence pairs from a .txt file: each line's two texts separated by a tab (blank lines skipped)."""
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise LiftError(
                f"line {number} of {str(path)!r} holds {len(parts)} tab-separated text(s): this model reads pairs, "
                "so give each line two texts separated by one tab (or use .jsonl/.csv with two columns)"
            )
        out.append((parts[0], parts[1]))
    return out


def _input_pair_columns(
    rows: list[tuple[int, Any]], text_column: str, pair_column: str | None, path: Path
) -> tuple[str, str]:
    """The two text columns of an input file of pairs: as given, else text/text_pair, else GLUE's."""
    from liftkit.data import PAIR_COLUMNS

    if pair_column:
        return text_column, pair_column
    keys = set(rows[0][1]) if rows and isinstance(rows[0][1], dict) else set()
    for pair in ((text_column, "text_pair"), *PAIR_COLUMNS):
        if set(pair) <= keys:
            return pair
    raise LiftError(
        f"input file {str(path)!r} has no second text column (looked for 'text_pair' and GLUE's names): "
        "this model reads sentence pairs, pass --text-column A --text-pair-column B"
    )


def _json_lines(lines: list[str], path: Path) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise LiftError(
                    f"line {number} of {str(path)!r} is not valid JSON ({exc.msg}, column {exc.colno}): fix the line"
                ) from None


def _column(rows: Iterable[tuple[int, Any]], column: str, path: Path, option: str = "--text-column") -> list[str]:
    """The `column` of every (line number, row) pair."""
    texts = []
    for number, row in rows:
        if not isinstance(row, dict) or column not in row:
            raise LiftError(f"line {number} of {str(path)!r} has no {column!r} field: pass {option} NAME")
        text = row[column]
        if not isinstance(text, str):
            what = "null" if text is None else f"{type(text).__name__} {text!r}"
            raise LiftError(f"line {number} of {str(path)!r}: {column!r} is {what}, not a text: fix or drop the line")
        texts.append(text)
    return texts
