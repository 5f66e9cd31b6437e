"""Serving under load: `lift serve` (dynamic batching) vs a naive server, same model, same clients.

The naive server is what users write today: a FastAPI endpoint that runs one forward per request
(`liftkit.load(PATH).predict_proba([text])` in a sync route, so uvicorn runs requests in its
thread pool, concurrently), on the same folder (batching alone) or on the run folder in torch
(`--naive-path`: the endpoint users write around their trained model). Both listen on 127.0.0.1 (ephemeral ports), one at a time; 32 client
coroutines (one keep-alive connection each) send emotion test texts, one per request, until --requests are
done or --time-limit passes. Measured per server: throughput, p50/p99 latency, errors, and the
server's RSS after warm-up and after the load. Prints one JSON line with the ratios.

    python bench/serve_load.py --path RUN_OR_EXPORT_DIR                       # 10,000 requests per server
    python bench/serve_load.py --path EXPORT_DIR --naive-path RUN_DIR --quick # 2,000; naive on torch

Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve()


def naive_app(path: str):
    """One forward per request, as a hand-written endpoint does."""
    from fastapi import FastAPI

    import liftkit

    predictor = liftkit.load(path)
    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict) -> list[dict]:
        row = predictor.predict_proba([body["inputs"]])[0]
        return sorted(
            ({"label": n, "score": float(p)} for n, p in zip(predictor.labels, row)), key=lambda d: -d["score"]
        )

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _start(command: list[str]) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen(command + ["--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server {command} did not become healthy")


class Connection:
    """One keep-alive HTTP/1.1 connection: a load generator that costs the 2-core machine far less
    CPU per request than httpx (~0.1 ms against ~2.8 ms measured), so the servers get the cores."""

    def __init__(self, host: str, port: int, headers: str = ""):
        self.host, self.port, self.headers = host, port, headers  # headers: extra "Name: value\r\n" lines
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, payload: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n{self.headers}"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        self.writer.write(head + payload)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _load(
    url: str,
    texts: list[str],
    requests: int,
    clients: int,
    time_limit: float,
    routes: tuple[str, ...] = ("/predict",),
    headers: str = "",
) -> dict:
    """`clients` keep-alive clients, one text per request (the i-th to routes[i % len(routes)]),
    until `requests` are sent or `time_limit` seconds pass."""
    host, port = url.removeprefix("http://").split(":")
    payloads = [json.dumps({"inputs": t}).encode() for t in texts]
    latencies: list[float] = []
    errors = 0
    sent = 0
    stop_at = time.monotonic() + time_limit

    async def client() -> None:
        nonlocal sent, errors
        connection = Connection(host, int(port), headers)
        while sent < requests and time.monotonic() < stop_at:
            route, payload = routes[sent % len(routes)], payloads[sent % len(payloads)]
            sent += 1
            start = time.perf_counter()
            try:
                ok = await connection.post(route, payload) == 200
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                ok, connection = False, Connection(host, int(port), headers)
            latencies.append(time.perf_counter() - start)
            errors += not ok
        await connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - start
    ms = sorted(t * 1000 for t in latencies)
    return {
        "requests": len(latencies),
        "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2),
        "errors": errors,
    }


def measure(name: str, command: list[str], texts: list[str], args: argparse.Namespace) -> dict:
    proc, url = _start(command)
    try:
        # warm-up: threads, allocator arenas and kernel caches see every batch shape the load will bring
        asyncio.run(_load(url, texts, args.warmup, args.clients, 120))
        rss_before = _rss_mb(proc.pid)
        result = asyncio.run(_load(url, texts, args.requests, args.clients, args.time_limit))
        result.update(rss_before_mb=round(rss_before, 1), rss_after_mb=round(_rss_mb(proc.pid), 1))
        result["rss_growth_mb"] = round(result["rss_after_mb"] - result["rss_before_mb"], 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    print(f"{name:>12}: {result}", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", help="the run or export folder `lift serve` serves")
    parser.add_argument(
        "--naive-path",
        help="the folder the naive server serves (default: --path; a run folder = torch, as users' endpoints do)",
    )
    parser.add_argument("--requests", type=int, default=10_000, help="per server")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument(
        "--warmup", type=int, default=2000, help="requests before measuring (and before the first RSS reading)"
    )
    parser.add_argument("--time-limit", type=float, default=600, help="seconds per server at most")
    parser.add_argument("--quick", action="store_true", help="2,000 requests per server")
    parser.add_argument(
        "--naive-server", action="store_true", help=argparse.SUPPRESS
    )  # internal: run the naive server
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        import uvicorn

        uvicorn.run(naive_app(args.path), host="127.0.0.1", port=args.port, log_level="warning")
        return
    if not args.path:
        parser.error("--path RUN_OR_EXPORT_DIR is required")
    if args.quick:
        args.requests = 2000
    data = Path(os.environ.get("LIFT_DATA_DIR", HERE.parents[2] / "shared" / "data")) / "emotion" / "test.jsonl.gz"
    texts = [json.loads(line)["text"] for line in gzip.open(data, "rt")]
    lift = measure("lift serve", [sys.executable, "-m", "liftkit.cli", "serve", args.path], texts, args)
    naive_path = args.naive_path or args.path
    naive = measure("naive", [sys.executable, str(HERE), "--naive-server", "--path", naive_path], texts, args)
    print(
        json.dumps(
            {
                "bench": "serve_load",
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "path": args.path,
                "naive_path": naive_path,
                "clients": args.clients,
                "lift_serve": lift,
                "naive": naive,
                "throughput_ratio": round(lift["requests_per_s"] / naive["requests_per_s"], 2),
                "p99_ratio_naive_over_lift": round(naive["p99_ms"] / lift["p99_ms"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
