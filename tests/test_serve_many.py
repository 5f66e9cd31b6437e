"""`lift serve` hosting several classifiers: routes by name, fan-out, admin, least-recently-used unloading."""

from __future__ import annotations

import threading

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from test_serve import serving

import liftkit
from liftkit.serve.app import ServeSettings, create_app

TEXTS = ["i feel great today", "this is awful", "so scared of the exam"]
KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SINGLE = ["lora", "lora-rt", "ia3", "adapter", "head", "prompt", "multi"]  # models of single texts


def _probabilities(answer: list[dict]) -> dict[str, float]:
    return {item["label"]: item["score"] for item in answer}


@pytest.fixture(scope="module")
def hosted(many_runs):
    specs = [f"{name}={path}" for name, path in many_runs.items()]
    with serving(specs, "--max-wait-ms", "20", env={"LIFT_API_KEY": KEY}) as (url, _):
        yield url


def test_every_model_answers_as_it_does_alone_on_every_route(hosted, many_runs):
    for name in SINGLE:
        alone = liftkit.load(many_runs[name])
        expected = alone.predict_proba(TEXTS)
        tei = httpx.post(f"{hosted}/models/{name}/predict", json={"inputs": [[t] for t in TEXTS]}, headers=AUTH)
        assert tei.status_code == 200, tei.text
        for answer, row in zip(tei.json(), expected):
            got = _probabilities(answer)
            assert max(abs(got[label] - p) for label, p in zip(alone.labels, row)) < 1e-5
        classified = httpx.post(f"{hosted}/v1/classify", json={"texts": TEXTS, "model": name}, headers=AUTH).json()
        assert classified["model"] == name
        assert [r.get("label", r.get("labels")) for r in classified["results"]] == [
            a.get("label", a.get("labels")) for a in alone.predict(TEXTS)
        ]
    pair = httpx.post(f"{hosted}/models/bi/predict", json={"inputs": [["a cat", "a small cat"]]}, headers=AUTH)
    got = _probabilities(pair.json()[0])
    expected = liftkit.load(many_runs["bi"]).predict([("a cat", "a small cat")])[0]["probabilities"]
    assert max(abs(got[label] - p) for label, p in expected.items()) < 1e-5


def test_one_call_fans_out_to_several_models_keyed_by_name(hosted, many_runs):
    body = {"texts": TEXTS, "models": SINGLE}
    answer = httpx.post(f"{hosted}/v1/classify", json=body, headers=AUTH).json()
    assert answer["models"] == SINGLE and list(answer["results"]) == SINGLE
    for name in SINGLE:
        alone = liftkit.load(many_runs[name]).predict(TEXTS)
        for got, want in zip(answer["results"][name], alone):
            probs = {p["label"]: p["score"] for p in got["probabilities"]}
            assert max(abs(probs[k] - v) for k, v in want["probabilities"].items()) < 1e-5
    # a text sent to a model of pairs is refused, naming the model
    mixed = httpx.post(f"{hosted}/v1/classify", json={"texts": TEXTS, "models": ["lora", "bi"]}, headers=AUTH)
    assert mixed.status_code == 422 and "model 'bi' reads sentence pairs" in mixed.json()["error"]


def test_the_listing_names_every_model_and_unnamed_requests_ask_for_one(hosted, many_runs):
    health = httpx.get(f"{hosted}/health").json()
    assert list(health["models"]) == list(many_runs)
    assert health["models"]["multi"]["task"] == "multi_label"
    info = httpx.get(f"{hosted}/info", headers=AUTH).json()
    assert info["models"]["ia3"]["method"] == "ia3" and info["models"]["lora"]["shared_layers"] == 1
    assert len({info["models"][n]["shares_base"] for n in info["models"]}) == 1  # one base for all
    unnamed = httpx.post(f"{hosted}/predict", json={"inputs": "hi"}, headers=AUTH)
    assert unnamed.status_code == 422 and "hosts 8 models" in unnamed.json()["error"]
    unknown = httpx.post(f"{hosted}/models/nope/predict", json={"inputs": "hi"}, headers=AUTH)
    assert unknown.status_code == 404 and "no model named 'nope'" in unknown.json()["error"]
    assert httpx.post(f"{hosted}/models/lora/predict", json={"inputs": "hi"}, headers=AUTH).status_code == 200
    metrics = httpx.get(f"{hosted}/metrics", headers=AUTH).text
    assert 'lift_model_texts_total{model="lora"}' in metrics and 'route="/models/{name}/predict"' in metrics
    assert 'lift_model_requests_total{model="lora"}' in metrics
    assert 'lift_model_duration_seconds_count{model="lora"}' in metrics


def test_models_come_and_go_while_the_others_answer_every_request(hosted, many_runs):
    failures: list[str] = []
    stop = threading.Event()

    def client(name: str) -> None:
        with httpx.Client(headers=AUTH, timeout=30) as http:
            for _ in range(400):  # bounded; ends early once the admin calls are done
                if stop.is_set():
                    return
                r = http.post(f"{hosted}/models/{name}/predict", json={"inputs": TEXTS[0]})
                if r.status_code != 200:
                    failures.append(f"{name}: {r.status_code} {r.text}")

    threads = [threading.Thread(target=client, args=(n,)) for n in ("lora", "ia3", "lora", "multi")]
    for t in threads:
        t.start()
    try:
        added = httpx.post(
            f"{hosted}/admin/models", json={"name": "late", "path": str(many_runs["head"])}, headers=AUTH, timeout=60
        )
        assert added.status_code == 201, added.text
        assert added.json()["load_s"] < 10 and added.json()["method"] == "head"
        late = httpx.post(f"{hosted}/models/late/predict", json={"inputs": TEXTS[0]}, headers=AUTH)
        assert late.status_code == 200
        taken = httpx.post(f"{hosted}/admin/models", json={"name": "late", "path": "x"}, headers=AUTH)
        assert taken.status_code == 409 and "already loaded" in taken.json()["error"]
        bad = httpx.post(f"{hosted}/admin/models", json={"name": "ghost", "path": "/nope"}, headers=AUTH)
        assert bad.status_code == 422 and "does not exist" in bad.json()["error"]
        assert httpx.delete(f"{hosted}/admin/models/late", headers=AUTH).status_code == 200
        gone = httpx.delete(f"{hosted}/admin/models/late", headers=AUTH)
        assert gone.status_code == 404 and "no model named 'late'" in gone.json()["error"]
        assert httpx.post(f"{hosted}/models/late/predict", json={"inputs": "hi"}, headers=AUTH).status_code == 404
        assert httpx.post(f"{hosted}/admin/models", headers={}, json={"name": "x", "path": "y"}).status_code == 401
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert failures == []


def test_admin_routes_are_off_without_an_api_key(many_runs, monkeypatch):
    monkeypatch.delenv("LIFT_API_KEY", raising=False)
    with TestClient(create_app(ServeSettings(paths=[str(many_runs["lora"])]))) as client:
        added = client.post("/admin/models", json={"name": "b", "path": str(many_runs["ia3"])})
        assert added.status_code == 403 and "LIFT_API_KEY" in added.json()["error"]
        assert client.delete("/admin/models/run").status_code == 403


def test_past_max_models_the_least_recently_used_unloads_and_comes_back(many_runs, monkeypatch):
    monkeypatch.delenv("LIFT_API_KEY", raising=False)
    paths = [f"{n}={many_runs[n]}" for n in ("lora", "ia3", "head")]
    with TestClient(create_app(ServeSettings(paths=paths, max_models=2))) as client:
        _healthy(client)
        for name in ("lora", "ia3", "head", "lora"):
            answer = client.post(f"/models/{name}/predict", json={"inputs": TEXTS[0]})
            assert answer.status_code == 200
            want = liftkit.load(many_runs[name]).predict_proba([TEXTS[0]])[0]
            labels = liftkit.load(many_runs[name]).labels
            got = _probabilities(answer.json())
            assert np.allclose([got[label] for label in labels], want, atol=1e-5)
        listing = client.get("/health").json()["models"]
        assert {n for n, m in listing.items() if m["loaded"]} == {"head", "lora"}  # ia3, least recent, went
        # loading head at start unloaded lora; then each request reloaded its model: lora twice
        metrics = client.get("/metrics").text
        assert 'lift_model_reloads_total{model="lora"} 2.0' in metrics
        assert 'lift_model_reloads_total{model="ia3"} 1.0' in metrics


def _healthy(client: TestClient) -> None:
    import time

    deadline = time.monotonic() + 60
    while client.get("/health").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)


def test_the_playground_picks_a_model_in_a_real_browser(many_runs, browser_page, tmp_path):
    runs = {n: many_runs[n] for n in ("lora", "bi", "multi")}
    with serving([f"{n}={p}" for n, p in runs.items()]) as (url, _):
        page, errors = browser_page
        page.goto(url + "/")
        page.wait_for_selector("#facts dt")
        assert page.is_visible("#model-row") and page.locator("#model option").count() == 3
        page.select_option("#model", "bi")
        page.wait_for_selector("#pair-row:not([hidden])")
        page.fill("#text", "a man plays the guitar")
        page.fill("#text-pair", "someone makes music")
        page.click("#go")
        page.wait_for_selector("#result:not([hidden]) .row")
        expected = liftkit.load(runs["bi"]).predict([("a man plays the guitar", "someone makes music")])[0]
        assert page.text_content("#top") == expected["label"]
        assert "bi" in page.text_content("#subtitle")
        page.screenshot(path=str(tmp_path / "picker.png"), full_page=True)
        assert errors == []
