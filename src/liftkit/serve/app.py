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
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from liftkit.errors import LiftError, first_line
from liftkit.many import ModelExists, UnknownModel, models_in, named_paths
from liftkit.serve.hosting import CLASSIFY_FIXES, ApiError, Server
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
    paths: list[str] = field(default_factory=list)  # run or export folders, each PATH or NAME=PATH
    models_dir: str | None = None  # every run folder or export in it, by folder name
    max_models: int | None = None  # models held in memory; past it the least recently used unload
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

    def check(self) -> dict[str, Path]:
        """Refuse settings that cannot serve, in one line each; the models to load at start, by
        name (the folder is read once here, so what loads is what was checked)."""
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
        if self.max_models is not None and self.max_models < 1:
            raise LiftError(f"--max-models {self.max_models} must be at least 1")
        models = self.models()
        if not models:
            raise LiftError("no model to serve: pass a run or export folder, or --models-dir DIR")
        return models

    def models(self) -> dict[str, Path]:
        """The models to load at start, by name: the folders given, then those in --models-dir."""
        named = named_paths(self.paths)
        for name, path in (models_in(Path(self.models_dir)) if self.models_dir else {}).items():
            if name in named:
                raise LiftError(f"two models are named {name!r} (one in --models-dir): name the other NAME=PATH")
            named[name] = path
        return named

    @property
    def max_body_bytes(self) -> int:
        """The largest request body worth reading: every text at its longest, 12 bytes a character
        (JSON's escape of a character outside the BMP, as Python's json.dumps writes an emoji)."""
        return self.max_client_batch_size * (self.max_input_chars * 12 + 64) + 4096


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
    """liftkit's batch form: texts, or pairs for a model of sentence pairs; the model by name
    (with one hosted, it may be left out), or several, each answering for every text."""

    texts: list[str] | None = None
    pairs: list[list[str]] | None = None
    model: str | None = None
    models: list[str] | None = Field(default=None, min_length=1, max_length=256)
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


def create_app(settings: ServeSettings) -> FastAPI:
    startup = settings.check()
    metrics = Metrics()
    server = Server(settings, metrics, startup)

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
        description=f"Text classification with {', '.join(startup)}, served by liftkit.",
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
    async def predict(body: PredictRequest, name: str | None = None) -> JSONResponse:
        member = await server.member(name)
        texts, batch = sequences(body.inputs)
        [logits] = await server.logits([member], texts, body.truncate)
        predictor = member.predictor
        # TEI's answer: every label's score, as the model's task gives them (softmax over the
        # classes; a sigmoid per label for multi-label, as TEI does for such models; the score
        # itself for regression)
        scores = logits if body.raw_scores else predictor.task.probabilities(logits)
        answers = [_ranked(predictor.labels, row) for row in scores]
        # plain JSON: FastAPI's generic encoder would walk every dict again, per request
        return JSONResponse(answers if batch else answers[0])

    app.post("/predict", summary="TEI-compatible classification")(predict)
    app.post("/", include_in_schema=False)(predict)
    app.post("/models/{name}/predict", summary="TEI-compatible classification by the model `name`")(predict)

    _classify_routes(app, server)
    _rerank_routes(app, server)
    _admin_routes(app, server)

    @app.get("/health")
    async def health() -> JSONResponse:
        if server.loading or (server.single and server.load_errors):
            error = next(iter(server.load_errors.values()), None)
            return _error(503, error or "the model is still loading", "unavailable")
        return JSONResponse({"status": "ok", "models": server.listing()})

    @app.get("/info")
    async def info() -> JSONResponse:
        """One model: its facts, as a single-model server's; several: each one's, by name."""
        if server.single:
            return JSONResponse({**server.facts[(await server.member()).name], "models": server.listing()})
        return JSONResponse({"liftkit": __version__, "models": server.listing(full=True)})

    @app.get("/models/{name}/info", summary="the facts of the model `name`")
    async def model_info(name: str) -> JSONResponse:
        return JSONResponse(server.facts[(await server.member(name)).name])

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PLAYGROUND)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:  # browsers ask; "nothing" beats a 404 in their console
        return Response(status_code=204)


def _answers(member: Any, logits: np.ndarray, top_k: int | None) -> list[dict[str, Any]]:
    """/v1/classify's results: the label (or label set, or score), and the probabilities ranked."""
    predictor = member.predictor
    probs = predictor.task.probabilities(logits)
    return [
        {**answer, **({"probabilities": _ranked(predictor.labels, row, top_k)} if "score" not in answer else {})}
        for answer, row in zip(predictor.answers(probs), probs)
    ]


def _classify_routes(app: FastAPI, server: Server) -> None:
    """liftkit's own classification route: one model, or several answering for the same texts."""

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
        if body.model is not None and body.models is not None:
            raise ApiError(422, 'send "model": name or "models": [names], not both', "validation")
        texts = body.texts if body.texts is not None else [tuple(pair) for pair in body.pairs]
        field = "texts" if body.texts is not None else "pairs"
        names = list(dict.fromkeys(body.models)) if body.models is not None else [body.model]
        members = [await server.member(name) for name in names]
        logits = await server.logits(members, texts, body.truncate, field, CLASSIFY_FIXES)
        if body.models is None:
            results = _answers(members[0], logits[0], body.top_k)
            return JSONResponse({"model": members[0].name, "version": __version__, "results": results})
        keyed = {m.name: _answers(m, x, body.top_k) for m, x in zip(members, logits)}
        return JSONResponse({"models": list(keyed), "version": __version__, "results": keyed})


def _rerank_routes(app: FastAPI, server: Server) -> None:
    """TEI's rerank, for models of sentence pairs: at /rerank and under each model's name."""

    async def rerank(body: RerankRequest, name: str | None = None) -> JSONResponse:
        member = await server.member(name)
        predictor = member.predictor
        if not predictor.pairs:
            raise ApiError(
                422,
                "this model was trained on single texts: /rerank scores (query, text) pairs, so serve a model trained on pairs",
                "validation",
            )
        if not body.query.strip():
            raise ApiError(422, "query is empty: send the text to rank the others against", "validation")
        [logits] = await server.logits([member], [(body.query, text) for text in body.texts], body.truncate, "texts")
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

    app.post("/rerank", summary="TEI-compatible reranking, for a model of sentence pairs")(rerank)
    app.post("/models/{name}/rerank", summary="TEI-compatible reranking by the model `name`")(rerank)


class AddModel(BaseModel):
    name: str = Field(max_length=64)
    path: str = Field(max_length=4096)


def _admin_routes(app: FastAPI, server: Server) -> None:
    """Adding and removing models while serving: only with LIFT_API_KEY set (the Guard checks the key)."""

    def guarded() -> None:
        if not os.environ.get("LIFT_API_KEY"):
            raise ApiError(
                403, "admin routes are off: start the server with LIFT_API_KEY set, then send that key", "forbidden"
            )

    @app.post("/admin/models", status_code=201, summary="load a run or export folder as a new model")
    async def add_model(body: AddModel) -> JSONResponse:
        guarded()
        began = time.perf_counter()
        try:  # in the loading thread: requests keep being answered meanwhile
            facts = await asyncio.get_running_loop().run_in_executor(server.loader, server.add, body.name, body.path)
        except ModelExists as exc:
            raise ApiError(409, str(exc), "conflict") from None
        except LiftError as exc:
            raise ApiError(422, str(exc), "validation") from None
        return JSONResponse({**facts, "load_s": round(time.perf_counter() - began, 3)}, status_code=201)

    @app.delete("/admin/models/{name}", summary="stop serving a model (requests in flight finish)")
    async def remove_model(name: str) -> JSONResponse:
        guarded()
        try:
            server.remove(name)
        except UnknownModel as exc:
            raise ApiError(404, str(exc), "not_found") from None
        return JSONResponse({"removed": name, "models": server.many.names})


def app_from_env() -> FastAPI:
    """The app for `uvicorn --factory` workers (`lift serve --workers N`): settings from LIFT_SERVE_SETTINGS."""
    return create_app(
        ServeSettings(**{**json.loads(os.environ["LIFT_SERVE_SETTINGS"]), "load_before_listening": True})
    )
