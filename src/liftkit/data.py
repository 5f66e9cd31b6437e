"""Resolve a dataset name to labelled train / validation / test splits.

A dataset is a registered short name (resolved to `$LIFT_DATA_DIR/<name>/` when that folder
exists, else to its hub id), a hub id, a local folder of split files, or one local file.
Whatever the source, the result is the same plain object: three lists of texts and labels (a
class id per row, or for multi-label data a list of label ids per row), the label names, and the
task (`liftkit.tasks`) the labels call for. Every way the input can be wrong ends in a one-line
`LiftError`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from liftkit.config import DataConfig, is_hub_id
from liftkit.errors import LiftError, first_line
from liftkit.record import DataSummary
from liftkit.tasks import TASKS

Label = Any  # a class id (int), a list of label ids for multi-label rows, or a number (regression)
Text = str | tuple[str, str]  # one row's input: a text, or a sentence pair

# short name -> (hub id, hub config name)
REGISTRY: dict[str, tuple[str, str | None]] = {
    "emotion": ("dair-ai/emotion", "split"),
    "rotten_tomatoes": ("cornell-movie-review-data/rotten_tomatoes", None),
    "ag_news": ("fancyzhx/ag_news", None),
    "imdb": ("stanfordnlp/imdb", None),
    "tweet_eval_emoji": ("cardiffnlp/tweet_eval", "emoji"),
    "go_emotions": ("google-research-datasets/go_emotions", "simplified"),  # multi-label, column "labels"
    "mrpc": ("nyu-mll/glue", "mrpc"),  # sentence pairs: sentence1, sentence2, label
    "stsb": ("sentence-transformers/stsb", None),  # sentence pairs, a 0-5 similarity: sentence1, sentence2, score
}
# a dataset without data.text_column whose columns are one of these pairs holds sentence pairs
# (GLUE's and SuperGLUE's names, and those of retrieval sets)
PAIR_COLUMNS = (("sentence1", "sentence2"), ("premise", "hypothesis"), ("question", "sentence"), ("query", "passage"))
# the label column looked for when the configured default ("label") is absent, in order
LABEL_FALLBACKS = ("labels", "score")
SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "val", "valid", "dev"), "test": ("test",)}
FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".csv", ".csv.gz", ".tsv", ".parquet")


@dataclass
class Split:
    texts: list[str]
    labels: list[Label]
    pairs: list[str] | None = None  # sentence pairs: each row's second text

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Any) -> Split:
        pairs = [self.pairs[i] for i in indices] if self.pairs is not None else None
        return Split([self.texts[i] for i in indices], [self.labels[i] for i in indices], pairs)

    def rows(self) -> list[Text]:
        """Each row's input as predict takes it: the text, or the (text, text_pair) pair."""
        return list(self.texts) if self.pairs is None else list(zip(self.texts, self.pairs))


@dataclass
class Splits:
    train: Split
    validation: Split
    test: Split
    label_names: list[str]
    source: str  # where the rows came from, for the report
    notes: list[str] = field(default_factory=list)  # what was carved or subsampled, for the report
    warnings: list[str] = field(default_factory=list)  # what the data checks found that may mislead
    task: str = "single_label"  # liftkit.tasks: what the labels call for
    task_reason: str = "every label is a single value"  # why (the run log and metrics.json say it)
    pair_columns: tuple[str, str] | None = None  # sentence pairs: the two text columns

    def targets(self, split: str) -> np.ndarray:
        """The split's labels as the task's training targets (class ids, or multi-hot rows)."""
        return TASKS[self.task].targets(getattr(self, split).labels, len(self.label_names))

    def summary(self) -> DataSummary:
        splits = {"train": self.train, "validation": self.validation, "test": self.test}
        rows = {name: len(split) for name, split in splits.items()}
        counts = (
            {name: _label_counts(split.labels, len(self.label_names)).tolist() for name, split in splits.items()}
            if TASKS[self.task].classes
            else {}
        )
        return DataSummary(
            self.source, self.label_names, rows, self.notes, self.warnings, counts, self.task, self.task_reason
        )


def _ids(label: Label) -> list[int]:
    return list(label) if isinstance(label, list) else [label]


def _label_counts(labels: list[Label], num_labels: int) -> np.ndarray:
    """Rows carrying each label."""
    flat = np.fromiter((i for label in labels for i in _ids(label)), dtype=np.int64)
    return np.bincount(flat, minlength=num_labels)


def joined(rows: list[Any], separator: str | None) -> list[Any]:
    """Pairs as the model reads them: joined into one text by `separator` (see `pair_separator`),
    or left as pairs for the tokenizer's own template."""
    if separator is None:
        return rows
    return [f"{row[0]}{separator}{row[1]}" if isinstance(row, tuple) else row for row in rows]


def load_splits(cfg: DataConfig, seed: int = 0, task: str = "auto") -> Splits:
    """Resolve, read, check and cut the dataset named in `cfg`; `task` (task.name) is auto,
    single_label or multi_label.

    What cannot train a sound classifier is an error (one class, a repeated header row, a label
    outside the label list); what may mislead is a warning kept in `Splits.warnings` (dropped
    empty texts, evaluation labels never seen in training, classes missing from an evaluation
    split)."""
    tables, label_names, source = _read_source(cfg.dataset)
    warnings: list[str] = []
    pair_columns = _pair_columns(tables, cfg, source)
    label_column = _label_column(next(iter(tables.values())), cfg)
    tables = {name: _columns(table, name, cfg, source, warnings, pair_columns) for name, table in tables.items()}
    labels = {name: (raw, places) for name, (_, _, raw, places) in tables.items()}
    task, task_reason = _task(labels, task, cfg, source)
    if not TASKS[task].classes:
        label_names = [label_column]  # the one output is named after what it predicts
        splits = {
            name: Split(texts, _scores(raw, places, name, source), pairs)
            for name, (texts, pairs, raw, places) in tables.items()
        }
    else:
        label_names, index = _label_space(labels, label_names)
        splits = {
            name: _encode_labels(texts, pairs, raw, places, label_names, index, name, source)
            for name, (texts, pairs, raw, places) in tables.items()
        }
    notes = _cut(splits, cfg, seed, source)
    if TASKS[task].classes:
        warnings += _check_classes(splits, label_names, source, task == "multi_label")
    if pair_columns:
        notes.insert(
            0,
            f"sentence pairs: {pair_columns[0]!r} + {pair_columns[1]!r}"
            + ("" if cfg.text_pair_column else " (GLUE's column names, found)"),
        )
    return Splits(
        splits["train"],
        splits["validation"],
        splits["test"],
        label_names,
        source,
        notes,
        warnings,
        task,
        task_reason,
        pair_columns,
    )


def _cut(splits: dict[str, Split], cfg: DataConfig, seed: int, source: str) -> list[str]:
    """Carve the missing evaluation splits from train and subsample as `cfg` asks, in place;
    returns what was done, for the report."""
    notes: list[str] = []
    if "train" not in splits:
        raise LiftError(f"dataset {source} has no train split (found {sorted(splits)}): add a train file")
    if "test" not in splits:
        splits["train"], splits["test"] = _carve(splits["train"], cfg.test_fraction, seed)
        notes.append(f"test split carved from train ({cfg.test_fraction:.0%}, stratified, seed {seed})")
    if "validation" not in splits:
        splits["train"], splits["validation"] = _carve(splits["train"], cfg.validation_fraction, seed)
        notes.append(f"validation split carved from train ({cfg.validation_fraction:.0%}, stratified, seed {seed})")
    for name, limit in (
        ("train", cfg.max_train_samples),
        ("validation", cfg.max_eval_samples),
        ("test", cfg.max_eval_samples),
    ):
        if limit is not None and len(splits[name]) > limit:
            pick = np.sort(np.random.default_rng(seed).permutation(len(splits[name]))[:limit])
            notes.append(f"{name} subsampled to {limit} of {len(splits[name])} rows (seed {seed})")
            splits[name] = splits[name].subset(pick)
    return notes


def _read_source(dataset: str) -> tuple[dict[str, Any], list[str] | None, str]:
    """Return ({split: pandas.DataFrame or datasets.Dataset}, label names or None, description)."""
    if dataset in REGISTRY:
        data_dir = os.environ.get("LIFT_DATA_DIR")
        folder = Path(data_dir).expanduser() / dataset if data_dir else None
        if folder is not None and folder.is_dir():
            return _read_folder(folder)
        hub_id, hub_config = REGISTRY[dataset]
        where = f"$LIFT_DATA_DIR/{dataset} does not exist" if data_dir else "LIFT_DATA_DIR is not set"
        return _read_hub(
            hub_id,
            hub_config,
            f"{dataset!r} is not available locally ({where}: point LIFT_DATA_DIR at a folder holding {dataset}/, e.g. LIFT_DATA_DIR=../shared/data)",
        )
    path = Path(dataset).expanduser()
    if path.is_dir():
        return _read_folder(path)
    if path.is_file():
        return {"train": _read_file(path)}, _labels_file(path.parent), str(path)
    if not is_hub_id(dataset) or dataset.endswith(FILE_SUFFIXES):
        raise LiftError(f"dataset path {dataset!r} does not exist: check the path")
    known = ", ".join(REGISTRY)
    return _read_hub(dataset, None, f"{dataset!r} is not a registered dataset ({known}) nor a local path")


def _read_folder(folder: Path) -> tuple[dict[str, Any], list[str] | None, str]:
    tables = {}
    for split, aliases in SPLIT_ALIASES.items():
        found = [folder / f"{alias}{suffix}" for alias in aliases for suffix in FILE_SUFFIXES]
        found = [p for p in found if p.is_file()]
        if found:
            tables[split] = _read_file(found[0])
    if not tables:
        raise LiftError(
            f"dataset folder {str(folder)!r} holds no split files: add train/validation/test files "
            f"ending in one of {', '.join(FILE_SUFFIXES)}"
        )
    return tables, _labels_file(folder), str(folder)


def _read_file(path: Path) -> Any:
    import pandas as pd

    name = path.name.lower()
    if path.stat().st_size == 0:
        raise LiftError(f"data file {str(path)!r} is empty: fill it or remove it")
    try:
        if name.endswith((".jsonl", ".jsonl.gz")):
            table = pd.read_json(path, lines=True, dtype=False, convert_dates=False, encoding="utf-8-sig")
            table.attrs["first_line"] = 1  # errors then name the file's line, not a row index
        elif name.endswith((".json", ".json.gz")):
            table = pd.read_json(path, dtype=False, convert_dates=False, encoding="utf-8-sig")
        elif name.endswith((".csv", ".csv.gz", ".tsv")):
            table = pd.read_csv(
                path, sep="\t" if name.endswith(".tsv") else ",", keep_default_na=False, encoding="utf-8-sig"
            )
            table.attrs["first_line"] = 2  # after the header
        elif name.endswith(".parquet"):
            table = pd.read_parquet(path)
        else:
            raise LiftError(f"data file {str(path)!r} has an unknown format: use one of {', '.join(FILE_SUFFIXES)}")
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        first = first_line(exc)
        raise LiftError(f"could not read data file {str(path)!r} ({first[:160]}): check its format") from None
    if len(table) == 0:
        raise LiftError(f"data file {str(path)!r} has no rows: fill it or remove it")
    return table


def _labels_file(folder: Path) -> list[str] | None:
    path = folder / "labels.json"
    if not path.is_file():
        return None
    try:
        names = json.loads(path.read_text())
    except json.JSONDecodeError:
        names = None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise LiftError(f'{str(path)!r} must be a JSON list of label names, e.g. ["neg", "pos"]')
    return names


def _read_hub(hub_id: str, config: str | None, why_hub: str) -> tuple[dict[str, Any], list[str] | None, str]:
    try:
        import datasets

        loaded = datasets.load_dataset(hub_id, config)
    except Exception as exc:  # noqa: BLE001 - offline, unknown id, auth: all end the same way for the user
        first = first_line(exc)
        raise LiftError(f"dataset {why_hub}, and loading it from the hub failed ({first[:160]})") from None
    tables = {}
    for split, aliases in SPLIT_ALIASES.items():
        for alias in aliases:
            if alias in loaded:
                tables[split] = loaded[alias]
                break
    names = None
    for table in tables.values():
        feature = table.features.get("label")
        names = getattr(feature, "names", None) or names
    return tables, names, f"hub:{hub_id}" + (f"/{config}" if config else "")


def _column_names(table: Any) -> list[str]:
    return list(table.column_names if hasattr(table, "column_names") else table.columns)


def _label_column(table: Any, cfg: DataConfig) -> str:
    """data.label_column; where it is the default ("label") and absent, the first of the usual
    other names present ("labels" for multi-label sets such as go_emotions, "score" for stsb)."""
    columns = _column_names(table)
    if cfg.label_column == "label" and "label" not in columns:
        return next((name for name in LABEL_FALLBACKS if name in columns), cfg.label_column)
    return cfg.label_column


def _pair_columns(tables: dict[str, Any], cfg: DataConfig, source: str) -> tuple[str, str] | None:
    """The two text columns of sentence-pair data: data.text_column and data.text_pair_column, or
    GLUE's names where the text column is the default and absent; None for single texts."""
    columns = _column_names(next(iter(tables.values())))
    if cfg.text_pair_column:
        return cfg.text_column, cfg.text_pair_column
    if cfg.text_column == "text" and "text" not in columns:
        return next((pair for pair in PAIR_COLUMNS if set(pair) <= set(columns)), None)
    return None


def _columns(
    table: Any, split: str, cfg: DataConfig, source: str, warnings: list[str], pair_columns: tuple[str, str] | None
) -> tuple[list[str], list[str] | None, list[Any], list[str]]:
    """Texts, second texts (sentence pairs; else None), raw labels and each row's place ("line 19"
    of a JSONL/CSV file, else "row 18", counting from 1) for messages; rows a check drops are gone
    from all four."""
    columns = _column_names(table)
    label_column = _label_column(table, cfg)
    text_column, pair_column = pair_columns or (cfg.text_column, None)
    wanted = [("text", text_column), ("text-pair", pair_column), ("label", label_column)]
    for role, column in wanted:
        if column is not None and column not in columns:
            raise LiftError(
                f"column {column!r} not found in the {split} split of {source} (columns: {', '.join(map(str, columns))}): "
                f"pass --{role}-column NAME"
            )
    texts, labels = list(table[text_column]), [_as_list(v, cfg.label_separator) for v in table[label_column]]
    pairs = list(table[pair_column]) if pair_column else None
    first_line = getattr(table, "attrs", {}).get("first_line")
    places = [f"line {i + first_line}" if first_line else f"row {i + 1}" for i in range(len(texts))]
    where = f"the {split} split of {source}"
    for i, label in enumerate(labels):
        if isinstance(label, str) and label.strip() == label_column:
            raise LiftError(f"{places[i]} of {where} looks like a repeated header row (label {label!r}): delete it")
    checked = [("text", texts), *([("second text", pairs)] if pairs is not None else []), ("label", labels)]
    dropped: set[int] = set()
    for what, values in checked:
        empty = [i for i, value in enumerate(values) if _is_empty(value)]
        if empty and not cfg.drop_empty:
            raise LiftError(
                f"{len(empty)} row(s) of {where} have no {what} (first: {places[empty[0]]}): fill or drop them, or set data.drop_empty=true"
            )
        if empty:
            warnings.append(f"dropped {len(empty)} row(s) with empty {what} from {where} (first: {places[empty[0]]})")
            dropped.update(empty)
    if dropped:
        keep = [i for i in range(len(texts)) if i not in dropped]
        texts, labels, places = [texts[i] for i in keep], [labels[i] for i in keep], [places[i] for i in keep]
        pairs = [pairs[i] for i in keep] if pairs is not None else None
    if not texts:
        raise LiftError(f"{where} has no rows with text: add rows or remove the file")
    as_text = lambda values: [t if isinstance(t, str) else str(t) for t in values]  # noqa: E731
    return as_text(texts), as_text(pairs) if pairs is not None else None, labels, places


def _as_list(value: Any, separator: str | None) -> Any:
    """A row's label as read: a list stays a list (JSON arrays; parquet and the hub give arrays),
    a text cell is split at `separator` when one is set (a blank cell: no label), else as it is."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value.tolist() if isinstance(value, np.ndarray) else value)
    if separator is not None and isinstance(value, str):
        parts = [part.strip() for part in value.split(separator) if part.strip()]
        return [int(part) if part.isdigit() else part for part in parts]
    return value


def _task(
    tables: dict[str, tuple[list[Any], list[str]]], setting: str, cfg: DataConfig, source: str
) -> tuple[str, str]:
    """The task the labels call for, and why: lists of labels are multi-label, fractional numbers
    a regression target, other single values single-label. A file mixing lists and single labels,
    or labels that contradict a task set by name, stop here."""
    rows = [
        (split, place, value) for split, (labels, places) in tables.items() for place, value in zip(places, labels)
    ]
    lists = [row for row in rows if isinstance(row[2], list)]
    singles = [row for row in rows if not isinstance(row[2], list)]
    scores = _scores_task(rows, singles, setting, source)
    if scores is not None:
        return scores
    if setting == "single_label" and lists:
        split, place, value = lists[0]
        raise LiftError(
            f"{place} of the {split} split of {source} holds a list of labels ({value!r}) but task.name is single_label: "
            "use --task multi_label (or auto), or give each row one label"
        )
    if setting in ("multi_label", "auto") and lists and singles or setting == "multi_label" and singles:
        split, place, value = singles[0]
        also = f", while {lists[0][1]} of the {lists[0][0]} split holds a list" if lists else ""
        fix = f"write it as a list ([{value!r}])" + (
            ""
            if cfg.label_separator
            else ", or for CSV name the separator between labels with --set data.label_separator='|'"
        )
        raise LiftError(
            f"{place} of the {split} split of {source} holds one label ({value!r}), not a list{also}: "
            f"multi-label rows need a list of labels; {fix}" + ("" if lists else ", or use --task single_label")
        )
    if setting != "auto":
        return setting, f"task.name is {setting}"
    if not lists:
        return "single_label", "auto: every label is a single value"
    train = [len(value) for split, _, value in lists if split == "train"] or [len(value) for _, _, value in lists]
    share = sum(n >= 2 for n in train) / len(train)
    how = (
        f"data.label_separator {cfg.label_separator!r} splits the label cells"
        if cfg.label_separator
        else "the label column holds lists"
    )
    return "multi_label", f"auto: {how} ({share:.0%} of training rows carry two or more labels)"


def _scores_task(rows: list[tuple], singles: list[tuple], setting: str, source: str) -> tuple[str, str] | None:
    """Regression, and why, where it is set or (auto) the labels are fractional numbers; None
    where the labels are classes. Labels that contradict the setting stop here."""
    fractions = [row for row in singles if _is_number(row[2]) and not float(row[2]).is_integer()]
    if setting == "regression":
        wrong = next((row for row in rows if not _is_number(row[2])), None)
        if wrong is not None:
            split, place, value = wrong
            raise LiftError(
                f"{place} of the {split} split of {source} holds {value!r}, not a number, but task.name is regression: "
                "give every row a numeric score, or use --task auto"
            )
        return "regression", "task.name is regression"
    if setting in ("single_label", "multi_label") and fractions:
        split, place, value = fractions[0]
        raise LiftError(
            f"{place} of the {split} split of {source} holds {value!r}, a fraction, but task.name is {setting}: "
            "use --task regression (or auto) to predict a score, or give each row a class"
        )
    if setting == "auto" and fractions and len(singles) == len(rows) and all(_is_number(v) for _, _, v in singles):
        split, place, value = fractions[0]
        why = f"auto: the label column holds fractional numbers ({value!r} in {place} of {split}): a score to predict"
        return "regression", why
    return None


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, (bool, np.bool_))
        and math.isfinite(float(value))
    )


def _scores(raw: list[Any], places: list[str], split: str, source: str) -> list[float]:
    """A regression split's targets as floats; anything else stops with the row that holds it."""
    for place, value in zip(places, raw):
        if not _is_number(value):
            raise LiftError(
                f"{place} of the {split} split of {source} holds {value!r} where a regression target needs a finite number: fix the row"
            )
    return [float(value) for value in raw]


def _is_empty(value: Any) -> bool:
    """No text or no label: null, NaN (pandas' null), or only white space."""
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def _label_space(
    tables: dict[str, tuple[list[Any], list[str]]], names: list[str] | None
) -> tuple[list[str], dict[Any, int]]:
    """Label names, and each raw label value's class id.

    With a label list (labels.json, the hub's names), a label is a name from it or its position in
    it. Without one, integer labels name themselves: 0..K-1 keep their ids, any other set of
    integers (1 and 2, say) becomes classes "1", "2" in order, so no empty class is invented.
    Text labels sort.
    """
    values = [
        v for labels, _ in tables.values() for label in labels for v in (label if isinstance(label, list) else [label])
    ]
    if names:
        index: dict[Any, int] = {name: i for i, name in enumerate(names)}
        index.update({i: i for i in range(len(names))})
        return names, index
    ints = [_as_int(v) for v in values]
    if all(i is not None for i in ints):
        found = sorted(set(ints))
        return [str(i) for i in found], {i: k for k, i in enumerate(found)}
    if all(isinstance(v, str) for v in values):
        found = sorted(set(values))
        return found, {name: k for k, name in enumerate(found)}
    raise LiftError("labels mix numbers and names: use one kind, or add a labels.json listing the names")


def _check_classes(splits: dict[str, Split], names: list[str], source: str, multi: bool) -> list[str]:
    """Errors for train sets no classifier can learn from; warnings for evaluation splits that
    cannot measure every class."""
    per_split = {name: _label_counts(split.labels, len(names)) for name, split in splits.items()}
    trained = set(np.flatnonzero(per_split["train"]).tolist())
    if len(trained) < (1 if multi else 2):
        only = ", ".join(repr(names[i]) for i in sorted(trained)) or "none"
        need = (
            "a multi-label classifier needs at least one label in use" if multi else "a classifier needs at least two"
        )
        raise LiftError(
            f"the train split of {source} has {len(trained)} class ({only}): {need}; check the label column and the data"
        )
    warnings = []
    for name in ("validation", "test"):
        present = set(np.flatnonzero(per_split[name]).tolist())
        unseen = {names[i]: int(per_split[name][i]) for i in sorted(present - trained)}
        if unseen:
            counts = ", ".join(f"{label!r}: {n}" for label, n in unseen.items())
            warnings.append(
                f"{sum(unseen.values())} {name} row(s) have labels never seen in training ({counts}): the model cannot predict them"
            )
        missing = [names[i] for i in sorted(trained - present)]
        if missing:
            warnings.append(
                f"the {name} split has no rows of {len(missing)} class(es) ({', '.join(map(repr, missing[:10]))}): too small to measure them, add rows"
            )
    return warnings


def _as_int(value: Any) -> int | None:
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _encode_labels(
    texts: list[str],
    pairs: list[str] | None,
    raw: list[Any],
    places: list[str],
    names: list[str],
    index: dict[Any, int],
    split: str,
    source: str,
) -> Split:
    labels: list[Label] = []
    for place, value in zip(places, raw):
        ids = []
        for one in value if isinstance(value, list) else [value]:
            label = index.get(one if isinstance(one, str) else _as_int(one))
            if label is None:
                raise LiftError(
                    f"label {one!r} in {place} of the {split} split of {source} is not one of the "
                    f"{len(names)} labels {names[:10]}{'...' if len(names) > 10 else ''}: fix the row or the label list (labels.json)"
                )
            ids.append(label)
        labels.append(sorted(set(ids)) if isinstance(value, list) else ids[0])
    return Split(texts, labels, pairs)


def _carve(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Seeded, stratified split-off (plain random when a class is too small to stratify)."""
    from sklearn.model_selection import train_test_split

    # label sets and scores: plain random
    single = not any(isinstance(label, (list, float)) for label in split.labels)
    counts = np.bincount(split.labels) if single else np.zeros(1)
    stratify = split.labels if single and counts[counts > 0].min() >= 2 else None
    n_out = max(1, round(len(split) * fraction))
    if len(split) - n_out < 1:
        raise LiftError(f"only {len(split)} training rows: too few to carve evaluation rows from; add data")
    if stratify is not None and n_out < len(counts[counts > 0]):
        stratify = None
    keep, out = train_test_split(np.arange(len(split)), test_size=n_out, random_state=seed, stratify=stratify)
    return split.subset(np.sort(keep)), split.subset(np.sort(out))
