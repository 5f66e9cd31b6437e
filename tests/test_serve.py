"""`lift serve`: a real uvicorn server in a subprocess on a loopback ephemeral port, talked to over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

import liftkit
from liftkit.cli import main

TEXTS = [
    f"i feel {word} about {thing}"
    for word in ("great", "awful", "scared", "happy", "angry", "calm", "lost", "loved")
    for thing in ("today", "my job", "the news", "this city", "her", "everything", "the exam", "it all")
]  # 64 texts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(path: Path | list[str], *args: str, env: dict[str, str] | None = None):
    """`lift serve PATH` (or several) on 127.0.0.1:<free port>, until the block ends (SIGTERM);
    yields (url, process)."""
    port = _free_port()
    paths = [str(p) for p in path] if isinstance(path, list) else [str(path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "liftkit.cli", "serve", *paths, "--port", str(port), *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError("server did not become healthy in 90 s")
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def run_dir(tiny_models, tmp_path_factory):
    from conftest import DATA_DIR

    out = tmp_path_factory.mktemp("serve") / "run"
    with pytest.MonkeyPatch.context() as env:  # conftest's per-test environment is not set up yet
        env.setenv("LIFT_DATA_DIR", str(DATA_DIR))
        env.setenv("LIFT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        assert (
            main(
                [
                    "run",
                    "--model",
                    str(tiny_models["bert"]),
                    "--max-train-samples",
                    "32",
                    "--max-eval-samples",
                    "16",
                    "--epochs",
                    "1",
                    "--max-length",
                    "32",
                    "--lr",
                    "0.02",
                    "--output-dir",
                    str(out),
                ]
            )
            == 0
        )
    return out


@pytest.fixture(scope="module")
def server(run_dir):
    with serving(run_dir, "--max-client-batch-size", "4", "--max-input-chars", "200", "--max-wait-ms", "20") as (
        url,
        _,
    ):
        yield url


def test_every_endpoint_answers_in_its_shape(server, run_dir):
    predictor = liftkit.load(run_dir)
    expected = predictor.predict_proba(["i feel great"])[0]
    one = httpx.post(server + "/predict", json={"inputs": "i feel great"}).json()
    assert [d["label"] for d in one] == [predictor.labels[i] for i in np.argsort(-expected, kind="stable")]
    assert np.allclose([d["score"] for d in one], np.sort(expected)[::-1], atol=1e-5)
    many = httpx.post(server + "/predict", json={"inputs": [["i feel great"], ["so sad"]]}).json()  # TEI's batch
    assert len(many) == 2 and [d["label"] for d in many[0]] == [d["label"] for d in one]
    assert httpx.post(server + "/predict", json={"inputs": ["i feel great"]}).json() == one  # one sequence, one text
    assert (
        httpx.post(server + "/", json={"inputs": "i feel great"}).json()[0]["label"] == one[0]["label"]
    )  # TEI's root route
    raw = httpx.post(server + "/predict", json={"inputs": "i feel great", "raw_scores": True}).json()
    logits = predictor.logits(["i feel great"])[0]
    assert np.allclose([d["score"] for d in raw], np.sort(logits)[::-1], atol=1e-4)  # logits, not probabilities
    classify = httpx.post(server + "/v1/classify", json={"texts": ["i feel great"], "top_k": 2}).json()
    assert classify["model"] == "run" and classify["version"] == liftkit.__version__
    assert classify["results"][0]["label"] == one[0]["label"] and len(classify["results"][0]["probabilities"]) == 2
    info = httpx.get(server + "/info").json()
    assert info["labels"] == predictor.labels and info["method"] == "lora" and info["backend"] == "torch"
    assert info["test_metrics"]["accuracy"] == pytest.approx(
        json.loads((run_dir / "metrics.json").read_text())["finetuned"]["accuracy"]
    )
    health = httpx.get(server + "/health").json()
    assert health["status"] == "ok" and list(health["models"]) == ["run"]
    assert health["models"]["run"]["method"] == "lora" and health["models"]["run"]["loaded"]
    assert (
        httpx.get(server + "/docs").status_code == 200
        and "/v1/classify" in httpx.get(server + "/openapi.json").json()["paths"]
    )
    assert "<title>liftkit playground</title>" in httpx.get(server + "/").text


def test_huggingface_hubs_inference_client_classifies_against_lift_serve(server, run_dir, monkeypatch):
    """TEI clients work unchanged: huggingface_hub's InferenceClient pointed at the server's URL."""
    import huggingface_hub.constants
    from huggingface_hub import InferenceClient

    # the session is offline (no hub); this client talks to 127.0.0.1 only
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    got = InferenceClient(model=server, timeout=30).text_classification("i feel great")
    top = got[0] if isinstance(got, list) else got  # the client keeps the first (top) of TEI's sorted answer
    probs = liftkit.load(run_dir).predict_proba(["i feel great"])[0]
    assert top.label == liftkit.load(run_dir).labels[int(probs.argmax())]
    assert top.score == pytest.approx(float(probs.max()), abs=1e-5)


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        (b"{not json", 422, "not valid JSON"),
        ({"input": "typo"}, 422, "inputs: Field required"),
        ({"inputs": 3}, 422, "inputs"),
        ({"inputs": "   "}, 422, "text 0 is empty"),
        (
            {"inputs": [["a"], ["b"], ["c"], ["d"], ["e"]]},
            413,
            "5 texts in one request, more than --max-client-batch-size 4",
        ),
        # TEI reads ["a", "b"] as one sentence pair, which a model of single texts cannot take
        ({"inputs": ["a", "b"]}, 422, "inputs[0] is a sentence pair, but this model reads single texts: send one"),
        ({"inputs": ["a", "b", "c"]}, 422, "inputs holds 3 strings: a sequence is one text [text] or one pair"),
        ({"inputs": [["a"], ["b", "c", "d"]]}, 422, "inputs[1] holds 3 strings"),
        ({"inputs": [["a"], ["b", "c"]]}, 422, "inputs[1] is a sentence pair"),
        (
            {"pairs": [["a", "b"]]},
            422,
            'pairs[0] is a sentence pair, but this model reads single texts: send them as "texts"',
        ),
        ({"texts": ["a"], "pairs": [["a", "b"]]}, 422, 'send either "texts"'),
        ({"inputs": "x" * 201}, 413, 'more than --max-input-chars 200: shorten it, or send "truncate": true'),
        ({"texts": []}, 422, "no texts"),
        ({"texts": ["fine"], "top_k": 0}, 422, "top_k"),
    ],
)
def test_bad_requests_fail_alone_with_a_json_error(server, body, status, fragment):
    route = "/v1/classify" if isinstance(body, dict) and ("texts" in body or "pairs" in body) else "/predict"
    kwargs = (
        {"content": body, "headers": {"content-type": "application/json"}}
        if isinstance(body, bytes)
        else {"json": body}
    )
    response = httpx.post(server + route, **kwargs)
    assert response.status_code == status
    doc = response.json()
    assert set(doc) == {"error", "error_type"} and fragment in doc["error"]


def test_long_text_is_cut_when_asked_and_huge_bodies_are_refused_unread(server):
    assert httpx.post(server + "/predict", json={"inputs": "x " * 150, "truncate": True}).status_code == 200
    assert httpx.post(server + "/v1/classify", json={"texts": ["x " * 150], "truncate": True}).status_code == 200
    response = httpx.post(
        server + "/predict", content=b"{" + b" " * 10_000_000 + b"}", headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and response.json()["error_type"] == "payload_too_large"

    def chunks():  # no Content-Length: sent chunked, counted as it arrives
        yield b'{"inputs": "'
        for _ in range(40):
            yield b"x" * 1000
        yield b'"}'

    chunked = httpx.post(server + "/predict", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and chunked.json()["error_type"] == "payload_too_large"
    assert httpx.post(server + "/predict", json={"inputs": "still fine"}).status_code == 200


async def _fire(url: str, texts: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(*(client.post(url + "/predict", json={"inputs": t}) for t in texts))


def _counter(url: str, name: str) -> float:
    total = 0.0
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_concurrent_requests_share_forwards_and_each_gets_its_own_answer(server, run_dir):
    before_ok = _counter(server, 'lift_requests_total{method="POST",route="/predict",status="200"}')
    before_batches = _counter(server, "lift_batch_size_count")
    responses = asyncio.run(_fire(server, TEXTS))
    expected = liftkit.load(run_dir).predict_proba(TEXTS)
    for text, response, row in zip(TEXTS, responses, expected):
        assert response.status_code == 200, text
        got = {d["label"]: d["score"] for d in response.json()}
        names = liftkit.load(run_dir).labels
        assert np.allclose([got[n] for n in names], row, atol=1e-5), text
    assert _counter(server, 'lift_requests_total{method="POST",route="/predict",status="200"}') - before_ok == 64
    batches = _counter(server, "lift_batch_size_count") - before_batches
    assert 1 <= batches < 64  # merged: fewer forwards than requests
    assert _counter(server, "lift_batch_size_sum") >= 64


def test_a_full_queue_answers_429_with_retry_after(run_dir):
    with serving(run_dir, "--max-concurrent-requests", "1", "--max-wait-ms", "500") as (url, _):
        responses = asyncio.run(_fire(url, TEXTS[:6]))
        codes = sorted(r.status_code for r in responses)
        assert codes.count(200) >= 1 and 429 in codes
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.headers["retry-after"] == "1" and "--max-concurrent-requests 1" in refused.json()["error"]


def test_an_api_key_guards_everything_but_health_and_the_page(run_dir):
    with serving(run_dir, env={"LIFT_API_KEY": "s3cret"}) as (url, _):
        assert httpx.post(url + "/predict", json={"inputs": "hi"}).status_code == 401
        assert httpx.post(url + "/", json={"inputs": "hi"}).status_code == 401  # TEI's predict route: guarded too
        wrong = httpx.post(url + "/predict", json={"inputs": "hi"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error_type"] == "unauthorized"
        assert (
            httpx.post(url + "/predict", json={"inputs": "hi"}, headers={"Authorization": "Bearer s3cret"}).status_code
            == 200
        )
        assert httpx.get(url + "/info").status_code == 401 and httpx.get(url + "/metrics").status_code == 401
        assert httpx.get(url + "/health").status_code == 200 and httpx.get(url + "/").status_code == 200


def test_sigterm_answers_the_requests_in_flight_then_exits_0(run_dir):
    with serving(run_dir, "--max-wait-ms", "400") as (url, proc):

        async def fire_then_stop() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as client:
                pending = [asyncio.create_task(client.post(url + "/predict", json={"inputs": t})) for t in TEXTS[:8]]
                await asyncio.sleep(0.15)  # the requests are in the batcher's queue, waiting for company
                proc.send_signal(signal.SIGTERM)
                return await asyncio.gather(*pending)

        responses = asyncio.run(fire_then_stop())
        assert [r.status_code for r in responses] == [200] * 8
        assert proc.wait(timeout=30) == 0


def test_health_is_503_until_the_model_answers(run_dir):
    from fastapi.testclient import TestClient

    from liftkit.serve.app import ServeSettings, create_app

    app = create_app(ServeSettings(paths=[str(run_dir)]))
    client = TestClient(app)  # outside `with`: the lifespan (which loads the model) has not run
    response = client.get("/health")
    assert response.status_code == 503 and response.json()["error_type"] == "unavailable"
    refused = client.post("/predict", json={"inputs": "hi"})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    with TestClient(app) as started:
        deadline = time.monotonic() + 60
        while started.get("/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started.get("/health").status_code == 200


def test_a_damaged_folder_is_refused_before_listening(run_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "adapter_model.safetensors").unlink()
    done = subprocess.run(
        [sys.executable, "-m", "liftkit.cli", "serve", str(broken), "--port", str(_free_port())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: run folder")
    assert "adapter_model.safetensors" in done.stderr


def test_workers_each_serve_the_model(run_dir):
    with serving(run_dir, "--workers", "2") as (url, _):
        answers = asyncio.run(_fire(url, TEXTS[:8]))
        assert [r.status_code for r in answers] == [200] * 8


class _FakeModels:
    """Scores each row by its first token; a row starting with 666 makes the forward fail."""

    name = "fake"

    def __init__(self):
        self.batches: list[int] = []

    def __call__(self, work):
        rows = [row for _, job in work for row in job]
        self.batches.append(len(rows))
        if any(row[0] == 666 for row in rows):
            raise RuntimeError("boom")
        return [np.array([[float(row[0]), 0.0] for row in job], dtype=np.float32) for _, job in work]


def test_the_batcher_merges_within_its_limits_and_a_failure_stays_with_its_request():
    from liftkit.serve.batcher import Batcher

    async def scenario():
        fake = _FakeModels()
        batcher = Batcher(max_batch_size=8, max_batch_tokens=40, max_wait_ms=50, max_pending=100, run=fake)
        batcher.start()
        short = [[i, 1] for i in range(1, 5)]  # width 2
        results = await asyncio.gather(
            *(batcher.submit([(fake, [row])]) for row in short),
            batcher.submit([(fake, [[666, 1]])]),
            batcher.submit([(fake, [[7] * 10])]),  # width 10: 6 rows x 10 > 40 tokens, so it waits for the next batch
            return_exceptions=True,
        )
        await batcher.stop()
        return results, fake.batches

    results, batches = asyncio.run(scenario())
    assert [float(r[0][0][0]) for r in results[:4]] == [1, 2, 3, 4]  # each request got its own row back
    assert isinstance(results[4], RuntimeError) and float(results[5][0][0][0]) == 7
    assert batches[0] == 5  # four good requests and the bad one shared a forward ...
    assert batches[1:6] == [1, 1, 1, 1, 1]  # ... which failed, so each was retried alone
    assert batches[6:] == [1]  # the wide request, carried over to its own batch


def test_the_playground_classifies_in_a_real_browser(server, run_dir, browser_page):
    text = "i am so scared of the dark"
    expected = liftkit.load(run_dir).predict([text])[0]["label"]
    page, errors = browser_page
    page.goto(server + "/")
    page.wait_for_selector("#facts dt")  # the model card facts arrived from /info
    page.fill("#text", text)
    page.click("#go")
    page.wait_for_selector("#result:not([hidden]) .row")
    assert page.text_content("#top") == expected
    assert page.locator("#bars .row").count() == len(liftkit.load(run_dir).labels)
    assert page.text_content("#bars .row.best .name") == expected
    assert "lora" in page.text_content("#facts")
    assert errors == []
