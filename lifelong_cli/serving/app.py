"""The ASGI app of `llctl serve` (Starlette on uvicorn).

Routes:
  POST /v1/predict    {"row": {...}} or {"rows": [...]}, optional "key" (the sticky routing key; also
                      the X-Request-Key header, else the first row's example key, else the request id)
  POST /v1/feedback   {"request_id": ..., "label": ...} or {"request_id": ..., "labels": [...]} (one per row);
                      queued with the prediction log and written within serving.log_flush_ms
  GET  /healthz       the process is up
  GET  /readyz        a model (or a fallback) is loaded for the current deployment generation
  GET  /metrics       Prometheus text
  POST /admin/load    {"version": N}: load and query a version (push's check); bearer token
  GET  /admin/state   what this replica serves; bearer token
"""

from __future__ import annotations

import contextlib
import hmac
import json
import time
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lifelong_cli.serving.model import BadRequest, check_rows, probe_row
from lifelong_cli.serving.runtime import Replica, now


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"message": message, **extra}}, status_code=status)


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("llctl_requests", "Requests by route, version, variant and status code",
                                ["route", "version", "variant", "status"], registry=self.registry)
        self.latency = Histogram("llctl_request_latency_seconds", "Request latency by route and version",
                                 ["route", "version"], registry=self.registry,
                                 buckets=(.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
        self.generation = Gauge("llctl_deployment_generation", "Deployment generation being served", registry=self.registry)
        self.swaps = Gauge("llctl_model_swaps", "Routing-table swaps since start", registry=self.registry)
        self.logged = Gauge("llctl_prediction_log_written", "Prediction records written to the store", registry=self.registry)
        self.dropped = Gauge("llctl_prediction_log_dropped", "Prediction records dropped (queue full)", registry=self.registry)
        self.queue = Gauge("llctl_prediction_log_queue", "Prediction records waiting to be written", registry=self.registry)


def build_app(ctx: Any, replica: Replica, *, started: bool = False) -> Starlette:
    """The app for one replica; ``started`` when the caller already ran ``replica.start()``."""
    settings = ctx.config.settings
    features = settings.data.features
    key_col = settings.data.key
    max_body = settings.serving.max_body_bytes
    max_rows = settings.serving.max_batch_rows
    token_env = settings.serving.admin_token_env
    metrics = Metrics()

    async def _json_body(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            raise _TooLarge()
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                raise _TooLarge()
        try:
            return json.loads(body)
        except RecursionError:
            raise BadRequest("the body is not valid JSON (nested too deeply)") from None
        except ValueError as exc:  # not JSON, not UTF-8, or an integer literal of more than 4300 digits
            raise BadRequest(f"the body is not valid JSON ({str(exc).split(';')[0]})") from None

    async def predict(request: Request) -> Response:
        t0 = time.perf_counter()
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        if len(request_id) > 80:
            return _error(422, "X-Request-Id is longer than 80 characters")
        routing = replica.routing
        variant, model, version = "none", None, None
        try:
            doc = await _json_body(request)
            if not isinstance(doc, dict):
                raise BadRequest('the body must be a JSON object with "row" or "rows"')
            rows = check_rows(doc.get("rows", doc.get("row")), features, max_rows)
            key = request.headers.get("x-request-key") or doc.get("key") or rows[0].get(key_col) or request_id
            variant, model = routing.choose(str(key))
            if model is None:
                metrics.requests.labels("predict", "none", "none", "503").inc()
                return _error(503, "no model is being served yet", hint="`llctl canary start V` makes a first version stable")
            version = model.version
            outputs = model.predict(rows)
        except _TooLarge:
            metrics.requests.labels("predict", "none", variant, "413").inc()
            return _error(413, f"the body is larger than {max_body} bytes (serving.max_body_bytes)")
        except BadRequest as exc:
            metrics.requests.labels("predict", str(version or "none"), variant, "422").inc()
            return _error(422, str(exc))
        except Exception as exc:  # the model itself failed: logged as an error of this version, answered 500
            ms = (time.perf_counter() - t0) * 1000
            replica.log.add({"ts": now(), "request_id": request_id, "replica": replica.id, "version": version,
                             "variant": variant, "n_rows": 0, "keys": None, "output": None, "latency_ms": ms,
                             "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]})
            metrics.requests.labels("predict", str(version), variant, "500").inc()
            return _error(500, f"v{version} failed to predict: {type(exc).__name__}", request_id=request_id)
        ms = (time.perf_counter() - t0) * 1000
        keys = [r.get(key_col) for r in rows] if any(key_col in r for r in rows) else None
        replica.log.add({"ts": now(), "request_id": request_id, "replica": replica.id, "version": version,
                         "variant": variant, "n_rows": len(rows), "keys": keys, "output": outputs, "latency_ms": ms,
                         "ok": True, "error": None})
        metrics.requests.labels("predict", str(version), variant, "200").inc()
        metrics.latency.labels("predict", str(version)).observe(ms / 1000)
        return JSONResponse({"request_id": request_id, "version": version, "variant": variant,
                             "generation": routing.generation, "predictions": outputs},
                            headers={"x-llctl-version": str(version), "x-llctl-variant": variant})

    async def feedback(request: Request) -> Response:
        try:
            doc = await _json_body(request)
            if not isinstance(doc, dict) or not isinstance(doc.get("request_id"), str):
                raise BadRequest('give {"request_id": "...", "label": ...} or {"request_id": "...", "labels": [...]}')
            labels = doc["labels"] if "labels" in doc else [doc.get("label")]
            if not isinstance(labels, list) or not labels or len(labels) > max_rows:
                raise BadRequest(f'"labels" must be a list of 1 to {max_rows} labels')
            if any(isinstance(v, dict | list) for v in labels):
                raise BadRequest("a label must be a string, a number or null")
        except _TooLarge:
            return _error(413, f"the body is larger than {max_body} bytes")
        except BadRequest as exc:
            metrics.requests.labels("feedback", "none", "none", "422").inc()
            return _error(422, str(exc))
        rows = [{"ts": now(), "request_id": doc["request_id"][:80], "row_index": i,
                 "label": None if v is None else str(v), "replica": replica.id} for i, v in enumerate(labels)]
        for r in rows:
            replica.log.add(r, table="feedback")
        metrics.requests.labels("feedback", "none", "none", "200").inc()
        return JSONResponse({"request_id": doc["request_id"], "accepted": len(rows)})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "replica": replica.id})

    async def readyz(request: Request) -> Response:
        r = replica.routing
        body = {"ready": r.stable is not None or r.fallback is not None, "generation": r.generation,
                "stable": r.stable.version if r.stable else None, "canary": r.canary.version if r.canary else None,
                "canary_share": r.share, "fallback": r.fallback is not None, "problem": replica.problem}
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    async def metrics_endpoint(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        metrics.generation.set(replica.routing.generation)
        metrics.swaps.set(replica.swaps)
        metrics.logged.set(replica.log.counters.logged)
        metrics.dropped.set(replica.log.counters.dropped)
        metrics.queue.set(len(replica.log.queue))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def _authorised(request: Request) -> Response | None:
        import os

        token = os.environ.get(token_env)
        if not token:
            return _error(403, f"admin endpoints are disabled: ${token_env} is not set on this replica")
        given = request.headers.get("authorization", "")
        if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].encode(), token.encode()):
            return _error(401, "missing or wrong bearer token")
        return None

    async def admin_load(request: Request) -> Response:
        if (denied := _authorised(request)) is not None:
            return denied
        try:
            doc = await _json_body(request)
            version = int(doc["version"])
        except (_TooLarge, BadRequest, KeyError, TypeError, ValueError):
            return _error(422, 'give {"version": N}')
        t0 = time.perf_counter()
        try:
            model = replica.pool.model(version)
            t1 = time.perf_counter()
            out = model.predict([probe_row(features)])
        except Exception as exc:  # report the failure to push: it decides
            return JSONResponse({"version": version, "ok": False, "error": f"{exc}".splitlines()[0][:300]})
        return JSONResponse({"version": version, "ok": True, "load_ms": (t1 - t0) * 1000,
                             "query_ms": (time.perf_counter() - t1) * 1000, "output": out[0]})

    async def admin_state(request: Request) -> Response:
        if (denied := _authorised(request)) is not None:
            return denied
        r = replica.routing
        return JSONResponse({"replica": replica.id, "generation": r.generation,
                             "stable": r.stable.version if r.stable else None,
                             "canary": r.canary.version if r.canary else None, "canary_share": r.share,
                             "fallback": (r.fallback.kind, r.fallback.version) if r.fallback else None,
                             "problem": replica.problem, "log": vars(replica.log.counters)})

    routes = [Route("/v1/predict", predict, methods=["POST"]), Route("/v1/feedback", feedback, methods=["POST"]),
              Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_endpoint),
              Route("/admin/load", admin_load, methods=["POST"]), Route("/admin/state", admin_state)]

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, f"no route {request.url.path}", routes=[r.path for r in routes])

    async def bad_method(request: Request, exc: Exception) -> Response:
        return _error(405, f"{request.method} is not allowed on {request.url.path}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        if not started:
            replica.start()
        try:
            yield
        finally:
            replica.stop()

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: bad_method}, lifespan=lifespan)


class _TooLarge(Exception):
    pass


def from_env() -> Starlette:
    """uvicorn's factory for `llctl serve --workers N`: each worker process is its own replica."""
    import os

    from lifelong_cli.context import AppContext

    spec = json.loads(os.environ["LLCTL_SERVE_SPEC"])
    ctx = AppContext(config_file=spec["config_file"], overrides=spec["overrides"], actor=spec["actor"])
    from pathlib import Path

    ctx.cwd = Path(spec["cwd"])
    return build_app(ctx, Replica(ctx, spec["url"]))
