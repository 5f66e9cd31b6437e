"""`lift serve`: a run or an export behind HTTP (FastAPI + uvicorn).

`batcher` merges concurrent requests into one forward; `app` is the HTTP layer (TEI-compatible
`/predict`, liftkit's `/v1/classify`, health, info, Prometheus metrics, limits, API key);
`page` is the playground at `/`. Imports no training code.
"""
