"""metrics: the state of every model (or those named) as Prometheus metrics, for machines that do not
serve: printed once, served over HTTP (``listen``) or written as a node-exporter textfile (``textfile``),
atomically, once or every ``interval`` seconds. The metrics themselves are defined once, in
``serving.metrics``, and `llctl serve`'s ``/metrics`` shows the same ones."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import ModelNotFoundError, PreconditionError, UsageError
from lifelong_cli.ops._base import Result

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class MetricsResult(Result):
    models: list[str] | None  # None: every model in the store
    mode: str  # "stdout", "textfile" or "listen"
    text: str | None  # the exposition text (stdout mode)
    textfile: str | None
    writes: int
    listen: str | None
    message: str


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (all interfaces) into (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen {value!r}: give HOST:PORT", hint="llctl metrics --listen 127.0.0.1:9108")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def model_names(ctx: AppContext, models: list[str] | None) -> list[str] | None:
    """The models to export: those named here (comma-separated, repeatable), else the one the global
    ``--model`` flag names, else None (every model in the store, including models added later)."""
    names: list[str] = []
    for item in models or []:
        names += [n.strip() for n in item.split(",") if n.strip() and n.strip() not in names]
    if models and not names:
        raise UsageError("--model needs a model name", hint="llctl metrics --model churn,fraud")
    if not names and "model.name" in ctx.overrides:
        names = [ctx.overrides["model.name"]]
    if not names:
        return None
    from lifelong_cli.store import models as store_models

    with ctx.store.tx(write=False) as t:
        have = store_models.names(t)
    missing = [n for n in names if n not in have]
    if missing:
        raise ModelNotFoundError(f"model(s) {', '.join(missing)} not in the state store (it holds: "
                                 f"{', '.join(have) or 'none yet'})", hint="`llctl models` lists them")
    return names


def build_registry(ctx: AppContext, models: list[str] | None, *, process: bool) -> Any:
    """A registry with the state collector (and, with ``process``, this process's own metrics)."""
    from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

    from lifelong_cli.serving.metrics import StateCollector

    settings = ctx.config.settings
    registry = CollectorRegistry()
    registry.register(StateCollector(ctx.store, models=models, slo=settings.slo, clock=ctx.now,
                                     replica_ttl_seconds=settings.serving.replica_ttl_seconds))
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def write_textfile(path: Path, data: bytes) -> None:
    """Atomically (the temp name is not ``*.prom``, so the collector never reads it half-written),
    readable by a node exporter running as another user."""
    from lifelong_cli.fsutil import atomic_write_bytes

    atomic_write_bytes(path, data, mode=0o644)


@contextmanager
def _sigterm_stops() -> Iterator[None]:
    """SIGTERM (systemd, kubelet) ends a long-running exporter like Ctrl-C: between writes, cleanly."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def metrics(ctx: AppContext, *, listen: str | None = None, textfile: str | None = None, once: bool = False,
            interval: float = 15.0, models: list[str] | None = None) -> MetricsResult:
    """Export the models' state as Prometheus metrics.

    With neither ``listen`` nor ``textfile`` the metrics are returned as text (printed once).
    ``textfile``: written atomically (once with ``once``, else every ``interval`` seconds until
    interrupted); this process's own ``process_*`` metrics are left out of it (they would describe a
    short-lived writer). ``listen``: ``/metrics`` served over HTTP until interrupted, with them.

    Raises:
        UsageError: conflicting or malformed flags (exit 2).
        ModelNotFoundError: a named model is not in the store (exit 6).
        StoreUnavailableError: the store cannot be read at start (exit 7); later outages show as
            ``llctl_store_up 0`` instead.
        PreconditionError: the address cannot be listened on (exit 5).
    """
    from prometheus_client import generate_latest

    if listen and textfile:
        raise UsageError("give --listen or --textfile, not both", hint="run two exporters, or scrape --listen")
    if once and listen:
        raise UsageError("--once writes the textfile (or prints) once; --listen serves until interrupted",
                         hint="llctl metrics --once  (prints the metrics)")
    if not 1.0 <= interval <= 3600:
        raise UsageError(f"--interval {interval:g}: give 1 to 3600 seconds", hint="--interval 15")
    if textfile is not None and not textfile.endswith(".prom"):
        raise UsageError(f"--textfile {textfile}: the node exporter reads only *.prom files",
                         hint="--textfile /var/lib/prometheus/node-exporter/llctl.prom")
    host_port = parse_listen(listen) if listen else None
    ctx.store  # noqa: B018  (checks the store is reachable and current: exit 7 / 5 before anything starts)
    names = model_names(ctx, models)
    scope = "every model in the store" if names is None else ", ".join(f"model '{n}'" for n in names)

    if host_port is not None:
        return _listen(ctx, names, host_port, scope)
    registry = build_registry(ctx, names, process=textfile is None)
    if textfile is None:
        text = generate_latest(registry).decode()
        return MetricsResult(names, "stdout", text, None, 0, None, f"metrics of {scope}")
    path = Path(textfile)
    if not path.is_absolute():
        path = ctx.cwd / path
    writes = 0
    try:
        with _sigterm_stops():
            while True:
                write_textfile(path, generate_latest(registry))
                writes += 1
                if once:
                    break
                time.sleep(interval)
    except KeyboardInterrupt:
        pass  # a daemon stopped by hand: every write was complete, report what was done
    except OSError as exc:
        raise PreconditionError(f"cannot write {path}: {exc.strerror}",
                                hint="check the directory exists and is writable") from None
    return MetricsResult(names, "textfile", None, str(path), writes, None,
                         f"wrote the metrics of {scope} to {path}" + ("" if once else f" {writes} time(s)"))


def _listen(ctx: AppContext, names: list[str] | None, host_port: tuple[str, int], scope: str) -> MetricsResult:
    from prometheus_client import start_http_server

    host, port = host_port
    registry = build_registry(ctx, names, process=True)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise PreconditionError(f"cannot listen on {host}:{port}: {exc.strerror}",
                                hint="another exporter may be running there; pick another --listen port") from None
    bound = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}/metrics"
    ctx.warn(f"llctl metrics: serving {url} ({scope}); Ctrl-C stops")
    try:
        with _sigterm_stops():
            while thread.is_alive():
                thread.join(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
    return MetricsResult(names, "listen", None, None, 0, url, f"stopped serving {url}")
