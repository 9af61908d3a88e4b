"""Simulated traffic for `llctl demo`, the benchmarks and the tests: threads that send rows to
``/v1/predict`` over keep-alive HTTP connections and, for a share of them, the true label to
``/v1/feedback``; every response's status, version and latency is recorded."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tally:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    statuses: Counter = field(default_factory=Counter)
    versions: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    correct: int = 0
    labelled: int = 0
    feedback_sent: int = 0
    errors: list[str] = field(default_factory=list)
    timeline: list[tuple[float, int | None, str, int]] = field(default_factory=list)  # (t, version, variant, status)


class Traffic:
    """``Traffic(url, rows, label=...)``; ``start()``, ``stop()``; results in ``tally``.

    ``rows`` are dicts of feature values (extra keys such as the label are not sent as features).
    ``label_for`` may replace the true label given as feedback (e.g. to simulate a broken world).
    ``model``: send to /v1/models/{model}/… (a process serving several models) instead of /v1/…."""

    def __init__(self, url: str, rows: Sequence[dict[str, Any]], *, features: Sequence[str], label: str | None = None,
                 threads: int = 4, feedback_share: float = 1.0, rate_per_thread: float | None = None,
                 key: str | None = None, label_for: Callable[[dict[str, Any]], Any] | None = None,
                 keep_timeline: bool = True, model: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.base = f"{self.url}/v1/models/{model}" if model else f"{self.url}/v1"
        self.rows = rows
        self.features = list(features)
        self.label = label
        self.threads = threads
        self.feedback_share = feedback_share
        self.interval = 1.0 / rate_per_thread if rate_per_thread else 0.0
        self.key = key
        self.label_for = label_for
        self.keep_timeline = keep_timeline
        self.tally = Tally()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._counter = itertools.count()
        self._workers: list[threading.Thread] = []
        self.t0 = time.monotonic()

    def start(self) -> Traffic:
        self.t0 = time.monotonic()
        self._workers = [threading.Thread(target=self._run, name=f"traffic-{i}", daemon=True) for i in range(self.threads)]
        for w in self._workers:
            w.start()
        return self

    def stop(self) -> Tally:
        self._stop.set()
        for w in self._workers:
            w.join(timeout=30)
        return self.tally

    def __enter__(self) -> Traffic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=10.0) as client:
            while not self._stop.is_set():
                i = next(self._counter)
                src = self.rows[i % len(self.rows)]
                row = {f: src.get(f) for f in self.features}
                rid = uuid.uuid4().hex
                body: dict[str, Any] = {"row": row}
                if self.key:
                    row[self.key] = body["key"] = str(src.get(self.key, rid))  # logged: feedback joins on it
                t0 = time.perf_counter()
                try:
                    r = client.post(f"{self.base}/predict", json=body, headers={"x-request-id": rid})
                    status = r.status_code
                    doc = r.json() if status == 200 else None
                except (httpx.HTTPError, ValueError) as exc:
                    status, doc = 0, None
                    with self._lock:
                        self.tally.errors.append(str(exc)[:200])
                ms = (time.perf_counter() - t0) * 1000
                truth = None
                if doc and self.label is not None:
                    truth = self.label_for(src) if self.label_for else src.get(self.label)
                with self._lock:
                    t = self.tally
                    t.sent += 1
                    t.statuses[status] += 1
                    if doc:
                        t.ok += 1
                        t.versions[doc["version"]] += 1
                        t.latencies_ms.append(ms)
                        if truth is not None:
                            t.labelled += 1
                            t.correct += str(doc["predictions"][0]) == str(truth)
                    else:
                        t.failed += 1
                    if self.keep_timeline:
                        t.timeline.append((time.monotonic() - self.t0, doc["version"] if doc else None,
                                           doc["variant"] if doc else "error", status))
                send_feedback = doc is not None and truth is not None and (i * 0.6180339887) % 1.0 < self.feedback_share
                if send_feedback:
                    try:
                        client.post(f"{self.base}/feedback", json={"request_id": rid, "label": truth})
                        with self._lock:
                            self.tally.feedback_sent += 1
                    except httpx.HTTPError as exc:
                        with self._lock:
                            self.tally.errors.append(f"feedback: {exc}"[:200])
                if self.interval:
                    self._stop.wait(self.interval)


def read_rows(path: str, numeric: set[str]) -> list[dict[str, Any]]:
    """Rows of a CSV file as dicts, the ``numeric`` columns parsed as numbers (for feeding Traffic)."""
    import csv
    import math

    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row: dict[str, Any] = {}
            for k, v in r.items():
                if v == "" or v is None:
                    row[k] = None
                elif k in numeric:
                    x = float(v)
                    row[k] = x if math.isfinite(x) else None
                else:
                    row[k] = v
            out.append(row)
    return out
