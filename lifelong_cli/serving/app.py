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
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lifelong_cli.serving.model import BadRequest, check_rows, probe_row
from lifelong_cli.serving.runtime import Replica


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
        self._latency: dict[Any, Any] = {}

    def counter_cache(self):
        """``counted(version, variant, status)`` → the /v1/predict counter child, looked up once per label set."""
        cache: dict[tuple[Any, str, str], Any] = {}

        def counted(version: Any, variant: str, status: str):
            k = (version, variant, status)
            child = cache.get(k)
            if child is None:
                child = cache[k] = self.requests.labels("predict", str(version), variant, status)
            return child

        return counted

    def observe(self, version: Any, seconds: float) -> None:
        child = self._latency.get(version)
        if child is None:
            child = self._latency[version] = self.latency.labels("predict", str(version))
        child.observe(seconds)


def build_app(ctx: Any, replica: Replica, *, started: bool = False) -> Starlette:
    """The app for one replica; ``started`` when the caller already ran ``replica.start()``."""
    settings = ctx.config.settings
    features = settings.data.features
    key_col = settings.data.key
    max_body = settings.serving.max_body_bytes
    max_rows = settings.serving.max_batch_rows
    token_env = settings.serving.admin_token_env
    metrics = Metrics()

    def _parse(body: bytes) -> Any:
        try:
            return json.loads(body)
        except RecursionError:
            raise BadRequest("the body is not valid JSON (nested too deeply)") from None
        except ValueError as exc:  # not JSON, not UTF-8, or an integer literal of more than 4300 digits
            raise BadRequest(f"the body is not valid JSON ({str(exc).split(';')[0]})") from None

    async def _json_body(request: Request) -> Any:
        return _parse(await _raw_body(request))

    ids = RequestIds()
    counted = metrics.counter_cache()

    def predict_bytes(body: bytes | None, request_id: str | None, route_key: str | None) -> tuple[int, dict[str, Any]]:
        """The whole of /v1/predict once the body is read (None: over the size limit)."""
        t0 = time.perf_counter()
        request_id = request_id or ids.next()
        if len(request_id) > 80:
            return 422, {"error": {"message": "X-Request-Id is longer than 80 characters"}}
        routing = replica.routing
        variant, model, version = "none", None, None
        try:
            if body is None:
                raise _TooLarge()
            doc = _parse(body)
            if not isinstance(doc, dict):
                raise BadRequest('the body must be a JSON object with "row" or "rows"')
            rows = check_rows(doc.get("rows", doc.get("row")), features, max_rows)
            key = route_key or doc.get("key") or rows[0].get(key_col) or request_id
            variant, model = routing.choose(str(key))
            if model is None:
                counted("none", "none", "503").inc()
                return 503, {"error": {"message": "no model is being served yet",
                                       "hint": "`llctl canary start V` makes a first version stable"}}
            version = model.version
            outputs = model.predict(rows)
        except _TooLarge:
            counted("none", variant, "413").inc()
            return 413, {"error": {"message": f"the body is larger than {max_body} bytes (serving.max_body_bytes)"}}
        except BadRequest as exc:
            counted(version or "none", variant, "422").inc()
            return 422, {"error": {"message": str(exc)}}
        except Exception as exc:  # the model itself failed: logged as an error of this version, answered 500
            ms = (time.perf_counter() - t0) * 1000
            replica.log.add((time.time(), request_id, version, variant, 0, None, None, ms, False,
                             f"{type(exc).__name__}: {exc}"[:500], None))
            counted(version, variant, "500").inc()
            return 500, {"error": {"message": f"v{version} failed to predict: {type(exc).__name__}",
                                   "request_id": request_id}}
        ms = (time.perf_counter() - t0) * 1000
        shadow = None
        if variant == "canary" and routing.stable is not None:
            # Stable's answer for the same rows (not returned, not timed): the canary analysis compares
            # the two models on the same requests, whichever users the sticky split sends the canary.
            try:
                shadow = routing.stable.predict(rows)
            except Exception:  # stable failing here is stable's problem; the canary's answer stands
                shadow = None
        keys = [r.get(key_col) for r in rows] if key_col in rows[0] or any(key_col in r for r in rows) else None
        replica.log.add((time.time(), request_id, version, variant, len(rows), keys, outputs, ms, True, None, shadow))
        counted(version, variant, "200").inc()
        metrics.observe(version, ms / 1000)
        return 200, {"request_id": request_id, "version": version, "variant": variant,
                     "generation": routing.generation, "predictions": outputs}

    async def predict(request: Request) -> Response:
        """The Starlette route (the raw ASGI path in front of the app normally answers first)."""
        try:
            doc_bytes = await _raw_body(request)
        except _TooLarge:
            doc_bytes = None
        status, doc = predict_bytes(doc_bytes, request.headers.get("x-request-id"), request.headers.get("x-request-key"))
        return JSONResponse(doc, status_code=status)

    async def _raw_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            raise _TooLarge()
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                raise _TooLarge()
        return body

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
        ts = time.time()
        rows = [{"ts": ts, "request_id": doc["request_id"][:80], "row_index": i, "label": None if v is None else str(v)}
                for i, v in enumerate(labels)]
        for r in rows:
            replica.log.add((r["ts"], r["request_id"], r["row_index"], r["label"]), table="feedback")
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

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: bad_method}, lifespan=lifespan)
    return FastPredict(app, predict_bytes, max_body)


class _TooLarge(Exception):
    pass


class RequestIds:
    """Request ids unique across replicas without a uuid per request: a random prefix per process
    and a counter."""

    def __init__(self) -> None:
        import itertools
        import secrets

        self.prefix = secrets.token_hex(6)
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):010x}"


_JSON_HEADERS = [(b"content-type", b"application/json")]


class FastPredict:
    """ASGI in front of the Starlette app: answers POST /v1/predict directly (the hot path: no
    request object, routing table or response class per request); everything else goes to Starlette."""

    def __init__(self, app: Starlette, handler, max_body: int) -> None:
        self.app = app
        self.handler = handler
        self.max_body = max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/predict" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request_id = route_key = None
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"x-request-key":
                route_key = value.decode("latin-1")
        body: bytes | None = b""
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            body = None
        else:
            more = True
            while more:
                msg = await receive()
                body += msg.get("body", b"")  # type: ignore[operator]
                more = msg.get("more_body", False)
                if len(body) > self.max_body:  # type: ignore[arg-type]
                    body = None
                    break
        status, doc = self.handler(body, request_id, route_key)
        payload = json.dumps(doc, separators=(",", ":")).encode()
        headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
        if status == 200:
            headers += [(b"x-llctl-version", str(doc["version"]).encode()), (b"x-llctl-variant", doc["variant"].encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def from_env() -> Starlette:
    """uvicorn's factory for `llctl serve --workers N`: each worker process is its own replica."""
    import os

    from lifelong_cli.context import AppContext

    spec = json.loads(os.environ["LLCTL_SERVE_SPEC"])
    ctx = AppContext(config_file=spec["config_file"], overrides=spec["overrides"], actor=spec["actor"])
    from pathlib import Path

    ctx.cwd = Path(spec["cwd"])
    return build_app(ctx, Replica(ctx, spec["url"]))
