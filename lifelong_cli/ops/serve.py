"""serve: run the reference serving runtime (onnxruntime behind uvicorn) in this process, for one or
more models of the store."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from typing import TYPE_CHECKING

from lifelong_cli.errors import PreconditionError, UsageError

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise PreconditionError(f"cannot listen on {host}:{port}: {exc.strerror}",
                                    hint="another `llctl serve` may be running there; pick another --port") from None


def _model_names(ctx: AppContext, models: list[str] | None, all_models: bool) -> list[str]:
    """The models to serve: those named (``--models``), every model in the store, or the command's model."""
    if all_models and models:
        raise UsageError("give --models or --all-models, not both", hint="llctl serve --all-models")
    if all_models:
        from lifelong_cli.store import models as store_models

        with ctx.store.tx(write=False) as t:
            names = store_models.names(t)
        if not names:
            raise PreconditionError("the state store holds no model yet", hint="`llctl init` adds one")
        return names
    names = []
    for item in models or []:
        for name in item.split(","):
            if name.strip() and name.strip() not in names:
                names.append(name.strip())
    if models and not names:
        raise UsageError("--models needs at least one model name", hint="llctl serve --models churn,fraud")
    return names or [ctx.model]


def serve(ctx: AppContext, *, host: str | None = None, port: int | None = None, workers: int = 1,
          advertise_url: str | None = None, models: list[str] | None = None, all_models: bool = False) -> int:
    """Serve until interrupted: each model (``models``, every model with ``all_models``, else the
    command's model) following its own deployment row. Returns the process exit code."""
    from lifelong_cli.serving.runtime import model_contexts

    s = ctx.config.settings.serving
    host = host or s.host
    port = s.port if port is None else port
    if workers < 1:
        raise UsageError(f"--workers {workers}: give at least 1", hint="llctl serve --workers 2")
    ctx.store.require_current()
    names = _model_names(ctx, models, all_models)
    url = advertise_url or f"http://{host}:{port}"
    spec = {"config_file": ctx.config_file, "overrides": ctx.overrides, "actor": ctx.actor, "cwd": str(ctx.cwd),
            "url": url, "models": names}
    contexts = model_contexts(spec)
    for c in contexts:
        c.model_row  # noqa: B018  (refuses, exit 6, a model the store does not hold; before the port is taken)
    _check_port(host, port)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import uvicorn

    if workers == 1:
        from lifelong_cli.serving.app import build_app
        from lifelong_cli.serving.runtime import Replica

        replicas = [Replica(c, url) for c in contexts]
        for replica in replicas:
            replica.start()  # fails here, with a clean error, if the store or the stable version cannot be read
        ctx.warn(f"llctl serve: listening on {url} as replica {replicas[0].id}" + "".join(
            f"; {_describe(r)}" for r in replicas))
        app = build_app(replicas, started=True)
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
        return 0
    os.environ["LLCTL_SERVE_SPEC"] = json.dumps(spec)
    ctx.warn(f"llctl serve: listening on {url} with {workers} worker processes (each its own replica) for "
             + ", ".join(f"model '{n}'" for n in names))
    uvicorn.run("lifelong_cli.serving.app:from_env", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False, lifespan="on")
    return 0


def _describe(replica) -> str:
    r = replica.routing
    return (f"model '{replica.model}': generation {r.generation}: "
            + (f"stable v{r.stable.version}" if r.stable else "no stable version yet")
            + (f", canary v{r.canary.version} at {r.share:.0%}" if r.canary else "")
            + (", FALLBACK on" if r.fallback else "") + (f" — {replica.problem}" if replica.problem else ""))
