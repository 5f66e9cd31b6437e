"""Many classifiers, one base: one `lift serve` hosting 20 runs against a server per run.

Trains (or reuses) 20 quick runs of the embedded MiniLM, default recipe (LoRA in the top half):
emotion, rotten_tomatoes, ag_news, tweet_eval_emoji and go_emotions x 4 seeds, 400 training rows
and 1 epoch each (their accuracy is not the point). Then, every server on 127.0.0.1, one at a time
unless said otherwise, every load loop bounded:

- memory: the RSS of one server hosting 1, 5, 10 and 20 of them (each model answered once first),
  and the sum over 20 single-model servers;
- throughput: 32 clients (bench/serve_load.py's client), one text per request, against one
  single-model server (`/predict`) and against the 20-model server with the requests spread evenly
  over the 20 (`/models/{name}/predict`): req/s, p50, p99;
- fan-out: one text to all 20 in one call (`/v1/classify` with `"models"`) against the same 20
  calls made one after another to 20 single-model servers (running side by side);
- adding a classifier while 32 clients load the others: seconds until it answers, failed
  requests on the others.

Prints a table and one JSON line with every figure.

    LIFT_DATA_DIR=../shared/data python bench/serve_many.py --output-dir runs/serve-many
    LIFT_DATA_DIR=../shared/data python bench/serve_many.py --output-dir runs/serve-many --quick

Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Coroutine

import httpx
from common import reused_run  # bench/common.py: python puts the script's folder on the path
from serve_load import _free_port, _load, _rss_mb

DATASETS = ["emotion", "rotten_tomatoes", "ag_news", "tweet_eval_emoji", "go_emotions"]
QUICK_RUN = {"data.max_train_samples": 400, "data.max_eval_samples": 200, "train.epochs": 1}
KEY = "bench-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def train(out: Path, count: int) -> dict[str, Path]:
    """`count` quick runs named dataset-seed, trained now unless their folders hold them."""
    runs = {}
    for i in range(count):
        dataset, seed = DATASETS[i % len(DATASETS)], i // len(DATASETS)
        folder = out / f"{dataset}-s{seed}"
        reused_run(folder, {"data.dataset": dataset, "train.seed": seed, **QUICK_RUN})
        runs[folder.name] = folder
    return runs


class Server:
    """`lift serve` of some runs on a free loopback port, healthy on entry, stopped on exit."""

    def __init__(self, runs: dict[str, Path], *extra: str):
        self.port = _free_port()
        specs = [f"{name}={path}" for name, path in runs.items()]
        command = [sys.executable, "-m", "liftkit.cli", "serve", *specs, "--port", str(self.port), *extra]
        self.proc = subprocess.Popen(
            command, env={**os.environ, "LIFT_API_KEY": KEY}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.names = list(runs)

    def wait(self) -> Server:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"lift serve exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise SystemExit("lift serve did not become healthy in 300 s")

    def rss_mb(self) -> float:
        return _rss_mb(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def load(url: str, routes: list[str], texts: list[str], requests: int, clients: int, seconds: float) -> Coroutine:
    """serve_load's clients, sending the API key, the i-th request to routes[i % len(routes)]."""
    return _load(url, texts, requests, clients, seconds, tuple(routes), f"Authorization: Bearer {KEY}\r\n")


def warm(server: Server, texts: list[str]) -> None:
    """Every model answers a few requests (first forwards allocate)."""
    with httpx.Client(headers=AUTH, timeout=60) as http:
        for name in server.names:
            for text in texts[:4]:
                http.post(f"{server.url}/models/{name}/predict", json={"inputs": text}).raise_for_status()


def memory(runs: dict[str, Path], texts: list[str]) -> dict[str, float]:
    """RSS of one server hosting the first 1, 5, 10, 20 runs."""
    out = {}
    for count in (1, 5, 10, 20):
        server = Server(dict(list(runs.items())[:count])).wait()
        try:
            warm(server, texts)
            out[str(count)] = round(server.rss_mb(), 1)
        finally:
            server.stop()
        print(f"memory: {count} model(s) in one server: {out[str(count)]} MB", file=sys.stderr, flush=True)
    return out


def throughput(runs: dict[str, Path], texts: list[str], args: argparse.Namespace) -> dict[str, dict]:
    """32 clients against one single-model server, then against the 20-model server, spread evenly."""
    first = next(iter(runs))
    out = {}
    for label, hosted, routes in (
        ("single", {first: runs[first]}, ["/predict"]),
        ("many", runs, [f"/models/{name}/predict" for name in runs]),
    ):
        server = Server(hosted).wait()
        try:
            warm(server, texts)
            asyncio.run(load(server.url, routes, texts, args.warmup, args.clients, 120))
            out[label] = asyncio.run(load(server.url, routes, texts, args.requests, args.clients, args.time_limit))
        finally:
            server.stop()
        print(f"throughput, {label}: {out[label]}", file=sys.stderr, flush=True)
    return out


def fan_out(runs: dict[str, Path], texts: list[str], rounds: int) -> dict[str, float]:
    """One text to every model: one /v1/classify call with "models" against a /predict call to
    each of 20 single-model servers, one after another. Also the 20 single servers' summed RSS."""
    sample = random.Random(0).sample(texts, rounds)
    many = Server(runs).wait()
    try:
        warm(many, texts)
        with httpx.Client(headers=AUTH, timeout=60) as http:
            for text in sample[:5]:  # warm-up
                http.post(f"{many.url}/v1/classify", json={"texts": [text], "models": many.names}).raise_for_status()
            began = time.perf_counter()
            for text in sample:
                http.post(f"{many.url}/v1/classify", json={"texts": [text], "models": many.names}).raise_for_status()
            together = (time.perf_counter() - began) / rounds
    finally:
        many.stop()
    singles = [Server({name: path}) for name, path in runs.items()]  # started side by side
    try:
        for server in singles:
            server.wait()
            warm(server, texts)
        rss_sum = sum(server.rss_mb() for server in singles)
        with httpx.Client(headers=AUTH, timeout=60) as http:
            for text in sample[:5]:
                for server in singles:
                    http.post(f"{server.url}/predict", json={"inputs": text}).raise_for_status()
            began = time.perf_counter()
            for text in sample:
                for server in singles:
                    http.post(f"{server.url}/predict", json={"inputs": text}).raise_for_status()
            apart = (time.perf_counter() - began) / rounds
    finally:
        for server in singles:
            server.stop()
    result = {
        "one_call_ms": round(together * 1000, 2),
        "twenty_calls_ms": round(apart * 1000, 2),
        "speedup": round(apart / together, 2),
        "single_servers_rss_sum_mb": round(rss_sum, 1),
    }
    print(f"fan-out: {result}", file=sys.stderr, flush=True)
    return result


def adding(runs: dict[str, Path], extra: Path, texts: list[str], args: argparse.Namespace) -> dict[str, float]:
    """Add a classifier through POST /admin/models while 32 clients load the others."""
    server = Server(runs).wait()
    routes = [f"/models/{name}/predict" for name in runs]
    try:
        warm(server, texts)

        async def scenario() -> tuple[dict, float]:
            traffic = asyncio.create_task(load(server.url, routes, texts, 10**9, args.clients, 8))
            await asyncio.sleep(2)
            async with httpx.AsyncClient(headers=AUTH, timeout=60) as http:
                began = time.perf_counter()
                added = await http.post(f"{server.url}/admin/models", json={"name": "added", "path": str(extra)})
                added.raise_for_status()
                answer = await http.post(f"{server.url}/models/added/predict", json={"inputs": texts[0]})
                answer.raise_for_status()
                seconds = time.perf_counter() - began
            return await traffic, seconds

        others, seconds = asyncio.run(scenario())
    finally:
        server.stop()
    result = {"seconds_until_it_answers": round(seconds, 3), "others": others}
    print(f"adding: {result}", file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path("runs/serve-many"))
    parser.add_argument("--requests", type=int, default=6000, help="per throughput server")
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--time-limit", type=float, default=300, help="seconds per throughput server at most")
    parser.add_argument("--fan-out-rounds", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="1,500 requests, 20 fan-out rounds")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.warmup, args.fan_out_rounds = 1500, 300, 20
    data = Path(os.environ.get("LIFT_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    texts = [json.loads(line)["text"] for line in gzip.open(data / "emotion" / "test.jsonl.gz", "rt")]
    runs = train(args.output_dir, 21)
    extra = runs.pop(list(runs)[-1])  # the 21st: added while serving
    figures = {
        "memory_mb": memory(runs, texts),
        "throughput": throughput(runs, texts, args),
        "fan_out": fan_out(runs, texts, args.fan_out_rounds),
        "adding": adding(runs, extra, texts, args),
    }
    _report(figures, args)


def _report(figures: dict, args: argparse.Namespace) -> None:
    mem, speed, fan, add = figures["memory_mb"], figures["throughput"], figures["fan_out"], figures["adding"]
    ratios = {
        "memory_20_over_1": round(mem["20"] / mem["1"], 2),
        "throughput_many_over_single": round(speed["many"]["requests_per_s"] / speed["single"]["requests_per_s"], 2),
        "fan_out_speedup": fan["speedup"],
    }
    print("| measure | one server, 20 models | against | ratio | target |")
    print("|---|---:|---:|---:|---|")
    print(f"| RSS (MB) | {mem['20']} | {mem['1']} (one model) | {ratios['memory_20_over_1']} | <= 1.5 |")
    print(f"| RSS, 20 single servers summed (MB) | {mem['20']} | {fan['single_servers_rss_sum_mb']} | | |")
    many, single = speed["many"], speed["single"]
    print(
        f"| req/s, 32 clients (p99 ms) | {many['requests_per_s']} ({many['p99_ms']}) | {single['requests_per_s']} "
        f"({single['p99_ms']}) one model | {ratios['throughput_many_over_single']} | >= 0.7 |"
    )
    print(
        f"| one text to 20 models (ms) | {fan['one_call_ms']} | {fan['twenty_calls_ms']} (20 calls, 20 servers) "
        f"| {ratios['fan_out_speedup']} | >= 3 |"
    )
    print(
        f"| adding a model under load | {add['seconds_until_it_answers']} s | "
        f"{add['others']['errors']} failed of {add['others']['requests']} | | < 1 s, 0 failed |"
    )
    print(
        json.dumps(
            {"bench": "serve_many", "date": time.strftime("%Y-%m-%d %H:%M"), **figures, "ratios": ratios},
            default=str,
        )
    )


if __name__ == "__main__":
    main()
