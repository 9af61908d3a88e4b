"""A replica's moving parts, per model it serves: the routing table it answers from, the thread that
follows the model's deployment row, and the prediction log.

The follower reads the deployment row every ``serving.poll_ms`` (≤ 250 ms). When the generation
changes it loads what the new row names (fetching each artifact through the registry, which
verifies its sha256), and only then replaces the routing table with one assignment, so a request
sees either the old table or the new one, never a half-loaded model. A load that fails keeps the
old table and is reported in the replica's row; it is retried every few seconds.

The prediction log is a bounded in-memory queue written to the store in batches by its own
thread; when the store cannot keep up the oldest entries are dropped and counted, so memory stays
bounded and requests never wait on the store."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lifelong_cli.registry.base import ArtifactRef
from lifelong_cli.serving.model import FallbackModel, ServedModel

log = logging.getLogger("llctl.serve")


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Routing:
    """What a replica answers with, for one deployment generation."""

    generation: int
    stable: ServedModel | None
    canary: ServedModel | None
    share: float
    fallback: FallbackModel | ServedModel | None

    def choose(self, key: str) -> tuple[str, ServedModel | FallbackModel | None]:
        if self.fallback is not None:
            return "fallback", self.fallback
        if self.canary is not None and self.share > 0 and bucket(key) < self.share:
            return "canary", self.canary
        return "stable", self.stable


def bucket(key: str) -> float:
    """A request key's fixed place in [0, 1): the same key always lands on the same side of a split."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") / 2.0 ** 64


class ModelPool:
    """Loaded versions of one model (``ctx.model``), fetched through the registry (which verifies every
    artifact's sha256)."""

    def __init__(self, ctx: Any, keep: int = 6) -> None:
        self.ctx = ctx
        self.model_name = ctx.model
        self.keep = keep
        self._models: dict[int, ServedModel] = {}
        self._fallbacks: dict[tuple[int, str], FallbackModel] = {}
        self._lock = threading.Lock()
        self._registry = None

    @property
    def registry(self):
        if self._registry is None:
            from lifelong_cli.registry.base import open_registry

            self._registry = open_registry(self.ctx)
        return self._registry

    def _version_row(self, version: int) -> dict[str, Any]:
        from lifelong_cli.store import versions

        with self.ctx.store.tx(write=False) as t:
            return versions.require(t, self.model_name, version)

    def _fetch(self, row: dict[str, Any], name: str) -> bytes:
        from lifelong_cli.errors import NotFoundError

        if name not in row["artifacts"]:
            raise NotFoundError(f"v{row['id']} has no {name} artifact")
        return self.registry.fetch(ArtifactRef.from_dict(name, row["artifacts"][name]))

    def model(self, version: int) -> ServedModel:
        with self._lock:
            if version in self._models:
                return self._models[version]
        row = self._version_row(version)
        m = ServedModel.load(version, self._fetch(row, "onnx"), json.loads(self._fetch(row, "preprocess")))
        with self._lock:
            self._models[version] = m
            while len(self._models) > self.keep:
                self._models.pop(next(iter(self._models)))
        return m

    def fallback(self, version: int, strategy: str) -> FallbackModel | ServedModel:
        if strategy.startswith("version:"):
            return self.model(int(strategy.split(":", 1)[1]))
        with self._lock:
            if (version, strategy) in self._fallbacks:
                return self._fallbacks[(version, strategy)]
        doc = json.loads(self._fetch(self._version_row(version), "fallback"))
        fb = FallbackModel(version, strategy, doc)
        with self._lock:
            self._fallbacks[(version, strategy)] = fb
        return fb


@dataclass
class Counters:
    logged: int = 0
    dropped: int = 0
    flush_errors: int = 0


PREDICTION_COLS = ("ts", "request_id", "version", "variant", "n_rows", "keys", "output", "latency_ms", "ok", "error",
                   "shadow")
FEEDBACK_COLS = ("ts", "request_id", "row_index", "label")


class PredictionLog:
    """Bounded queue of one model's prediction (and feedback) records, written to the store in batches
    by a thread."""

    def __init__(self, store: Any, model: str, max_rows: int, flush_ms: int, replica_id: str = "") -> None:
        self.store = store
        self.model = model
        self.replica_id = replica_id
        self.max_rows = max_rows
        self.flush_s = flush_ms / 1000
        self.queue: deque[tuple[str, tuple]] = deque()
        self.counters = Counters()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llctl-predlog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, record: tuple, table: str = "predictions") -> None:
        """A record as a tuple in the column order of PREDICTION_COLS / FEEDBACK_COLS, its time as
        epoch seconds (converted in the writer thread, off the request path)."""
        with self._lock:
            if len(self.queue) >= self.max_rows:
                self.queue.popleft()
                self.counters.dropped += 1
            self.queue.append((table, record))

    def _take(self, n: int = 5000) -> list[tuple[str, tuple]]:
        with self._lock:
            return [self.queue.popleft() for _ in range(min(n, len(self.queue)))]

    def _rows(self, batch: list[tuple[str, tuple]], table: str) -> list[dict[str, Any]]:
        cols = PREDICTION_COLS if table == "predictions" else FEEDBACK_COLS
        out = []
        for tb, rec in batch:
            if tb == table:
                row = dict(zip(cols, rec, strict=True))
                row["ts"] = datetime.fromtimestamp(row["ts"], UTC)
                row["replica"] = self.replica_id
                out.append(row)
        return out

    def flush(self) -> int:
        from lifelong_cli.store import predictions

        written = 0
        while batch := self._take():
            try:
                with self.store.tx() as t:
                    predictions.add(t, self.model, predictions=self._rows(batch, "predictions"),
                                    feedback=self._rows(batch, "feedback"))
            except Exception as exc:  # the store is down or busy: keep the rows for the next try
                self.counters.flush_errors += 1
                log.warning("prediction log: cannot write %d rows to the store (%s); will retry", len(batch), exc)
                with self._lock:
                    self.queue.extendleft(reversed(batch))
                    while len(self.queue) > self.max_rows:
                        self.queue.popleft()
                        self.counters.dropped += 1
                return written
            written += len(batch)
            self.counters.logged += len(batch)
        return written

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()


@dataclass
class Replica:
    """One serving process's view of one model (``ctx.model``): follows that model's deployment row and
    reports itself in the ``replicas`` table (one row per process and model, under the same id)."""

    ctx: Any
    url: str | None
    routing: Routing = field(default_factory=lambda: Routing(-1, None, None, 0.0, None))
    problem: str | None = None
    started_at: datetime = field(default_factory=now)

    def __post_init__(self) -> None:
        s = self.ctx.config.settings.serving
        self.id = f"{socket.gethostname()}:{os.getpid()}" + (f"@{self.url}" if self.url else "")
        self.pool = ModelPool(self.ctx)
        self.poll_s = s.poll_ms / 1000
        self.model = self.ctx.model
        self.log = PredictionLog(self.ctx.store, self.model, s.log_queue_rows, s.log_flush_ms, self.id)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="llctl-follow", daemon=True)
        self._failed: tuple[int, float] | None = None
        self._last_beat = 0.0
        self.swaps = 0

    # -- following the deployment row ------------------------------------------------------------
    def start(self) -> None:
        self.sync()
        self._beat(force=True)
        self.log.start()
        self._thread.start()

    def sync(self) -> bool:
        """Read the deployment row; swap the routing table if it changed. True if it swapped."""
        from lifelong_cli.store import deployment

        with self.ctx.store.tx(write=False) as t:
            dep = deployment.get(t, self.model)
        if dep["generation"] == self.routing.generation:
            return False
        if self._failed and self._failed[0] == dep["generation"] and time.monotonic() - self._failed[1] < 3.0:
            return False
        try:
            new = self._build(dep)
        except Exception as exc:  # a bad artifact or an unreachable registry: keep serving what we have
            self.problem = f"cannot load generation {dep['generation']}: {exc}".splitlines()[0]
            self._failed = (dep["generation"], time.monotonic())
            log.error("model %s: %s; still serving generation %s", self.model, self.problem, self.routing.generation)
            self._beat(force=True)
            return False
        self.routing = new
        self.problem, self._failed = None, None
        self.swaps += 1
        log.info("model %s now serving generation %s: stable v%s, canary %s, fallback %s", self.model, new.generation,
                 dep["stable_version"],
                 f"v{dep['canary_version']} at {dep['canary_share']:.0%}" if dep["canary_version"] else "none",
                 dep["fallback_strategy"] if dep["fallback_mode"] else "off")
        self._beat(force=True)
        return True

    def _build(self, dep: dict[str, Any]) -> Routing:
        stable = self.pool.model(dep["stable_version"]) if dep["stable_version"] else None
        canary = self.pool.model(dep["canary_version"]) if dep["canary_version"] else None
        fallback = None
        if dep["fallback_mode"]:
            source = dep["stable_version"] or dep["training_head"]
            strategy = dep["fallback_strategy"] or "majority"
            fallback = self.pool.fallback(source, strategy)
        return Routing(dep["generation"], stable, canary, float(dep["canary_share"] or 0.0), fallback)

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.sync()
                self._beat()
            except Exception as exc:  # the store is unreachable: keep serving the last known table
                self.problem = f"cannot read the deployment row: {exc}".splitlines()[0]
                log.error("model %s: %s", self.model, self.problem)

    def _beat(self, force: bool = False, status: str = "serving") -> None:
        from lifelong_cli.store import replicas

        if not force and time.monotonic() - self._last_beat < 1.0:
            return
        r = self.routing
        with self.ctx.store.tx() as t:
            replicas.report(
                t, self.model, id=self.id, url=self.url, host=socket.gethostname(), pid=os.getpid(),
                started_at=self.started_at, heartbeat_at=now(),
                status="degraded" if self.problem and status == "serving" else status,
                generation=r.generation if r.generation >= 0 else None,
                stable_version=r.stable.version if r.stable else None,
                canary_version=r.canary.version if r.canary else None, fallback_mode=r.fallback is not None,
                detail={"problem": self.problem, "logged": self.log.counters.logged,
                        "dropped": self.log.counters.dropped, "queue": len(self.log.queue)})
        self._last_beat = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.log.stop()
        try:
            self._beat(force=True, status="stopped")
        except Exception as exc:  # shutting down with the store gone: nothing left to tell it
            log.warning("could not mark the replica stopped: %s", exc)


def model_contexts(spec: dict[str, Any]) -> list[Any]:
    """One context per model a serving process serves, from its spec: ``config_file``, ``overrides``,
    ``actor``, ``cwd`` and ``models`` (the names; each gets ``model.name`` set, so it reads that
    model's rows and data directory)."""
    from pathlib import Path

    from lifelong_cli.context import AppContext

    out = []
    for name in spec.get("models") or [None]:
        overrides = {**spec.get("overrides", {}), **({"model.name": name} if name else {})}
        out.append(AppContext(config_file=spec.get("config_file"), overrides=overrides, actor=spec.get("actor"),
                              cwd=Path(spec["cwd"]) if spec.get("cwd") else Path.cwd()))
    return out
