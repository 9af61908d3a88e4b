"""demo: the whole story on a laptop, on the embedded defaults (SQLite, local registry) and a real
`llctl serve` subprocess on loopback under simulated traffic with feedback.

1. A synthetic stream (generated offline) arrives in batches, examples first and labels later.
2. Versions are trained, validated, pushed and promoted through a canary while traffic flows.
3. A broken labelling pipeline upstream inverts the labels of two batches; the label audit at
   ingest holds each (its labels disagree with the stable version's predictions far more than that
   source's did): nothing is trained on them (detection, before any version could be).
4. The `bad-labels` playbook runs inside an incident and rejects each held batch (kept on disk,
   never trained on); the fixed upstream delivers a clean batch, and the next version is released
   through the gates and a canary under traffic.
5. The incident is closed and its postmortem draft written; a summary table ends the run.

Were the labels not held (``data.label_audit.on_fail: accept``), the story is the one before the
audit: the version trained on them is rejected by validation, and the `bad-data` playbook rolls
back, purges the window and releases the recovered version (``--from-step`` once clean data is in)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifelong_cli.errors import UnavailableError, UsageError
from lifelong_cli.ops._base import Result

ROWS = 1500
DEMO_SETTINGS = {
    "training.epochs": "3",
    "canary.min_requests": "40",
    "canary.min_labelled": "40",
    "canary.min_step_seconds": "2",
    "serving.log_flush_ms": "200",
}


@dataclass(frozen=True)
class DemoResult(Result):
    model: str
    workdir: str
    kept: bool
    seconds: float
    time_to_detect_s: float | None
    time_to_mitigate_s: float | None
    golden_before: float | None
    golden_worst_served: float | None
    golden_after: float | None
    requests: int
    requests_failed: int
    rows_purged: int
    incident: int | None
    report: str | None
    versions: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    batches_held: list[int] = field(default_factory=list)  # the bad labels batches the audit held at ingest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Demo:
    def __init__(self, workdir: Path, say: Callable[[str], None]) -> None:
        self.dir = workdir
        self.say_ = say
        self.t0 = time.monotonic()
        self.token = secrets.token_hex(16)
        self.env = {**os.environ, "LLCTL_ADMIN_TOKEN": self.token, "LLCTL_ACTOR": "demo"}
        for k in [k for k in self.env if k.startswith("LLCTL_") and "__" in k]:
            del self.env[k]  # the demo runs on its own embedded defaults
        self.env.pop("LLCTL_CONFIG", None)
        self.env.pop("LLCTL_MODEL", None)  # its one model is the example config's
        self.server: subprocess.Popen | None = None
        self.traffic = None
        self.port = _free_port()

    def say(self, msg: str) -> None:
        self.say_(f"[{time.monotonic() - self.t0:6.1f}s] {msg}")

    def ctx(self):
        from lifelong_cli.context import AppContext

        return AppContext(cwd=self.dir, env=self.env, actor="demo",
                          overrides={**DEMO_SETTINGS, "serving.port": str(self.port)})

    def write_batch(self, n: int, *, flip: bool = False) -> tuple[Path, Path]:
        import pyarrow.csv as pcsv

        from lifelong_cli.data.synthetic import batch_table, split_labels

        examples, labels = split_labels(batch_table((n - 1) * ROWS, ROWS, day=n, seed=n, flip=flip))
        stream = self.dir / "stream"
        stream.mkdir(exist_ok=True)
        pe, pl = stream / f"batch-{n:02d}-examples.csv", stream / f"batch-{n:02d}-labels.csv"
        pcsv.write_csv(examples, pe)
        pcsv.write_csv(labels, pl)
        return pe, pl

    def ingest(self, n: int, *, flip: bool = False) -> int | None:
        """Examples then labels of batch ``n``; the labels batch's id when it was held."""
        from lifelong_cli.ops.ingest import ingest

        pe, pl = self.write_batch(n, flip=flip)
        ctx = self.ctx()
        r = ingest(ctx, path=str(pe), source="upstream")
        r2 = ingest(ctx, path=str(pl), source="labeller", kind="labels")
        drift = " — drift!" if r.drift and r.drift.get("drifted") else ""
        if r2.status == "held":
            self.say(f"batch {n}: {r.rows_accepted} examples, then {r2.rows_read} labels: HELD at ingest as batch "
                     f"{r2.batch} ({r2.hold['cause']}: {r2.hold['reason']}){drift}")
            return r2.batch
        self.say(f"batch {n}: {r.rows_accepted} examples, then {r2.rows_read} labels arrive later "
                 f"({r2.rows_trainable} examples now trainable){drift}")
        return None

    def release(self, *, watch: bool = True) -> tuple[int | None, str]:
        """train → validate → push → canary; returns (version, verdict)."""
        from lifelong_cli.ops import canary
        from lifelong_cli.ops.push import push
        from lifelong_cli.ops.train import train
        from lifelong_cli.ops.validate import validate

        ctx = self.ctx()
        t = train(ctx)
        if t.version is None:
            self.say(f"train: {t.message}")
            return None, "none"
        v = validate(self.ctx(), version=t.version)
        acc = next((g["figure"] for g in v.gates if g["name"] == "golden accuracy"), None)
        self.say(f"v{t.version} trained ({t.rows_new} new rows, parent v{t.parent}); validation {v.verdict.upper()}"
                 + (f", golden accuracy {acc:.3f}" if isinstance(acc, float) else "")
                 + (f" — failed: {', '.join(v.failed)}" if v.failed else ""))
        if v.verdict != "passed":
            return t.version, v.verdict
        p = push(self.ctx(), version=t.version)
        self.say(p.message)
        s = canary.start(self.ctx(), version=t.version)
        self.say(s.message)
        if watch and s.state == "running":
            w = canary.watch(self.ctx(), timeout=90, interval=1, progress=lambda m: self.say(f"  canary: {m}"))
            if w.exit_code:
                raise UsageError(f"demo: canary of v{t.version} did not promote: {w.message}")
        return t.version, v.verdict

    def start_server(self) -> None:
        import httpx

        log = (self.dir / "serve.log").open("ab")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "lifelong_cli", "--set", f"serving.log_flush_ms={DEMO_SETTINGS['serving.log_flush_ms']}",
             "serve", "--port", str(self.port)], cwd=self.dir, env=self.env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise UnavailableError(f"demo: `llctl serve` exited with {self.server.returncode}",
                                       hint=f"see {self.dir / 'serve.log'}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    self.say(f"`llctl serve` is up at {url} (pid {self.server.pid})")
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise UnavailableError("demo: `llctl serve` did not become ready in 30 s", hint=f"see {self.dir / 'serve.log'}")

    def start_traffic(self) -> None:
        from lifelong_cli.data.synthetic import batch_table
        from lifelong_cli.serving.loadgen import Traffic

        rows = []
        # Many distinct users: routing is sticky per key, so a small pool would make the canary's
        # slice a handful of recurring rows rather than a sample of the population.
        for r in batch_table(10_000_000, 20_000, day=28, seed=999).to_pylist():
            rows.append({**r, "x1": float(r["x1"]), "x2": float(r["x2"]),
                         "x3": None if r["x3"] is None else float(r["x3"])})
        self.traffic = Traffic(f"http://127.0.0.1:{self.port}", rows, features=["x1", "x2", "x3", "segment"],
                               label="label", threads=3, key="example_id", rate_per_thread=60).start()
        self.say("simulated users: 3 clients, feedback labels for every answer")

    def stop(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()


def demo(*, workdir: str | None = None, keep: bool = False, progress: Callable[[str], None] | None = None) -> DemoResult:
    from lifelong_cli.ops.init import init
    from lifelong_cli.ops.playbook import run as run_playbook

    say = progress or (lambda _m: None)
    if workdir:
        wd = Path(workdir).expanduser().resolve()
        if wd.exists() and any(wd.iterdir()):
            raise UsageError(f"--workdir {wd} is not empty", hint="give a new or empty directory")
        wd.mkdir(parents=True, exist_ok=True)
        keep = True
    else:
        wd = Path(tempfile.mkdtemp(prefix="llctl-demo-"))
    d = _Demo(wd, say)
    try:
        init(d.ctx())
        d.say(f"workspace {wd}: SQLite store, local registry (llctl init)")
        d.ingest(1)
        v1, _ = d.release()
        d.start_server()
        d.start_traffic()
        for n in (2, 3):
            d.ingest(n)
            d.release()
        d.say("INCIDENT: the labelling pipeline upstream breaks and inverts every label of batches 4 and 5")
        bad_ingested = time.monotonic()
        held = [b for b in (d.ingest(4, flip=True), d.ingest(5, flip=True)) if b is not None]
        if held:
            return _held_story(d, wd, keep, held, bad_ingested, v1)
        bad_v, verdict = d.release()
        detected = time.monotonic()
        if verdict == "passed":
            d.say(f"v{bad_v} passed the gates; the canary is the next line of defence")
        d.say(f"detected {detected - bad_ingested:.1f} s after the bad batches arrived: v{bad_v} was {verdict}")
        params = {"from": "2026-11-04T00:00:00Z", "to": "2026-11-05T23:59:59Z", "reason": "labels inverted upstream",
                  "canary_interval": "1", "canary_timeout": "90"}
        d.say("on-call runs: llctl playbook run bad-data --param from=2026-11-04 --param to=2026-11-05T23:59:59Z")
        r = run_playbook(d.ctx(), name="bad-data", params=params, yes=True, title="labels inverted upstream (batches 4-5)",
                         progress=lambda m: d.say(f"  playbook: {m}"))
        iid = r.incident
        purged = next((s["result"]["rows_affected"] for s in r.steps if s["name"] == "purge" and s.get("result")), 0)
        if not r.ok:
            d.say(f"playbook paused: {r.message}")
            d.say("the upstream is fixed: batch 6 arrives clean")
            d.ingest(6)
            r = run_playbook(d.ctx(), name="bad-data", params=params, yes=True, from_step=r.resume_from,
                             progress=lambda m: d.say(f"  playbook: {m}"))
            if not r.ok:
                raise UsageError(f"demo: the bad-data playbook did not finish: {r.message}")
        return _close(d, wd, keep, iid, detected - bad_ingested, int(purged or 0), {"first": v1, "rejected": bad_v},
                      summary="An upstream labelling change inverted labels for two batches. The next version failed "
                              "validation; the bad-data playbook rolled back, purged the window and released a "
                              "recovered version through a canary.")
    except BaseException:
        keep = True  # leave the evidence
        raise
    finally:
        d.stop()
        if not keep:
            shutil.rmtree(wd, ignore_errors=True)


def _held_story(d: _Demo, wd: Path, keep: bool, held: list[int], bad_ingested: float, v1: int | None) -> DemoResult:
    """Steps 4-5 when the label audit held the bad batches: the bad-labels playbook rejects each,
    clean data follows, the next version goes out through a canary, the incident is closed."""
    from lifelong_cli.ops.playbook import run as run_playbook

    detected = time.monotonic()
    d.say(f"detected at ingest, {detected - bad_ingested:.1f} s after the bad batches arrived: nothing was trained "
          "on them (`llctl data holds` lists them)")
    iid = None
    for b in held:
        d.say(f"on-call runs: llctl playbook run bad-labels --param batch={b}")
        r = run_playbook(d.ctx(), name="bad-labels", params={"batch": str(b), "reason": "labels inverted upstream",
                                                            "canary_interval": "1", "canary_timeout": "90"},
                         yes=True, title="labels inverted upstream (batches 4-5)",
                         progress=lambda m: d.say(f"  playbook: {m}"))
        if not r.ok:
            raise UsageError(f"demo: the bad-labels playbook did not finish: {r.message}")
        iid = iid or r.incident
    d.say("the upstream is fixed: batch 6 arrives clean")
    d.ingest(6)
    fixed, verdict = d.release()
    return _close(d, wd, keep, iid, detected - bad_ingested, 0, {"first": v1, "rejected": None}, held=held,
                  summary="An upstream labelling change inverted labels for two batches. The label audit held both at "
                          "ingest, so no version trained on them; the bad-labels playbook rejected them and "
                          f"v{fixed} was released on clean data through a canary ({verdict}).",
                  note="the bad labels never reached a version; ")


def _close(d: _Demo, wd: Path, keep: bool, iid: int, detect_s: float, purged: int, versions: dict[str, Any], *,
           summary: str, held: list[int] | None = None, note: str = "") -> DemoResult:
    """The end of the story: traffic stopped, the incident closed with ``summary``, its postmortem
    drafted, and the figures."""
    from lifelong_cli.ops import incident as inc
    from lifelong_cli.store import deployment

    time.sleep(1.0)  # let the last predictions reach the store before the report reads them
    tally = d.traffic.stop() if d.traffic else None
    d.traffic = None
    inc.close(d.ctx(), incident_id=iid, summary=summary)
    rep = inc.report(d.ctx(), incident_id=iid)
    g = rep.golden
    d.say(rep.message)
    ctx = d.ctx()
    with ctx.store.tx(write=False) as t:
        dep = deployment.get(t, ctx.model)
    return DemoResult(
        ctx.model, str(wd), keep, round(time.monotonic() - d.t0, 1), round(detect_s, 1),
        rep.durations["time_to_mitigate_s"], g["before"]["metric"], g["worst_served"]["metric"], g["after"]["metric"],
        tally.sent if tally else 0, tally.failed if tally else 0, purged, iid, rep.path,
        {**versions, "stable": dep["stable_version"]},
        f"model '{ctx.model}' recovered: v{dep['stable_version']} is stable; {note}postmortem draft at {rep.path}",
        batches_held=list(held or []))
