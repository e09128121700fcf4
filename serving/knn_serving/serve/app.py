"""The HTTP API (DESIGN section 3). Bad input → 4xx with a message; never a 5xx.

The query route reads the raw body itself: FastAPI's body model is declared
only for the OpenAPI document, so large arrays skip per-element validation.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from knn_contracts.artifact import INDEX_FILE
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ..centroids import silhouette
from ..drift import DriftTracker, QueryDrift
from ..errors import ArtifactError
from ..hnswfile import map_vectors
from . import loading
from .index import LoadedIndex, Searcher
from .live import LiveRecall, LiveSettings
from .loading import Loaded
from .metrics import ClusterMetrics, Identity, ServingMetrics
from .model import Assigner, LoadedModel
from .requests import Limits, Query, RequestError, parse

log = logging.getLogger("knn-serve")

JSON = "application/json"
SILHOUETTE_PROBES = 1_000


@dataclass
class Settings:
    artifact: str  # path, file://, pvc:// or s3:// of one version
    identity: Identity
    probe_interval: float = 60.0
    batch_threads: int = 1
    max_batch: int = 1024
    max_body_bytes: int = 16 << 20
    max_k: int = 1000
    max_ef: int = 4096
    # Serving-time search breadth; None keeps the one the artifact was validated with.
    ef_search: int | None = None
    cache_dir: Path = Path("/tmp/knn-artifacts")
    live: LiveSettings = field(default_factory=LiveSettings)
    # k-means models: assignments in the sliding window that PSI is computed over.
    drift_window: int = 10_000


@dataclass
class State:
    settings: Settings
    metrics: ServingMetrics
    searcher: Searcher | None = None
    live: LiveRecall | None = None
    # A k-means model (the server was started with --model-name).
    assigner: Assigner | None = None
    cluster_metrics: ClusterMetrics | None = None
    drift: DriftTracker | None = None
    # An index: live nearest distances against the probe set's (from the first replay).
    query_drift: QueryDrift | None = None
    limits: Limits | None = None
    error: str | None = None
    warm: bool = False
    draining: bool = False
    last_recall: float | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _json(payload: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type=JSON
    )


def _error(status: int, message: str) -> Response:
    return _json({"detail": message}, status)


QUERY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "oneOf": [
                        {
                            "type": "object",
                            "required": ["vector"],
                            "properties": {
                                "vector": {"type": "array", "items": {"type": "number"}},
                                "k": {"type": "integer", "minimum": 1, "default": 10},
                                "ef": {"type": "integer", "minimum": 1},
                            },
                            "additionalProperties": False,
                        },
                        {
                            "type": "object",
                            "required": ["vectors"],
                            "properties": {
                                "vectors": {
                                    "type": "array",
                                    "items": {"type": "array", "items": {"type": "number"}},
                                },
                                "k": {"type": "integer", "minimum": 1, "default": 10},
                                "ef": {"type": "integer", "minimum": 1},
                            },
                            "additionalProperties": False,
                        },
                    ]
                }
            },
            "application/octet-stream": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "little-endian float32 rows; k and ef as query params",
                }
            },
        },
    },
    "parameters": [
        {"name": "k", "in": "query", "required": False, "schema": {"type": "integer"}},
        {"name": "ef", "in": "query", "required": False, "schema": {"type": "integer"}},
    ],
    "responses": {
        "200": {"description": "neighbours: ids (original) and distances, nearest first"},
        "400": {"description": "malformed body"},
        "413": {"description": "body or batch too large"},
        "415": {"description": "unsupported content type"},
        "422": {"description": "invalid query (dimension, NaN, k or ef out of range)"},
        "503": {"description": "index not loaded yet"},
    },
}


def _refuse(state: State, message: str) -> None:
    state.error = f"artifact refused: {message}"
    log.error("%s", state.error)


ASSIGN_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "oneOf": [
                        {
                            "type": "object",
                            "required": ["vector"],
                            "properties": {
                                "vector": {"type": "array", "items": {"type": "number"}}
                            },
                            "additionalProperties": False,
                        },
                        {
                            "type": "object",
                            "required": ["vectors"],
                            "properties": {
                                "vectors": {
                                    "type": "array",
                                    "items": {"type": "array", "items": {"type": "number"}},
                                }
                            },
                            "additionalProperties": False,
                        },
                    ]
                }
            },
            "application/octet-stream": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "little-endian float32 rows",
                }
            },
        },
    },
    "responses": {
        "200": {"description": "nearest centroid: cluster id and Euclidean distance"},
        **{code: QUERY_SCHEMA["responses"][code] for code in ("400", "413", "415")},
        "404": {"description": "this server serves an HNSW index (use /v1/query)"},
        "422": {"description": "invalid vector (dimension, NaN, unknown field)"},
        "503": {"description": "model not loaded yet"},
    },
}


async def _load(state: State, preloaded: Loaded | str | None) -> None:
    s = state.settings
    if preloaded is None:
        preloaded = await asyncio.to_thread(
            loading.load, s.artifact, s.cache_dir, s.identity, s.ef_search
        )
    if isinstance(preloaded, str):
        state.error = preloaded
        return
    if isinstance(preloaded.artifact, LoadedModel):
        try:
            await _load_model(state, preloaded.artifact)
        except Exception as e:  # as a load error: stay up, unready
            _refuse(state, f"{s.artifact}: {type(e).__name__}: {e}")
        return
    directory, loaded = preloaded.directory, preloaded.artifact
    m = loaded.manifest
    try:
        state.metrics.set_version(m)
    except ValueError as e:
        state.error = f"artifact refused: {e}"
        log.error("%s", state.error)
        return
    state.limits = Limits(
        dimension=m.dimension,
        count=m.count,
        max_k=s.max_k,
        max_ef=s.max_ef,
        max_batch=s.max_batch,
        max_body_bytes=s.max_body_bytes,
        reject_zero=m.metric == "cosine",
    )
    state.searcher = Searcher(loaded, s.batch_threads)
    state.live = _start_live(state, directory, loaded)
    if not loaded.unbiased_probes:
        log.warning(
            "%s is a format-%d artifact: its probes are indexed rows queried leave-one-out, "
            "which overstate recall; %s is not exported (rebuild it to measure recall)",
            s.artifact,
            m.format_version,
            "knn_recall_ratio",
        )
    log.info(
        "loaded %s: version %s, %d vectors, dimension %d, %s",
        s.artifact,
        m.version,
        m.count,
        m.dimension,
        m.metric,
    )
    _freeze_heap()
    await _replay_forever(state)


def _freeze_heap() -> None:
    """Move everything alive after loading (modules, the app, pydantic models) out
    of the collector's reach: a full collection would otherwise walk all of it,
    a pause of milliseconds that lands on whichever request triggers it."""
    gc.collect()
    gc.freeze()


async def _load_model(state: State, loaded: LoadedModel) -> None:
    """Load a k-means model, assign its probe points as a client's vectors would be
    (the probe inertia gauge), then report ready. A model does not change while
    served, so one pass suffices: there is no periodic replay."""
    s = state.settings
    m = loaded.manifest
    try:
        cluster_metrics = state.metrics.set_model(m)
    except ValueError as e:
        _refuse(state, str(e))
        return
    state.limits = Limits(
        dimension=m.dimension,
        count=m.parameters.clusters,
        max_batch=s.max_batch,
        max_body_bytes=s.max_body_bytes,
        takes_k=False,
        noun="model",
    )
    assigner = Assigner(loaded)
    points = loaded.probes.points
    if points.shape[0]:
        labels, distances = await assigner.assign(points)
        differ = int((labels != loaded.probes.assignments).sum())
        if differ:
            log.warning(
                "%d of %d probe points are assigned otherwise than at build time",
                differ,
                points.shape[0],
            )
        cluster_metrics.set_probe_inertia(float(np.square(distances).mean()))
        # Quadratic in the points: the first SILHOUETTE_PROBES (the probes are a random
        # sample already) bound it to a few MiB and milliseconds.
        score = silhouette(points[:SILHOUETTE_PROBES], labels[:SILHOUETTE_PROBES])
        if score is not None:  # undefined when the probes fall into one cluster
            cluster_metrics.set_probe_silhouette(score)
    state.cluster_metrics = cluster_metrics
    state.drift = DriftTracker(m.cluster_sizes, m.distances.mean, s.drift_window)
    state.assigner = assigner
    _freeze_heap()
    state.warm = True
    log.info(
        "loaded %s: k-means model version %s, %d clusters of dimension %d; ready",
        s.artifact,
        m.version,
        m.parameters.clusters,
        m.dimension,
    )


def _start_live(state: State, directory: Path, loaded: LoadedIndex) -> LiveRecall | None:
    live = state.settings.live
    if live.rate <= 0:
        log.info("live recall off (--live-recall-rate 0)")
        return None
    m = loaded.manifest
    try:
        graph = map_vectors(directory / INDEX_FILE, loaded.index, m.dimension)
    except ArtifactError as e:  # serve anyway: live recall is a check, not the service
        log.error("live recall off: %s", e)
        return None
    log.info(
        "live recall: sampling %.2f%% of queried vectors, exact check within %.1f%% of a core",
        100 * live.rate,
        100 * live.cpu_budget,
    )
    return LiveRecall(
        live, graph, loaded.side, m.metric, state.metrics.record_live, state.metrics.drop_live
    )


async def _replay_once(state: State) -> None:
    assert state.searcher is not None
    p = state.searcher.loaded.probes
    if p.truth.shape[0] == 0:
        state.warm = True
        return
    replay = await state.searcher.replay_probes(observe=state.metrics.observe_probe)
    recall = replay.recall
    state.last_recall = recall
    if state.query_drift is None:
        # The first replay is the baseline: the probes are held-out data rows (or the
        # user's real queries), so live queries like the data get a ratio near 1.
        state.metrics.set_query_baseline(replay.nearest)
        state.query_drift = QueryDrift(float(replay.nearest.mean()), state.settings.drift_window)
    if state.searcher.loaded.unbiased_probes:
        state.metrics.set_recall(int(p.truth.shape[1]), recall)
    if not state.warm:
        log.info(
            "warm-up replay of %d probes: recall@%d = %.4f; ready",
            p.truth.shape[0],
            p.truth.shape[1],
            recall,
        )
    state.warm = True


async def _replay_forever(state: State) -> None:
    while True:
        try:
            await _replay_once(state)
        except Exception:  # keep replaying; a failed round leaves the last value
            log.exception("probe replay failed")
        await asyncio.sleep(state.settings.probe_interval)


def create_app(
    settings: Settings,
    metrics: ServingMetrics | None = None,
    preloaded: Loaded | str | None = None,
) -> FastAPI:
    """The server; `preloaded` is the artifact (or its refusal) loaded before the
    process forked, else it is loaded in the background after start-up."""
    state = State(settings, metrics or ServingMetrics(settings.identity))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.tasks.append(asyncio.create_task(_load(state, preloaded)))
        try:
            yield
        finally:
            state.draining = True
            for t in state.tasks:
                t.cancel()
            for t in state.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            if state.searcher is not None:
                state.searcher.close()
            if state.assigner is not None:
                state.assigner.close()
            if state.live is not None:
                await asyncio.to_thread(state.live.close)

    app = FastAPI(title="knn-serve", version="1", lifespan=lifespan)
    app.state.knn = state

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        return _error(422, str(exc.errors()[0].get("msg", "invalid request")))

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz", responses={503: {"description": "not ready"}})
    async def readyz() -> Response:
        if state.error:
            return _error(503, state.error)
        if state.draining:
            return _error(503, "shutting down")
        if state.searcher is None and state.assigner is None:
            return _error(503, "loading model" if _serves_model(state) else "loading index")
        if not state.warm:
            return _error(503, "warming up: replaying probe set")
        return _json({"status": "ready"})

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(
            state.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get("/v1/info", responses={503: {"description": "index not loaded"}})
    async def info() -> Response:
        if state.assigner is not None:
            doc = state.assigner.loaded.manifest.model_dump(mode="json")
            doc["live"] = {"ready": state.warm}
            return _json(doc)
        if state.searcher is None:
            return _error(503, state.error or "loading index")
        doc = state.searcher.loaded.manifest.model_dump(mode="json")
        doc["live"] = {"recall": state.last_recall, "ready": state.warm}
        return _json(doc)

    # Both routes are normally answered by QueryFastPath before routing; these are
    # kept for the OpenAPI document and for apps mounted without the middleware.
    async def answer(handler: Handler, request: Request) -> Response:
        start = time.perf_counter()
        status, payload = await handler(
            state,
            request.headers.get("content-type"),
            await request.body(),
            request.url.query.encode(),
            start,
        )
        return Response(payload, status, media_type=JSON)

    @app.post("/v1/query", openapi_extra=QUERY_SCHEMA)
    async def query(request: Request) -> Response:
        return await answer(handle_query, request)

    @app.post("/v1/assign", openapi_extra=ASSIGN_SCHEMA)
    async def assign(request: Request) -> Response:
        return await answer(handle_assign, request)

    app.add_middleware(QueryFastPath, state=state)
    return app


def _serves_model(state: State) -> bool:
    return state.settings.identity.serves_model


def _wrong_route(state: State) -> tuple[int, bytes]:
    state.metrics.count(404)
    detail = (
        "this server serves a k-means model: use POST /v1/assign"
        if _serves_model(state)
        else "this server serves an HNSW index: use POST /v1/query"
    )
    return 404, orjson.dumps({"detail": detail})


async def handle_query(
    state: State, content_type: str | None, body: bytes, query: bytes, start: float
) -> tuple[int, bytes]:
    """Answer one query request: (status, JSON body). Counts and times it."""
    if _serves_model(state):
        return _wrong_route(state)
    searcher, limits = state.searcher, state.limits
    if searcher is None or limits is None:
        state.metrics.count(503)
        return 503, orjson.dumps({"detail": state.error or "loading index"})
    try:
        params = dict(parse_qsl(query.decode("latin-1"))) if query else {}
        q = parse(content_type, body, params, limits)
        payload = await _answer(searcher, q, state.live, state)
    except RequestError as e:
        state.metrics.count(e.status)
        return e.status, orjson.dumps({"detail": e.message})
    out = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    state.metrics.observe(time.perf_counter() - start)
    state.metrics.count(200)
    return 200, out


async def handle_assign(
    state: State, content_type: str | None, body: bytes, query: bytes, start: float
) -> tuple[int, bytes]:
    """Answer one assign request: (status, JSON body). Counts, times and feeds the
    drift window; parsing and refusals are /v1/query's (requests.parse)."""
    if not _serves_model(state):
        return _wrong_route(state)
    assigner, limits = state.assigner, state.limits
    if assigner is None or limits is None or state.drift is None:
        state.metrics.count(503)
        return 503, orjson.dumps({"detail": state.error or "loading model"})
    try:
        params = dict(parse_qsl(query.decode("latin-1"))) if query else {}
        q = parse(content_type, body, params, limits)
    except RequestError as e:
        state.metrics.count(e.status)
        return e.status, orjson.dumps({"detail": e.message})
    labels, distances = await assigner.assign(q.vectors)
    version = assigner.loaded.manifest.version
    if q.single:
        payload: dict[str, Any] = {
            "cluster": int(labels[0]),
            "distance": float(distances[0]),
            "version": version,
        }
    else:
        payload = {
            "results": [
                {"cluster": c, "distance": d}
                for c, d in zip(labels.tolist(), distances.tolist(), strict=True)
            ],
            "version": version,
        }
    out = orjson.dumps(payload)
    cluster_metrics = state.cluster_metrics
    assert cluster_metrics is not None
    k = assigner.loaded.manifest.parameters.clusters
    cluster_metrics.record(np.bincount(labels, minlength=k).tolist(), distances.tolist())
    cluster_metrics.set_drift(state.drift.add(labels, distances))
    state.metrics.observe(time.perf_counter() - start)
    state.metrics.count(200)
    return 200, out


class QueryFastPath:
    """Pure-ASGI answer to POST /v1/query and /v1/assign, ahead of FastAPI's routing
    and request objects, which cost more than a single HNSW search."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = FAST_ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        answer = await fast_answer(
            self.state, handler, scope["headers"], scope["query_string"], receive
        )
        if answer is None:
            return  # nobody to answer, and a partial body is no request
        status, payload = answer
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


async def fast_answer(
    state: State,
    handler: Handler,
    headers: Iterable[tuple[bytes, bytes]],
    query_string: bytes,
    receive: Receive,
) -> tuple[int, bytes] | None:
    """(status, JSON body) of one POST to a FAST_ROUTES path, or None if the client
    left before sending its whole body. Reads the body through `receive`."""
    start = time.perf_counter()
    content_type: str | None = None
    declared = -1
    for name, value in headers:
        if name == b"content-type":
            content_type = value.decode("latin-1")
        elif name == b"content-length" and value.isdigit():
            declared = int(value)
    limit = state.settings.max_body_bytes
    if declared > limit:
        state.metrics.count(413)
        return 413, _too_large(declared, limit)
    try:
        body, size = await _read_body(receive, limit)
    except _ClientGoneError:
        return None
    if body is None:
        state.metrics.count(413)
        return 413, _too_large(size, limit)
    return await handler(state, content_type, body, query_string, start)


Handler = Callable[[State, str | None, bytes, bytes, float], Awaitable[tuple[int, bytes]]]
FAST_ROUTES: dict[str, Handler] = {"/v1/query": handle_query, "/v1/assign": handle_assign}


def _too_large(size: int, limit: int) -> bytes:
    return orjson.dumps({"detail": f"body of {size} bytes exceeds the limit of {limit}"})


class _ClientGoneError(Exception):
    """The client disconnected before sending its whole body."""


async def _read_body(receive: Receive, limit: int) -> tuple[bytes | None, int]:
    """The whole body, or (None, bytes seen) once it passes `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGoneError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, size
        chunks.append(chunk)
        if not message.get("more_body", False):
            return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), size


async def _answer(
    searcher: Searcher, q: Query, live: LiveRecall | None, state: State
) -> dict[str, Any]:
    try:
        labels, distances = await searcher.search(q.vectors, q.k, q.ef)
    except RuntimeError as e:  # hnswlib: fewer than k reachable neighbours at this ef
        raise RequestError(
            422, f"cannot return {q.k} neighbours ({e}); lower k or raise ef"
        ) from None
    if not np.isfinite(distances).all():
        # Finite float32 components can still overflow a distance (3e38 squared);
        # the neighbours are then arbitrary and the JSON would carry nulls.
        raise RequestError(
            422, "a query vector's distances overflow float32; its components are too large"
        )
    if live is not None:
        live.offer(q.vectors, labels, q.k)
    if state.query_drift is not None:
        nearest = distances[:, 0]
        for d in nearest.tolist():
            state.metrics.observe_nn(d)
        ratio = state.query_drift.add(nearest)
        if ratio is not None:
            state.metrics.set_query_ratio(ratio)
    ids = searcher.loaded.ids[labels.astype(np.intp)]
    version = searcher.loaded.manifest.version
    if ids.dtype.kind == "U":
        ids_out: Any = ids.tolist()
    else:
        ids_out = ids
    if q.single:
        return {"ids": ids_out[0], "distances": distances[0], "version": version}
    return {
        "results": [{"ids": i, "distances": d} for i, d in zip(ids_out, distances, strict=True)],
        "version": version,
    }
