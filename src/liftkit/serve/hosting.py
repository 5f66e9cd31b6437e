"""The models a server hosts and what every request to them passes through.

`Server` holds the models (`liftkit.many.Many`: runs of one base share it), what /info says of
each, the batcher, and the checks a request passes before it is queued: which model it names, its
size, its texts. Routes (`liftkit.serve.app`) turn requests into calls on it. Loading, whether at
start, through `POST /admin/models` or to bring back a model `--max-models` unloaded, runs in its
own thread, never on the request path.
"""

from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from liftkit.errors import LiftError, first_line
from liftkit.many import Many, Member, UnknownModel
from liftkit.run_dir import EXPORT_INFO, read_export_info, read_record
from liftkit.serve.batcher import Batcher, QueueFull
from liftkit.serve.metrics import Metrics
from liftkit.version import __version__


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers or {}


# what to send instead, on TEI's routes: (to a model of single texts, to a model of pairs)
TEI_FIXES = ('send one string per text (a batch: [["a"], ["b"]])', 'send each as ["text", "text_pair"]')
CLASSIFY_FIXES = ('send them as "texts": ["a", "b"]', 'send "pairs": [["a", "b"], ...]')
WARM_UP = "warm-up"


class Server:
    """The hosted models, their batcher and the request checks, shared by the routes."""

    def __init__(self, settings: Any, metrics: Metrics, startup: dict[str, Path]):
        self.settings, self.metrics = settings, metrics
        self.startup = startup  # the models loaded before /health says ok, by name
        self.many = Many(
            settings.backend,
            settings.device,
            settings.trust_remote_code,
            settings.max_models,
            on_reload=lambda name: metrics.reloads.labels(name).inc(),
        )
        self.facts: dict[str, dict[str, Any]] = {}  # /info of each model, read once at load
        self.load_errors: dict[str, str] = {}  # startup models that failed to load
        self.loading = True
        self.batcher = Batcher(
            settings.max_batch_size,
            settings.max_batch_tokens,
            settings.max_wait_ms,
            settings.max_concurrent_requests,
            run=self.many.logits_many,
            on_batch=metrics.observe_batch,
        )
        self.loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="liftkit-load")
        metrics.queue_depth.set_function(lambda: self.batcher.pending)
        metrics.models_loaded.set_function(lambda: len(self.many.loaded))

    def load(self) -> None:
        """The startup models, in a thread, so that /health can answer 503 while they load."""
        for name, path in self.startup.items():
            try:
                self.add(name, path)
            except Exception as exc:  # reported by /health and every request to it, one line
                self.load_errors[name] = first_line(exc)
                print(
                    f"error: model {name!r} could not be loaded: {self.load_errors[name]}", file=sys.stderr, flush=True
                )
        self.loading = False

    def add(self, name: str, path: str | Path) -> dict[str, Any]:
        """Load a model and run it once (the first forward allocates); its facts."""
        member = self.many.add(name, path)
        try:
            self.many.predict([(WARM_UP, WARM_UP)] if member.predictor.pairs else [WARM_UP], model=name)
        except Exception:
            self.many.remove(name)
            raise
        predictor = member.predictor
        self.facts[name] = {
            "model": name,
            "liftkit": __version__,
            **predictor.info,
            "labels": predictor.labels,
            "test_metrics": measured_scores(Path(path)),
            "accuracy_name": predictor.task.accuracy_name,  # what test_metrics.accuracy means for this task
            "predicts": predictor.task.target(predictor.labels),  # "6 labels", "a score ('score')"
            **member.facts(),
            "limits": {k: v for k, v in asdict(self.settings).items() if k.startswith("max_")},
        }
        return self.facts[name]

    def remove(self, name: str) -> None:
        self.many.remove(name)
        self.facts.pop(name, None)

    def listing(self, full: bool = False) -> dict[str, Any]:
        """Every model by name: its base, method, task, labels and test metrics (`full`: all its
        facts), whether it is in memory now; or why it failed to load."""
        keys = ("base_model", "method", "task", "labels", "test_metrics", "shares_base")
        out: dict[str, Any] = {}
        for name in self.many.names:
            facts = self.facts.get(name, {})
            out[name] = {**(facts if full else {k: facts.get(k) for k in keys}), "loaded": name in self.many.loaded}
        return {**out, **{name: {"error": error} for name, error in self.load_errors.items()}}

    @property
    def names(self) -> list[str]:
        """Every model hosted or failed; while the startup models load, those too."""
        names = [*self.many.names, *self.load_errors]
        return list(dict.fromkeys([*self.startup, *names])) if self.loading else names

    @property
    def single(self) -> bool:
        """One model hosted: every route behaves as a single-model server's."""
        return len(self.names) == 1

    async def member(self, name: str | None = None) -> Member:
        """The model a request names (with one hosted, it may name none), loaded."""
        if name is None:
            name = self._only()
        if name in self.load_errors:
            which = "the model" if self.single else f"model {name!r}"
            raise ApiError(503, f"{which} could not be loaded: {self.load_errors[name]}", "unavailable")
        if name not in self.many.paths:
            if self.loading and name in self.startup:
                raise ApiError(
                    503, "the model is still loading: retry in a moment", "unavailable", {"Retry-After": "1"}
                )
            raise ApiError(
                404, f"no model named {name!r}: hosted are {', '.join(self.many.names) or 'none'}", "not_found"
            )
        if name in self.many.loaded:
            return self.many.member(name)
        try:  # unloaded by --max-models: loaded again off the event loop
            return await asyncio.get_running_loop().run_in_executor(self.loader, self.many.member, name)
        except UnknownModel as exc:
            raise ApiError(404, str(exc), "not_found") from None

    def _only(self) -> str:
        names = self.names
        if len(names) == 1:
            return names[0]
        if not names:
            raise ApiError(404, "no model is hosted: add one with POST /admin/models", "not_found")
        raise ApiError(
            422,
            f"this server hosts {len(names)} models ({', '.join(names[:10])}): name one, with "
            'POST /models/{name}/predict or "model" in /v1/classify',
            "validation",
        )

    def checked(self, texts: list[Any], truncate: bool) -> list[Any]:
        """The request's texts (or pairs) within the limits, cut to --max-input-chars when it asks
        to truncate (a pair counts the characters of both texts, as TEI counts them)."""
        limit, most = self.settings.max_client_batch_size, self.settings.max_input_chars
        if len(texts) > limit:
            raise ApiError(
                413,
                f"{len(texts)} texts in one request, more than --max-client-batch-size {limit}: split the request",
                "payload_too_large",
            )
        if not texts:
            raise ApiError(422, "no texts in the request: send at least one", "validation")
        for i, text in enumerate(texts):
            parts = text if isinstance(text, tuple) else (text,)
            if not all(part.strip() for part in parts):
                raise ApiError(422, f"text {i} is empty: send some text", "validation")
            chars = sum(len(part) for part in parts)
            if chars > most and not truncate:
                raise ApiError(
                    413,
                    f"text {i} has {chars} characters, more than --max-input-chars {most}: "
                    'shorten it, or send "truncate": true',
                    "payload_too_large",
                )
        return [_cut(text, most) for text in texts]

    async def logits(
        self,
        members: list[Member],
        texts: list[Any],
        truncate: bool,
        field: str = "inputs",
        fixes: tuple[str, str] = TEI_FIXES,
    ) -> list[np.ndarray]:
        """Logits of the request's texts or pairs by each model, computed in one batch. A pair sent
        to a model of single texts, or the reverse, is a 422 naming the item (`field`[i]) and the
        route's own fix (`fixes`: for a model of single texts, for a model of pairs)."""
        for member in members:
            reads_pairs = member.predictor.pairs
            for i, text in enumerate(texts):
                if isinstance(text, tuple) != reads_pairs:
                    what = "a sentence pair" if isinstance(text, tuple) else "one text"
                    reads = "sentence pairs" if reads_pairs else "single texts"
                    model = "this model" if len(members) == 1 else f"model {member.name!r}"
                    raise ApiError(
                        422, f"{field}[{i}] is {what}, but {model} reads {reads}: {fixes[reads_pairs]}", "validation"
                    )
        texts = self.checked(texts, truncate)
        try:
            work = [(member, member.predictor.encode(texts)) for member in members]
        except LiftError as exc:
            raise ApiError(422, str(exc), "validation") from None
        began = time.perf_counter()
        try:
            logits = await self.batcher.submit(work)
        except QueueFull:
            raise ApiError(
                429,
                f"the server is at --max-concurrent-requests {self.settings.max_concurrent_requests}: retry shortly",
                "overloaded",
                {"Retry-After": "1"},
            ) from None
        seconds = time.perf_counter() - began
        self.metrics.texts.inc(len(texts))
        for member in members:
            self.metrics.model_requests.labels(member.name).inc()
            self.metrics.model_latency.labels(member.name).observe(seconds)
            self.metrics.model_texts.labels(member.name).inc(len(texts))
        return logits


def _cut(text: str | tuple[str, str], most: int) -> str | tuple[str, str]:
    """A text cut to `most` characters; a pair's longer text cut first, so that a short query
    keeps all of itself and the document the rest (TEI counts a pair's characters together)."""
    if isinstance(text, str):
        return text[:most]
    a, b = text
    if len(a) + len(b) <= most:
        return text
    short = min(len(a), len(b), most // 2)
    return (a[:short], b[: most - short]) if len(a) <= len(b) else (a[: most - short], b[:short])


def measured_scores(path: Path) -> dict[str, Any]:
    """What the run measured on its test split (or what the export measured of itself)."""
    try:
        if (path / EXPORT_INFO).is_file():
            parity = read_export_info(path)["parity"]
            return {"split": "test", "rows": parity["rows"], **parity["export"], "measured_by": "lift export"}
        record = read_record(path)
        scores = record.finetuned.scores
        measured = {k: v for k, v in asdict(scores).items() if v is not None and k != "loss"}
        return {"split": "test", "rows": record.data.rows["test"], **measured, "measured_by": "lift run"}
    except (
        LiftError,
        KeyError,
        TypeError,
        ValueError,
    ):  # a folder without its figures still serves; /info just has none
        return {}
