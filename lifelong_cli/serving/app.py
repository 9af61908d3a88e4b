"""The ASGI app of `llctl serve` (Starlette on uvicorn): one process serving one or more models, each
following its own deployment row.

Routes:
  POST /v1/models/{name}/predict   {"row": {...}} or {"rows": [...]}, optional "key" (the sticky routing
                                   key; also the X-Request-Key header, else the first row's example key,
                                   else the request id)
  POST /v1/models/{name}/feedback  {"request_id": ..., "label": ...} or {"request_id": ..., "labels": [...]}
                                   (one per row); queued with the prediction log, written within
                                   serving.log_flush_ms
  POST /v1/predict, /v1/feedback   the same, in a process that serves a single model
  GET  /v1/models                  the models served, each with what it serves now
  GET  /healthz                    the process is up
  GET  /readyz                     a version (or a fallback) is loaded for the current generation of the model
                                   (of several: of at least one, and none failed to load its own)
  GET  /metrics                    Prometheus text, labelled by model
  POST /admin/load                 {"version": N, "model": name}: load and query a version (push's check);
                                   bearer token ("model" may be left out in a single-model process)
  GET  /admin/state                what this replica serves; bearer token
"""

from __future__ import annotations

import contextlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lifelong_cli.serving.model import BadRequest, check_rows, probe_row
from lifelong_cli.serving.runtime import Replica


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"message": message, **extra}}, status_code=status)


class _TooLarge(Exception):
    pass


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except RecursionError:
        raise BadRequest("the body is not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # not JSON, not UTF-8, or an integer literal of more than 4300 digits
        raise BadRequest(f"the body is not valid JSON ({str(exc).split(';')[0]})") from None


async def _raw_body(request: Request, max_body: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise _TooLarge()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body:
            raise _TooLarge()
    return body


class Metrics:
    """This process's metrics: requests and latency (counted as they happen), what each replica serves
    and its prediction log (read at scrape time), the process itself, and the state of the models it
    serves from the store — the same state metrics as `llctl metrics` (``serving.metrics``)."""

    def __init__(self, replicas: Sequence[Replica] = ()) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector

        from lifelong_cli.serving.metrics import StateCollector

        self.registry = CollectorRegistry()
        self.requests = Counter("llctl_requests", "Requests by route, model, version, variant and status code",
                                ["route", "model", "version", "variant", "status"], registry=self.registry)
        self.latency = Histogram("llctl_request_latency_seconds", "Request latency by route, model and version",
                                 ["route", "model", "version"], registry=self.registry,
                                 buckets=(.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
        self.replicas = list(replicas)
        self.registry.register(_ReplicaCollector(self.replicas))
        ProcessCollector(registry=self.registry)
        if self.replicas:
            ctx = self.replicas[0].ctx
            settings = ctx.config.settings
            self.registry.register(StateCollector(
                ctx.store, models=[r.model for r in self.replicas], slo=settings.slo,
                replica_ttl_seconds=settings.serving.replica_ttl_seconds))


class _ReplicaCollector:
    """What each replica of this process serves and its prediction log, read at scrape time."""

    def __init__(self, replicas: Sequence[Replica]) -> None:
        self.replicas = replicas

    def describe(self) -> list[Any]:
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        generation = GaugeMetricFamily("llctl_deployment_generation", "Deployment generation this replica serves",
                                       labels=["model"])
        swaps = CounterMetricFamily("llctl_model_swaps", "Routing-table swaps since this process started",
                                    labels=["model"])
        written = CounterMetricFamily("llctl_prediction_log_written", "Prediction records written to the store",
                                      labels=["model"])
        dropped = CounterMetricFamily("llctl_prediction_log_dropped",
                                      "Prediction records dropped (queue full while the store lagged)", labels=["model"])
        queue = GaugeMetricFamily("llctl_prediction_log_queue", "Prediction records waiting to be written",
                                  labels=["model"])
        for r in self.replicas:
            generation.add_metric([r.model], r.routing.generation)
            swaps.add_metric([r.model], r.swaps)
            written.add_metric([r.model], r.log.counters.logged)
            dropped.add_metric([r.model], r.log.counters.dropped)
            queue.add_metric([r.model], len(r.log.queue))
        yield from (generation, swaps, written, dropped, queue)


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


class ModelEndpoint:
    """Predict and feedback for one served model: its schema, its routing table, its prediction log."""

    def __init__(self, replica: Replica, metrics: Metrics, ids: RequestIds) -> None:
        settings = replica.ctx.config.settings
        self.replica = replica
        self.model = replica.model
        self.features = settings.data.features
        self.key_col = settings.data.key
        self.max_body = settings.serving.max_body_bytes
        self.max_rows = settings.serving.max_batch_rows
        self.metrics = metrics
        self.ids = ids
        self._counters: dict[tuple[Any, str, str], Any] = {}
        self._latency: dict[Any, Any] = {}

    def counted(self, version: Any, variant: str, status: str):
        """The predict counter child of a label set, looked up once."""
        k = (version, variant, status)
        child = self._counters.get(k)
        if child is None:
            child = self._counters[k] = self.metrics.requests.labels("predict", self.model, str(version), variant, status)
        return child

    def _observe(self, version: Any, seconds: float) -> None:
        child = self._latency.get(version)
        if child is None:
            child = self._latency[version] = self.metrics.latency.labels("predict", self.model, str(version))
        child.observe(seconds)

    def predict(self, body: bytes | None, request_id: str | None, route_key: str | None) -> tuple[int, dict[str, Any]]:
        """The whole of a predict request once the body is read (None: over the size limit)."""
        t0 = time.perf_counter()
        request_id = request_id or self.ids.next()
        if len(request_id) > 80:
            return 422, {"error": {"message": "X-Request-Id is longer than 80 characters"}}
        routing = self.replica.routing
        variant, model, version = "none", None, None
        try:
            if body is None:
                raise _TooLarge()
            doc = _parse(body)
            if not isinstance(doc, dict):
                raise BadRequest('the body must be a JSON object with "row" or "rows"')
            rows = check_rows(doc.get("rows", doc.get("row")), self.features, self.max_rows)
            key = route_key or doc.get("key") or rows[0].get(self.key_col) or request_id
            variant, model = routing.choose(str(key))
            if model is None:
                self.counted("none", "none", "503").inc()
                return 503, {"error": {"message": f"model '{self.model}': no version is being served yet",
                                       "hint": f"`llctl --model {self.model} canary start V` makes a first version stable"}}
            version = model.version
            outputs = model.predict(rows)
        except _TooLarge:
            self.counted("none", variant, "413").inc()
            return 413, {"error": {"message": f"the body is larger than {self.max_body} bytes (serving.max_body_bytes)"}}
        except BadRequest as exc:
            self.counted(version or "none", variant, "422").inc()
            return 422, {"error": {"message": str(exc)}}
        except Exception as exc:  # the model itself failed: logged as an error of this version, answered 500
            ms = (time.perf_counter() - t0) * 1000
            self.replica.log.add((time.time(), request_id, version, variant, 0, None, None, ms, False,
                                  f"{type(exc).__name__}: {exc}"[:500], None))
            self.counted(version, variant, "500").inc()
            return 500, {"error": {"message": f"model '{self.model}' v{version} failed to predict: {type(exc).__name__}",
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
        key_col = self.key_col
        keys = [r.get(key_col) for r in rows] if key_col in rows[0] or any(key_col in r for r in rows) else None
        self.replica.log.add((time.time(), request_id, version, variant, len(rows), keys, outputs, ms, True, None, shadow))
        self.counted(version, variant, "200").inc()
        self._observe(version, ms / 1000)
        return 200, {"model": self.model, "request_id": request_id, "version": version, "variant": variant,
                     "generation": routing.generation, "predictions": outputs}

    def feedback(self, body: bytes | None) -> tuple[int, dict[str, Any]]:
        try:
            if body is None:
                raise _TooLarge()
            doc = _parse(body)
            if not isinstance(doc, dict) or not isinstance(doc.get("request_id"), str):
                raise BadRequest('give {"request_id": "...", "label": ...} or {"request_id": "...", "labels": [...]}')
            labels = doc["labels"] if "labels" in doc else [doc.get("label")]
            if not isinstance(labels, list) or not labels or len(labels) > self.max_rows:
                raise BadRequest(f'"labels" must be a list of 1 to {self.max_rows} labels')
            if any(isinstance(v, dict | list) for v in labels):
                raise BadRequest("a label must be a string, a number or null")
        except _TooLarge:
            return 413, {"error": {"message": f"the body is larger than {self.max_body} bytes"}}
        except BadRequest as exc:
            self.metrics.requests.labels("feedback", self.model, "none", "none", "422").inc()
            return 422, {"error": {"message": str(exc)}}
        ts = time.time()
        request_id = doc["request_id"][:80]
        for i, v in enumerate(labels):
            self.replica.log.add((ts, request_id, i, None if v is None else str(v)), table="feedback")
        self.metrics.requests.labels("feedback", self.model, "none", "none", "200").inc()
        return 200, {"model": self.model, "request_id": doc["request_id"], "accepted": len(labels)}

    def ready(self) -> dict[str, Any]:
        r = self.replica.routing
        return {"model": self.model, "ready": r.stable is not None or r.fallback is not None,
                "generation": r.generation, "stable": r.stable.version if r.stable else None,
                "canary": r.canary.version if r.canary else None, "canary_share": r.share,
                "fallback": r.fallback is not None, "problem": self.replica.problem}

    def state(self) -> dict[str, Any]:
        r = self.replica.routing
        return {**self.ready(), "fallback": (r.fallback.kind, r.fallback.version) if r.fallback else None,
                "log": vars(self.replica.log.counters)}

    def load(self, version: int) -> dict[str, Any]:
        """Load and query a version (push's load-and-query check)."""
        t0 = time.perf_counter()
        try:
            model = self.replica.pool.model(version)
            t1 = time.perf_counter()
            out = model.predict([probe_row(self.features)])
        except Exception as exc:  # report the failure to push: it decides
            return {"model": self.model, "version": version, "ok": False, "error": f"{exc}".splitlines()[0][:300]}
        return {"model": self.model, "version": version, "ok": True, "load_ms": (t1 - t0) * 1000,
                "query_ms": (time.perf_counter() - t1) * 1000, "output": out[0]}


def build_app(replicas: Replica | Sequence[Replica], *, started: bool = False) -> FastPredict:
    """The app for one serving process: one ``Replica`` per model it serves (each with its own context);
    ``started`` when the caller already ran every ``replica.start()``."""
    replicas = [replicas] if isinstance(replicas, Replica) else list(replicas)
    serving = replicas[0].ctx.config.settings.serving
    max_body, token_env = serving.max_body_bytes, serving.admin_token_env
    metrics, ids = Metrics(replicas), RequestIds()
    endpoints = {r.model: ModelEndpoint(r, metrics, ids) for r in replicas}
    single = endpoints[replicas[0].model] if len(endpoints) == 1 else None
    names = ", ".join(endpoints)

    def endpoint(request: Request) -> ModelEndpoint | Response:
        name = request.path_params.get("name")
        if name is None:
            if single is None:
                return _error(404, f"this replica serves several models ({names}): use /v1/models/{{name}}"
                                   f"{request.url.path[3:]}", models=list(endpoints))
            return single
        found = endpoints.get(name)
        return found if found is not None else _error(404, f"model '{name}' is not served here (serving: {names})",
                                                      models=list(endpoints))

    async def read(request: Request) -> tuple[ModelEndpoint | Response, bytes | None]:
        """The model the route names (or an error response) and the body (None: over the size limit)."""
        ep = endpoint(request)
        if isinstance(ep, Response):
            return ep, None
        try:
            return ep, await _raw_body(request, max_body)
        except _TooLarge:
            return ep, None

    async def predict(request: Request) -> Response:
        """The Starlette route (the raw ASGI path in front of the app normally answers first)."""
        ep, body = await read(request)
        if isinstance(ep, Response):
            return ep
        status, doc = ep.predict(body, request.headers.get("x-request-id"), request.headers.get("x-request-key"))
        return JSONResponse(doc, status_code=status)

    async def feedback(request: Request) -> Response:
        ep, body = await read(request)
        if isinstance(ep, Response):
            return ep
        status, doc = ep.feedback(body)
        return JSONResponse(doc, status_code=status)

    async def models(request: Request) -> Response:
        return JSONResponse({"models": [ep.ready() for ep in endpoints.values()]})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "replica": replicas[0].id, "models": list(endpoints)})

    async def readyz(request: Request) -> Response:
        each = {name: ep.ready() for name, ep in endpoints.items()}
        if single is not None:
            ready = each[single.model]["ready"]
        else:  # a model with nothing deployed yet (and no problem) does not hold the others back
            ready = any(m["ready"] for m in each.values()) and all(m["ready"] or not m["problem"] for m in each.values())
        body = {**(single.ready() if single else {}), "ready": ready, "models": each}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics_endpoint(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        from starlette.concurrency import run_in_threadpool

        # the state metrics read the store: off the event loop, so predictions never wait on it
        return Response(await run_in_threadpool(generate_latest, metrics.registry), media_type=CONTENT_TYPE_LATEST)

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
            doc = _parse(await _raw_body(request, max_body))
            version = int(doc["version"])
            name = doc.get("model")
        except (_TooLarge, BadRequest, KeyError, TypeError, ValueError, AttributeError):
            return _error(422, 'give {"version": N, "model": "name"}')
        if name is None and single is None:
            return _error(422, f'this replica serves several models ({names}): give "model"', models=list(endpoints))
        ep = single if name is None else endpoints.get(name)
        if ep is None:
            return _error(404, f"model '{name}' is not served here (serving: {names})", models=list(endpoints))
        return JSONResponse(ep.load(version))

    async def admin_state(request: Request) -> Response:
        if (denied := _authorised(request)) is not None:
            return denied
        each = {name: ep.state() for name, ep in endpoints.items()}
        return JSONResponse({**(single.state() if single else {}), "replica": replicas[0].id, "models": each})

    routes = [Route("/v1/predict", predict, methods=["POST"]), Route("/v1/feedback", feedback, methods=["POST"]),
              Route("/v1/models/{name}/predict", predict, methods=["POST"]),
              Route("/v1/models/{name}/feedback", feedback, methods=["POST"]), Route("/v1/models", models),
              Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_endpoint),
              Route("/admin/load", admin_load, methods=["POST"]), Route("/admin/state", admin_state)]

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, f"no route {request.url.path}", routes=[r.path for r in routes])

    async def bad_method(request: Request, exc: Exception) -> Response:
        return _error(405, f"{request.method} is not allowed on {request.url.path}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        if not started:
            for r in replicas:
                r.start()
        try:
            yield
        finally:
            for r in replicas:
                r.stop()

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: bad_method}, lifespan=lifespan)
    return FastPredict(app, {name: ep.predict for name, ep in endpoints.items()}, single.predict if single else None,
                       max_body)


_JSON_HEADERS = [(b"content-type", b"application/json")]
_MODELS, _PREDICT = "/v1/models/", "/predict"


class FastPredict:
    """ASGI in front of the Starlette app: answers POST /v1/predict and /v1/models/{name}/predict
    directly (the hot path: no request object, routing table or response class per request);
    everything else goes to Starlette."""

    def __init__(self, app: Starlette, handlers: dict[str, Any], single: Any, max_body: int) -> None:
        self.app = app
        self.handlers = handlers
        self.single = single
        self.max_body = max_body

    def _handler(self, scope) -> Any:
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        path = scope["path"]
        if path == "/v1/predict":
            return self.single
        if path.startswith(_MODELS) and path.endswith(_PREDICT):
            return self.handlers.get(path[len(_MODELS):-len(_PREDICT)])
        return None

    async def __call__(self, scope, receive, send) -> None:
        handler = self._handler(scope)
        if handler is None:  # unknown model, several models on /v1/predict, or not a predict: Starlette answers
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
        status, doc = handler(body, request_id, route_key)
        payload = json.dumps(doc, separators=(",", ":")).encode()
        headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
        if status == 200:
            headers += [(b"x-llctl-version", str(doc["version"]).encode()), (b"x-llctl-variant", doc["variant"].encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def from_env() -> FastPredict:
    """uvicorn's factory for `llctl serve --workers N`: each worker process is its own replica of
    every model the spec names."""
    import os

    from lifelong_cli.serving.runtime import model_contexts

    spec = json.loads(os.environ["LLCTL_SERVE_SPEC"])
    return build_app([Replica(c, spec["url"]) for c in model_contexts(spec)])
