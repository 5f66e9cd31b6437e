"""Token ids, cached on disk, served in length-bucketed, dynamically padded batches.

Most of a small model's training time is spent on padding when batches are drawn at random:
emotion tweets average ~20 tokens but a random batch of 16 pads to its longest row. Sorting
rows by length inside shuffled mega-batches keeps batches random across the epoch yet nearly
pad-free, and each batch is padded only to its own longest row.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from liftkit.data import Split, joined
from liftkit.modeling import tokenizer_fingerprint
from liftkit.resources import cache_dir

MEGA_BATCH = 50  # batches per sorting window: bigger pads less, smaller shuffles more


Row = dict[str, Any]  # one row as a dataset gives it: "input_ids", other per-token inputs, "labels" (and "hidden")
MASK = "attention_mask"  # built by the collator from each row's length, never stored


def model_inputs(tokenizer: PreTrainedTokenizerBase, accepted: Iterable[str] | None = None) -> tuple[str, ...]:
    """The per-token inputs a model is fed: what its tokenizer produces (`model_input_names`:
    BERT's token_type_ids too), less what the model's forward does not take (`accepted`)."""
    names = [n for n in tokenizer.model_input_names if n != MASK]
    names = ["input_ids"] + [n for n in names if n != "input_ids" and (accepted is None or n in accepted)]
    return (*names[:1], MASK, *names[1:])


class TokenizedSplit(torch.utils.data.Dataset):
    """Token ids of one split (without padding), any other per-token input the model takes (BERT's
    token_type_ids), and the targets: a class id per row, or a row of the task's target array
    (multi-hot for multi-label, see liftkit.tasks). A row is one token sequence, or for a
    bi-encoder (`group` 2, see liftkit.bi_encoder) a pair's two sequences, stored one after the
    other: `ids[2i]` and `ids[2i + 1]`."""

    def __init__(
        self,
        ids: list[np.ndarray],
        labels: np.ndarray,
        extra: dict[str, list[np.ndarray]] | None = None,
        group: int = 1,
        documents: np.ndarray | None = None,
        pool: str = "mean",
    ):
        self.ids = ids
        self.labels = labels  # one per row: a window carries its document's target
        self.extra = extra or {}  # input name -> one array per sequence, as long as its ids
        self.group = group  # token sequences per row
        self.sequence_lengths = np.array([len(x) for x in ids], dtype=np.int64)
        # a row's length, what batches are bucketed by: its longest sequence
        self.lengths = self.sequence_lengths.reshape(-1, group).max(axis=1) if group > 1 else self.sequence_lengths
        self.cut = 0  # rows truncation shortened (counted for sentence pairs, see `tokenize`)
        # long texts chunked (data.long_texts chunk): each row's document; a document's rows share
        # one document's weight in the loss, and their logits are pooled (`pool`) into its prediction
        self.documents = documents
        self.pool = pool
        self.chunk: tuple[int, str] | None = None  # (stride, pool) it was windowed with
        self.weights = None if documents is None else (1.0 / np.bincount(documents)[documents]).astype(np.float32)

    def __len__(self) -> int:
        return len(self.lengths)

    def document_targets(self) -> np.ndarray:
        """The targets once per text: the rows' own, or each chunked document's."""
        if self.documents is None:
            return self.labels
        return self.labels[np.unique(self.documents, return_index=True)[1]]

    def __getitem__(self, i: int) -> Row:
        if self.group == 1:
            return {
                "input_ids": self.ids[i],
                **{name: rows[i] for name, rows in self.extra.items()},
                "labels": self.labels[i],
                **({"weights": self.weights[i]} if self.weights is not None else {}),
            }
        span = range(self.group * i, self.group * (i + 1))
        return {
            "input_ids": [self.ids[j] for j in span],
            **{name: [rows[j] for j in span] for name, rows in self.extra.items()},
            "labels": self.labels[i],
        }

    @functools.cached_property
    def digest(self) -> str:
        """A hash of the rows' tokens and labels: equal digests, equal training inputs. Computed
        once: the resume check and the frozen-bottom cache key both ask for it, and a split is
        never changed after tokenizing. Extra inputs count where they carry anything (all-zero
        token type ids of single texts change nothing a model sees)."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(self.sequence_lengths.tobytes())
        digest.update(bytes([self.group]))
        if self.documents is not None:
            digest.update(self.documents.tobytes())
        labels = np.asarray(self.labels)
        digest.update(labels.astype(np.float32 if labels.dtype.kind == "f" else np.int64).tobytes())
        for ids in self.ids:
            digest.update(np.asarray(ids).tobytes())
        for name, rows in sorted(self.extra.items()):
            if any(row.any() for row in rows):
                digest.update(name.encode())
                for row in rows:
                    digest.update(np.asarray(row).tobytes())
        return digest.hexdigest()


def pair_separator(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """What joins the two texts of a pair where the tokenizer marks no boundary itself (GPT-2 and
    llama encode a pair as the two texts run together): its separator token, else its end-of-text
    token. None where the tokenizer's own pair template separates them (BERT's [SEP], RoBERTa's
    </s></s>, with token type ids where the model takes them)."""
    if tokenizer.num_special_tokens_to_add(pair=True) > tokenizer.num_special_tokens_to_add(pair=False):
        return None
    return tokenizer.sep_token or tokenizer.eos_token or "\n"


def tokenize(
    split: Split,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    targets: np.ndarray | None = None,
    inputs: tuple[str, ...] | None = None,
    encoding: str = "cross",
    chunk: tuple[int, str] | None = None,
) -> TokenizedSplit:
    """Tokenize once; later runs with the same tokenizer, texts, max_length and inputs read the cache.
    `targets`: the task's target array (`Splits.targets`); default the split's labels as class ids.
    `inputs`: what the model is fed (`model_inputs`); default what the tokenizer produces.
    Sentence pairs are encoded as the tokenizer's pair template says, cut longest side first
    (`longest_first`), or joined (`pair_separator`); with `encoding` "bi", each text of a pair
    alone, each cut at `max_length` (liftkit.bi_encoder). `TokenizedSplit.cut` counts the pairs cut.
    `chunk` (stride, pool): each text becomes windows of `max_length` tokens, consecutive windows
    sharing `stride` tokens, one row each (`TokenizedSplit.documents` says whose)."""
    bi = encoding == "bi" and split.pairs is not None
    inputs = inputs or model_inputs(tokenizer)
    extra = [name for name in inputs if name not in ("input_ids", MASK)]
    separator = pair_separator(tokenizer) if split.pairs is not None and not bi else None
    how = f"chunk{chunk[0]}" if chunk else "bi" if bi else separator
    key = hashlib.sha256(f"{tokenizer_fingerprint(tokenizer)}|{max_length}|{','.join(extra)}|{how}|".encode())
    for text in split.texts:
        key.update(text.encode())
        key.update(b"\0")
    for text in split.pairs or ():
        key.update(text.encode())
        key.update(b"\1")
    path = cache_dir() / "tokens" / f"{key.hexdigest()[:24]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            flats, offsets = {name: cached[f"flat_{name}"] for name in ["input_ids", *extra]}, cached["offsets"]
            cut = int(cached["cut"]) if "cut" in cached else 0
            documents = cached["documents"] if chunk else None
    else:
        flats, offsets, cut, documents = _encode(split, tokenizer, max_length, extra, bi, separator, chunk)
        arrays = {f"flat_{name}": flat for name, flat in flats.items()}
        if documents is not None:
            arrays["documents"] = documents
        _save_atomic(path, offsets=offsets, cut=np.int64(cut), **arrays)
    rows = {name: [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)] for name, flat in flats.items()}
    ids = rows.pop("input_ids")
    labels = np.asarray(split.labels, dtype=np.int64) if targets is None else targets
    if documents is not None:  # a window's target is its document's
        labels = labels[documents]
    pool = chunk[1] if chunk else "mean"
    data = TokenizedSplit(ids, labels, rows, group=2 if bi else 1, documents=documents, pool=pool)
    data.cut = cut
    data.chunk = chunk
    return data


def _encode(
    split: Split,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    extra: list[str],
    bi: bool,
    separator: str | None,
    chunk: tuple[int, str] | None,
) -> tuple[dict[str, np.ndarray], np.ndarray, int, np.ndarray | None]:
    """The split through the tokenizer: each input's tokens end to end, the rows' offsets, the
    pairs truncation cut, and (chunked) each window's document."""
    rows = [text for pair in split.rows() for text in pair] if bi else joined(split.rows(), separator)
    texts = [row[0] if isinstance(row, tuple) else row for row in rows]
    pairs = [row[1] for row in rows] if rows and isinstance(rows[0], tuple) else None
    windows = {"stride": chunk[0], "return_overflowing_tokens": True} if chunk else {}
    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length, **windows)
    documents = np.asarray(encoded["overflow_to_sample_mapping"], dtype=np.int64) if chunk else None
    offsets = np.cumsum([0] + [len(x) for x in encoded["input_ids"]])
    flats = {
        name: np.fromiter((t for x in encoded[name] for t in x), dtype=np.int64, count=int(offsets[-1]))
        for name in ["input_ids", *extra]
    }
    # the rows truncation shortened: only pairs are counted (the run log says how many were cut;
    # single texts are counted by max_length auto, from their lengths at the model's limit)
    cut = (
        _longer(tokenizer(texts, pairs, truncation=False)["input_ids"], max_length, 2 if bi else 1)
        if split.pairs is not None
        else 0
    )
    return flats, offsets, cut, documents


def _longer(ids: list[list[int]], max_length: int, group: int) -> int:
    """Rows (of `group` sequences) with a sequence over `max_length` tokens."""
    over = np.array([len(x) > max_length for x in ids], dtype=bool)
    return int(over.reshape(-1, group).any(axis=1).sum())


AUTO_PERCENTILE = 99  # max_length auto: the share of training texts kept whole


def auto_max_length(split: Split, tokenizer: PreTrainedTokenizerBase, limit: int, encoding: str = "cross") -> int:
    """The 99th percentile of the training texts' token lengths, rounded up to a multiple of 8
    and capped at `limit` (the model's). A percentile, not the longest text: one pasted novel
    must not set the cap; a percentile of the data, not a constant: 128 tokens suit tweets but
    keep less than half of a movie review. The lengths come from the cached tokenization at
    `limit`, so measuring costs one tokenizer pass at most."""
    lengths = tokenize(
        split, tokenizer, limit, targets=np.zeros(len(split), dtype=np.int64), encoding=encoding
    ).sequence_lengths  # lengths only; never empty: load_splits refuses an empty train split
    wanted = int(np.ceil(np.percentile(lengths, AUTO_PERCENTILE) / 8) * 8)
    return max(8, min(limit, wanted))


def _save_atomic(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LengthBucketSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of similar length. Training: shuffled, reproducible per (seed, epoch).

    Evaluation (`shuffle=False`): sorted longest first, so the largest batch comes first and an
    out-of-memory error shows at once rather than at the end.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0, exact: bool = False):
        self.lengths = lengths
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.exact = exact  # evaluation only: each batch holds rows of a single length, no padding at all
        self.epoch = 0
        self._eval_batches: list[list[int]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if not self.shuffle:
            return len(self._evaluation_batches())
        return -(-len(self.lengths) // self.batch_size)

    def _evaluation_batches(self) -> list[list[int]]:
        if self._eval_batches is None:
            bs = self.batch_size
            order = np.argsort(-self.lengths, kind="stable")
            if self.exact:
                cuts = np.flatnonzero(np.diff(self.lengths[order])) + 1
                groups = np.split(order, cuts)
                self._eval_batches = [g[i : i + bs].tolist() for g in groups for i in range(0, len(g), bs)]
            else:
                self._eval_batches = [order[i : i + bs].tolist() for i in range(0, len(order), bs)]
        return self._eval_batches

    def __iter__(self) -> Iterator[list[int]]:
        bs = self.batch_size
        if not self.shuffle:
            yield from self._evaluation_batches()
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        window = bs * MEGA_BATCH
        batches = []
        for start in range(0, len(order), window):
            chunk = order[start : start + window]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + bs].tolist() for i in range(0, len(chunk), bs)]
        yield from (batches[i] for i in rng.permutation(len(batches)))


@dataclass(frozen=True)
class Padding:
    """How batches are padded: with which token id, and on which side.

    Decided once per run (the tokenizer's own side, but always left for decoders under a prompt
    method, see methods.prompt), recorded in the run's manifest and passed explicitly to whatever
    batches rows, rather than read back from a tokenizer attribute that any caller may change.
    """

    pad_id: int
    left: bool = False

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerBase, left: bool = False) -> Padding:
        """Padding with `tokenizer`'s pad token (liftkit gives every tokenizer one, see modeling)."""
        return cls(tokenizer.pad_token_id, left)

    @property
    def side(self) -> str:
        return "left" if self.left else "right"


class PadCollator:
    """Pads a batch to its own longest row, on the right unless `left` (see methods.prompt): ids
    with the pad id, other per-token inputs with 0; builds the attention mask; stacks the targets."""

    def __init__(self, pad_id: int, left: bool = False):
        self.pad_id = pad_id
        self.left = left

    def __call__(self, rows: list[Row]) -> dict[str, torch.Tensor]:
        labels = torch.from_numpy(
            np.stack([np.asarray(row["labels"]) for row in rows])
        )  # class ids (long), multi-hot rows or scores (float)
        weights = torch.tensor([row["weights"] for row in rows]) if "weights" in rows[0] else None
        rows = sequences(rows)
        width = max(len(row["input_ids"]) for row in rows)
        per_token = [name for name in rows[0] if name not in ("labels", "hidden", "weights")]
        batch = {
            name: torch.full((len(rows), width), self.pad_id if name == "input_ids" else 0, dtype=torch.long)
            for name in per_token
        }
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            cols = self.span(width, len(row["input_ids"]))
            for name in per_token:
                batch[name][i, cols] = torch.from_numpy(row[name])
            mask[i, cols] = 1
        out = {"input_ids": batch.pop("input_ids"), MASK: mask, **batch, "labels": labels}
        return out if weights is None else {**out, "weights": weights}

    def span(self, width: int, length: int) -> slice:
        """Where a row of `length` tokens sits in a batch padded to `width`."""
        return slice(width - length, width) if self.left else slice(0, length)


def sequences(rows: list[Row]) -> list[Row]:
    """The token sequences of a batch's rows, one per batch row: a row itself, or a bi-encoder
    row's two sequences one after the other (a, b, a, b, ...)."""
    if not isinstance(rows[0]["input_ids"], list):
        return rows
    names = [name for name in rows[0] if name not in ("labels", "weights")]
    return [{name: row[name][k] for name in names} for row in rows for k in range(len(row["input_ids"]))]


class CachedSplit(TokenizedSplit):
    """Token ids and labels plus each row's frozen-bottom hidden states (packed, unpadded; see
    `liftkit.frozen`)."""

    def __init__(self, data: TokenizedSplit, flat: torch.Tensor, offsets: np.ndarray):
        super().__init__(data.ids, data.labels, data.extra, data.group, data.documents, data.pool)
        self.flat = flat  # (total tokens, hidden)
        self.offsets = offsets  # per token sequence

    def __getitem__(self, i: int) -> Row:
        states = [
            self.flat[self.offsets[j] : self.offsets[j + 1]] for j in range(self.group * i, self.group * (i + 1))
        ]
        return {**super().__getitem__(i), "hidden": states[0] if self.group == 1 else states}


class HiddenCollator(PadCollator):
    """Pads token ids as `PadCollator` does, and the cached hidden states alongside (zeros)."""

    def __call__(self, rows: list[Row]) -> dict[str, torch.Tensor]:
        batch = super().__call__(rows)
        rows = sequences(rows)
        width = batch["input_ids"].shape[1]
        hidden = torch.zeros(len(rows), width, rows[0]["hidden"].shape[-1], dtype=rows[0]["hidden"].dtype)
        for i, row in enumerate(rows):
            hidden[i, self.span(width, len(row["input_ids"]))] = row["hidden"]
        batch["hidden"] = hidden
        return batch


def loader(
    data: TokenizedSplit, batch_size: int, padding: Padding, shuffle: bool, seed: int = 0
) -> torch.utils.data.DataLoader:
    """Length-bucketed batches, each padded to its longest row as `padding` says.

    Left padding shifts a row's absolute positions by its padding (GPT-2), so evaluation then
    batches only rows of equal length: a prediction never depends on its batch neighbours.
    """
    sampler = LengthBucketSampler(data.lengths, batch_size, shuffle, seed, exact=padding.left and not shuffle)
    collate = (HiddenCollator if isinstance(data, CachedSplit) else PadCollator)(padding.pad_id, left=padding.left)
    return torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=collate)
