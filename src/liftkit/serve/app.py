"""The HTTP layer: routes, limits, errors, API key, metrics. Inference is the batcher's.

Request and response shapes follow Hugging Face Text Embeddings Inference's classification API
(`POST /predict {"inputs": ...}` -> `[{"label", "score"}]`), so TEI clients work unchanged.
Every error is `{"error": "...", "error_type": "..."}` with a message that names the fix; a bad
text fails its own request before it reaches the queue, never a batch.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import sys
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from liftkit.errors import LiftError, first_line
from liftkit.predict import Predictor, load
from liftkit.run_dir import EXPORT_INFO, read_export_info, read_record
from liftkit.serve.batcher import Batcher, QueueFull
from liftkit.serve.metrics import Metrics
from liftkit.serve.page import PLAYGROUND
from liftkit.version import __version__

OPEN_PATHS = {
    "/health",
    "/",
    "/favicon.ico",
}  # GETs answered without the API key: probes, and the page (which asks for it)


@dataclass
class ServeSettings:
    path: str
    backend: str = "auto"
    device: str = "auto"
    max_batch_size: int = 32
    max_batch_tokens: int = 16384
    max_wait_ms: float = 5.0
    max_concurrent_requests: int = 512
    max_client_batch_size: int = 32
    max_input_chars: int = 10000
    trust_remote_code: bool = False
    # load before listening: with several workers on one socket, a worker still loading would take
    # connections and answer 503 while its siblings are ready; one worker loads while /health says 503
    load_before_listening: bool = False

    def check(self) -> None:
        key = os.environ.get("LIFT_API_KEY")
        if key is not None and not key.strip():
            raise LiftError("LIFT_API_KEY is set but empty: set it to the key clients will send, or unset it")
        for name in (
            "max_batch_size",
            "max_batch_tokens",
            "max_concurrent_requests",
            "max_client_batch_size",
            "max_input_chars",
        ):
            if getattr(self, name) < 1:
                raise LiftError(f"--{name.replace('_', '-')} {getattr(self, name)} must be at least 1")
        if self.max_wait_ms < 0:
            raise LiftError(f"--max-wait-ms {self.max_wait_ms} must be 0 or more")

    @property
    def max_body_bytes(self) -> int:
        """The largest request body worth reading: every text at its longest, 12 bytes a character
        (JSON's escape of a character outside the BMP, as Python's json.dumps writes an emoji)."""
        return self.max_client_batch_size * (self.max_input_chars * 12 + 64) + 4096


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers or {}


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": kind}, status_code=status, headers=headers)


class PredictRequest(BaseModel):
    """TEI's classification request. `inputs` as TEI reads it (router/src/http/types.rs): a string
    is one text; a list of strings is one sequence, a text ["a"] or a pair ["a", "b"]; a list of
    lists is a batch of such sequences, texts and pairs mixed."""

    inputs: str | list[str] | list[list[str]]
    raw_scores: bool = False
    truncate: bool = False


class ClassifyRequest(BaseModel):
    """liftkit's batch form: texts, or pairs for a model of sentence pairs."""

    texts: list[str] | None = None
    pairs: list[list[str]] | None = None
    top_k: int | None = Field(default=None, ge=1)
    truncate: bool = False


class RerankRequest(BaseModel):
    """TEI's rerank request: `texts` ranked by how well each goes with `query`."""

    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool = False


def sequences(inputs: str | list[str] | list[list[str]]) -> tuple[list[Any], bool]:
    """TEI's `inputs` -> (texts and pairs, whether it was a batch). A sequence holds one or two
    strings; anything longer is refused as TEI refuses it."""
    if isinstance(inputs, str):
        return [inputs], False
    batch = bool(inputs) and isinstance(inputs[0], list)
    out = []
    for i, sequence in enumerate(inputs if batch else [inputs]):
        if not 1 <= len(sequence) <= 2:
            where = f"inputs[{i}]" if batch else "inputs"
            raise ApiError(
                422,
                f"{where} holds {len(sequence)} strings: a sequence is one text [text] or one pair [text, text_pair]; "
                'send a batch as [["text"], ["text", "text_pair"], ...]',
                "validation",
            )
        out.append(sequence[0] if len(sequence) == 1 else (sequence[0], sequence[1]))
    return out, batch


# what to send instead, on TEI's routes: (to a model of single texts, to a model of pairs)
TEI_FIXES = ('send one string per text (a batch: [["a"], ["b"]])', 'send each as ["text", "text_pair"]')
CLASSIFY_FIXES = ('send them as "texts": ["a", "b"]', 'send "pairs": [["a", "b"], ...]')


class Server:
    """The loaded model, its batcher and the request checks, shared by the routes."""

    def __init__(self, settings: ServeSettings, metrics: Metrics):
        self.settings, self.metrics = settings, metrics
        self.name = Path(settings.path).resolve().name  # what answers call the model
        self.facts: dict[str, Any] = {}  # /info, read once at load
        self.predictor: Predictor | None = None
        self.load_error: str | None = None
        self.batcher = Batcher(
            settings.max_batch_size,
            settings.max_batch_tokens,
            settings.max_wait_ms,
            settings.max_concurrent_requests,
            on_batch=metrics.observe_batch,
        )
        metrics.queue_depth.set_function(lambda: self.batcher.pending)

    def load(self) -> None:
        """In a thread, so that /health can answer 503 while the model loads."""
        try:
            predictor = load(
                self.settings.path,
                backend=self.settings.backend,
                device=self.settings.device,
                trust_remote_code=self.settings.trust_remote_code,
            )
            # the first forward allocates; /health says ready after it
            predictor.predict([("warm-up", "warm-up")] if predictor.pairs else ["warm-up"])
            self.facts = {
                "model": self.name,
                "liftkit": __version__,
                **predictor.info,
                "labels": predictor.labels,
                "test_metrics": measured_scores(Path(self.settings.path)),
                "accuracy_name": predictor.task.accuracy_name,  # what test_metrics.accuracy means for this task
                "predicts": predictor.task.target(predictor.labels),  # "6 labels", "a score ('score')"
                "limits": {k: v for k, v in asdict(self.settings).items() if k.startswith("max_")},
            }
            self.batcher.predictor = predictor
            self.predictor = predictor
        except Exception as exc:  # reported by /health and every request, one line
            self.load_error = first_line(exc)
            print(f"error: the model could not be loaded: {self.load_error}", file=sys.stderr, flush=True)

    def ready(self) -> Predictor:
        if self.predictor is None:
            if self.load_error:
                raise ApiError(503, f"the model could not be loaded: {self.load_error}", "unavailable")
            raise ApiError(503, "the model is still loading: retry in a moment", "unavailable", {"Retry-After": "1"})
        return self.predictor

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
        self, texts: list[Any], truncate: bool, field: str = "inputs", fixes: tuple[str, str] = TEI_FIXES
    ) -> np.ndarray:
        """Logits of the request's texts or pairs. A pair sent to a model of single texts, or the
        reverse, is a 422 naming the item (`field`[i]) and the route's own fix (`fixes`: for a
        model of single texts, for a model of pairs)."""
        predictor = self.ready()
        for i, text in enumerate(texts):
            if isinstance(text, tuple) != predictor.pairs:
                what = "a sentence pair" if isinstance(text, tuple) else "one text"
                reads = "sentence pairs" if predictor.pairs else "single texts"
                fix = fixes[predictor.pairs]
                raise ApiError(422, f"{field}[{i}] is {what}, but this model reads {reads}: {fix}", "validation")
        texts = self.checked(texts, truncate)
        try:
            rows = predictor.encode(texts)
        except LiftError as exc:
            raise ApiError(422, str(exc), "validation") from None
        try:
            logits = await self.batcher.submit(rows)
        except QueueFull:
            raise ApiError(
                429,
                f"the server is at --max-concurrent-requests {self.settings.max_concurrent_requests}: retry shortly",
                "overloaded",
                {"Retry-After": "1"},
            ) from None
        self.metrics.texts.inc(len(texts))
        return logits

    def info(self) -> dict[str, Any]:
        self.ready()
        return self.facts


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


def create_app(settings: ServeSettings) -> FastAPI:
    settings.check()
    metrics = Metrics()
    server = Server(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server.batcher.start()
        loading = threading.Thread(target=server.load, name="liftkit-load", daemon=True)
        loading.start()
        if settings.load_before_listening:
            await asyncio.get_running_loop().run_in_executor(None, loading.join)
        yield
        await server.batcher.stop()  # uvicorn has drained the requests in flight by now

    app = FastAPI(
        title="liftkit",
        version=__version__,
        lifespan=lifespan,
        description=f"Text classification with {Path(settings.path).name}, served by liftkit.",
    )
    _middleware(app, settings, metrics)
    _handlers(app)
    _routes(app, server, metrics)
    return app


def _middleware(app: FastAPI, settings: ServeSettings, metrics: Metrics) -> None:
    app.add_middleware(Guard, key=os.environ.get("LIFT_API_KEY"), max_body=settings.max_body_bytes, metrics=metrics)


class Guard:
    """API key, request size and per-route metrics, as plain ASGI (Starlette's BaseHTTPMiddleware
    costs a task and a stream per request, which a batching server feels). The size limit holds
    for bodies without a Content-Length too (chunked): they are counted as they arrive, cut at the
    limit, and whatever the app made of the cut body is replaced by the 413."""

    def __init__(self, app: Any, key: str | None, max_body: int, metrics: Metrics):
        self.app, self.max_body, self.metrics = app, max_body, metrics
        self.key = key.strip() if key else None  # a key read from a file keeps its newline
        # built once: a response object only sends its bytes, so requests can share it
        self.unauthorized = _error(
            401, "missing or wrong API key: send the header Authorization: Bearer <key>", "unauthorized"
        )
        self.too_large = _error(
            413, f"request body over {max_body} bytes: send fewer or shorter texts", "payload_too_large"
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status, received, cut = time.perf_counter(), 500, 0, False
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        open_path = scope["method"] in ("GET", "HEAD") and scope["path"] in OPEN_PATHS

        async def counted() -> dict:
            nonlocal received, cut
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                cut = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def sent(message: dict) -> None:
            nonlocal status
            if cut:
                return  # the app's answer to a body cut short; the 413 replaces it
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        async def sent_413(message: dict) -> None:
            nonlocal status
            status = message.get("status", status)
            await send(message)

        try:
            if self.key and not open_path and not _authorized(headers.get("authorization", ""), self.key):
                await self.unauthorized(scope, receive, sent)
            elif int(headers.get("content-length") or 0) > self.max_body:
                await self.too_large(scope, receive, sent)
            else:
                await self.app(scope, counted, sent)
                if cut:
                    await self.too_large(scope, receive, sent_413)
        finally:
            self.metrics.observe_request(scope["method"], scope["path"], status, time.perf_counter() - start)


def _authorized(header: str, key: str) -> bool:
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode())


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.kind, exc.headers)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:  # what the model or a bug raised
        return _error(
            500,
            f"the model failed on this request ({first_line(exc)[:200]}): retry; if it persists with long "
            "texts, lower --max-batch-tokens, and report it",
            "internal",
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request", "loc": ()}
        if first.get("type") == "json_invalid":
            return _error(
                422,
                f"the request body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')}): send JSON as in /docs",
                "validation",
            )
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
        return _error(422, f"{where}: {first.get('msg', 'invalid')}: send JSON as in /docs", "validation")


def _ranked(labels: list[str], row: np.ndarray, k: int | None = None) -> list[dict[str, Any]]:
    order = np.argsort(-row, kind="stable")[:k]
    return [{"label": labels[i], "score": float(row[i])} for i in order]


def _routes(app: FastAPI, server: Server, metrics: Metrics) -> None:
    async def predict(body: PredictRequest) -> JSONResponse:
        texts, batch = sequences(body.inputs)
        logits = await server.logits(texts, body.truncate)
        # TEI's answer: every label's score, as the model's task gives them (softmax over the
        # classes; a sigmoid per label for multi-label, as TEI does for such models; the score
        # itself for regression)
        scores = logits if body.raw_scores else server.predictor.task.probabilities(logits)
        answers = [_ranked(server.predictor.labels, row) for row in scores]
        # plain JSON: FastAPI's generic encoder would walk every dict again, per request
        return JSONResponse(answers if batch else answers[0])

    app.post("/predict", summary="TEI-compatible classification")(predict)
    app.post("/", include_in_schema=False)(predict)

    _classify_routes(app, server)

    @app.get("/health")
    async def health() -> JSONResponse:
        if server.predictor is None:
            return _error(503, server.load_error or "the model is still loading", "unavailable")
        return JSONResponse({"status": "ok"})

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return server.info()

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PLAYGROUND)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:  # browsers ask; "nothing" beats a 404 in their console
        return Response(status_code=204)


def _classify_routes(app: FastAPI, server: Server) -> None:
    """liftkit's own classification route, and TEI's rerank for models of sentence pairs."""

    @app.post(
        "/v1/classify", summary="liftkit's classification: the label (or label set, or score), probabilities, model"
    )
    async def classify(body: ClassifyRequest) -> JSONResponse:
        if (body.texts is None) == (body.pairs is None):
            raise ApiError(
                422,
                'send either "texts": [...] or, for a model of sentence pairs, "pairs": [[a, b], ...]',
                "validation",
            )
        if body.pairs is not None and any(len(pair) != 2 for pair in body.pairs):
            bad = next(i for i, pair in enumerate(body.pairs) if len(pair) != 2)
            raise ApiError(
                422, f"pairs[{bad}] holds {len(body.pairs[bad])} strings: a pair is [text, text_pair]", "validation"
            )
        texts = body.texts if body.texts is not None else [tuple(pair) for pair in body.pairs]
        field = "texts" if body.texts is not None else "pairs"
        logits = await server.logits(texts, body.truncate, field, CLASSIFY_FIXES)
        predictor = server.predictor
        probs = predictor.task.probabilities(logits)
        results = [
            {
                **answer,
                **({"probabilities": _ranked(predictor.labels, row, body.top_k)} if "score" not in answer else {}),
            }
            for answer, row in zip(predictor.answers(probs), probs)
        ]
        return JSONResponse({"model": server.name, "version": __version__, "results": results})

    @app.post("/rerank", summary="TEI-compatible reranking, for a model of sentence pairs")
    async def rerank(body: RerankRequest) -> JSONResponse:
        predictor = server.ready()
        if not predictor.pairs:
            raise ApiError(
                422,
                "this model was trained on single texts: /rerank scores (query, text) pairs, so serve a model trained on pairs",
                "validation",
            )
        if not body.query.strip():
            raise ApiError(422, "query is empty: send the text to rank the others against", "validation")
        logits = await server.logits([(body.query, text) for text in body.texts], body.truncate, "texts")
        relevance = predictor.task.relevance
        scores = relevance(logits, body.raw_scores) if relevance is not None else None
        if scores is None:
            raise ApiError(
                422,
                f"this {predictor.task.name} model with {len(predictor.labels)} labels has no single relevance score: "
                "/rerank needs a model of pairs with two classes (the second one's probability) or a score",
                "validation",
            )
        order = np.argsort(-scores, kind="stable")
        ranked = [
            {"index": int(i), "score": float(scores[i]), **({"text": body.texts[i]} if body.return_text else {})}
            for i in order
        ]
        return JSONResponse(ranked)


def app_from_env() -> FastAPI:
    """The app for `uvicorn --factory` workers (`lift serve --workers N`): settings from LIFT_SERVE_SETTINGS."""
    return create_app(
        ServeSettings(**{**json.loads(os.environ["LIFT_SERVE_SETTINGS"]), "load_before_listening": True})
    )
