"""serve: run the reference serving runtime (onnxruntime behind uvicorn) in this process."""

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


def serve(ctx: AppContext, *, host: str | None = None, port: int | None = None, workers: int = 1,
          advertise_url: str | None = None) -> int:
    """Serve until interrupted. Returns the process exit code."""
    s = ctx.config.settings.serving
    host = host or s.host
    port = s.port if port is None else port
    if workers < 1:
        raise UsageError(f"--workers {workers}: give at least 1", hint="llctl serve --workers 2")
    _check_port(host, port)
    ctx.store.require_current()
    url = advertise_url or f"http://{host}:{port}"
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import uvicorn

    if workers == 1:
        from lifelong_cli.serving.app import build_app
        from lifelong_cli.serving.runtime import Replica

        replica = Replica(ctx, url)
        replica.start()  # fails here, with a clean error, if the store or the stable version cannot be read
        r = replica.routing
        ctx.warn(f"llctl serve: listening on {url} as replica {replica.id}; generation {r.generation}: "
                 + (f"stable v{r.stable.version}" if r.stable else "no stable version yet")
                 + (f", canary v{r.canary.version} at {r.share:.0%}" if r.canary else "")
                 + (", FALLBACK on" if r.fallback else "") + (f" — {replica.problem}" if replica.problem else ""))
        app = build_app(ctx, replica, started=True)
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
        return 0
    os.environ["LLCTL_SERVE_SPEC"] = json.dumps({"config_file": ctx.config_file, "overrides": ctx.overrides,
                                                 "actor": ctx.actor, "cwd": str(ctx.cwd), "url": url})
    ctx.warn(f"llctl serve: listening on {url} with {workers} worker processes (each its own replica)")
    uvicorn.run("lifelong_cli.serving.app:from_env", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False, lifespan="on")
    return 0
