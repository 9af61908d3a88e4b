"""Rollback under steady load: how soon every answer of a live `llctl serve` carries the new version, and
whether any request fails meanwhile, in one run.

A fresh workspace is made with the real binary (init, two synthetic batches; v1 trained, validated,
pushed and made stable by ``canary start 1``; then ``llctl serve`` is started and v2 is trained,
validated and pushed to it, so both versions are loaded the way an operator's would be). Traffic
(``lifelong_cli.serving.loadgen.Traffic``, ``--threads`` keep-alive httpx clients, each pausing to
stay under ``--rate`` requests/s — steady load below the replica's capacity; ``--rate 0`` saturates
it —, no feedback) runs against that one replica for the whole benchmark, with every response's
completion time, status and version kept. Meanwhile ``llctl rollback --to V --json`` (the real binary, a subprocess) is run
``--rollbacks`` times, alternating v1 → v2 and v2 → v1 (v1 is stable after the setup, so the first
is "roll back to v2"), ``--settle`` s apart.

For each rollback, from the moment the subprocess is started:

* switch: until the last response (in completion order) that still carries the old version, i.e.
  the first time after which no response does (0 if none came after the start);
* first new: until the first response that carries the new version;
* the command's own wall time, and its ``"confirm": {"seconds": ...}`` (from its commit until every
  live replica reported the new generation);
* the split of the switch at the commit, whose time is that of the command's audit entry (written in
  the same transaction, read back with ``llctl audit --json``): start → commit is the CLI's start-up
  and checks, commit → switch the replica's poll and swap.

Failed requests are counted over the whole run (non-200 answers and transport errors). Targets
(issue: serving): every switch ≤ 1 s; 0 failed requests.

    .venv/bin/python benchmarks/rollback.py [--rollbacks 6] [--threads 4] [--rate 25] [--settle 2] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _proc import free_port, run  # noqa: E402  (benchmarks/ is the script's directory)

BIN = Path(sys.executable).parent
LLCTL = str(BIN / "llctl")
HOST = "127.0.0.1"
FEATURES = ["x1", "x2", "x3", "segment"]
NUMERIC = ["x1", "x2", "x3"]
TARGET_SWITCH_SECONDS = 1.0


def say(s: str) -> None:
    print(s, file=sys.stderr, flush=True)


def bench_env(token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLCTL_")}
    env["LLCTL_ACTOR"] = "bench"
    env["LLCTL_ADMIN_TOKEN"] = token  # push's load-and-query check on the replica
    return env




class Server:
    """`llctl serve` in its own session (process group), stopped whatever happens."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str], port: int, log: Path) -> None:
        self.port, self.log = port, log
        with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"llctl serve exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"llctl serve not ready after {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


def setup(ws: Path, env: dict[str, str], rows: int, port: int, tmp: Path) -> Server:
    """v1 stable, `llctl serve` up on ``port``, v2 pushed to it. Returns the server."""
    run([LLCTL, "init", str(ws)], ws.parent, env)
    run([sys.executable, "-m", "lifelong_cli.data.synthetic", "stream", "--batches", "2", "--rows", str(rows)], ws, env)
    run([LLCTL, "ingest", "stream/batch-01.csv", "--source", "bench"], ws, env)
    run([LLCTL, "train", "--epochs", "1"], ws, env)
    run([LLCTL, "validate", "1"], ws, env)
    run([LLCTL, "push", "1"], ws, env)
    run([LLCTL, "canary", "start", "1"], ws, env)
    server = Server([LLCTL, "serve", "--port", str(port)], ws, env, port, tmp / "serve.log")
    try:
        server.wait_ready()
        run([LLCTL, "ingest", "stream/batch-02.csv", "--source", "bench"], ws, env)
        run([LLCTL, "train", "--epochs", "1"], ws, env)
        run([LLCTL, "validate", "2"], ws, env)
        run([LLCTL, "push", "2"], ws, env)
    except BaseException:
        server.stop()
        raise
    return server


def analyse(timeline: list[tuple[float, int | None, str, int]], start: float, end: float, old: int,
            new: int) -> dict[str, Any]:
    """Switch figures of one rollback from the responses that completed in [start, end)."""
    window = [(t, v) for t, v, _, status in timeline if start <= t < end and status == 200]
    last_old = max((t for t, v in window if v == old), default=None)
    first_new = min((t for t, v in window if v == new), default=None)
    after = [v for t, v in window if last_old is None or t > last_old]
    return {"switch": 0.0 if last_old is None else last_old - start,
            "first_new": None if first_new is None else first_new - start,
            "responses": len(window), "old_responses": sum(v == old for _, v in window),
            "settled_on_new": bool(after) and all(v == new for v in after)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rollbacks", type=int, default=6, help="rollbacks, alternating v1 -> v2 and v2 -> v1")
    ap.add_argument("--threads", type=int, default=4, help="Traffic threads (keep-alive clients)")
    ap.add_argument("--rate", type=float, default=25.0,
                    help="requests/s per thread at most (Traffic's pause between requests); 0: as fast as possible")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds of load after each rollback returns")
    ap.add_argument("--rows", type=int, default=500, help="rows per synthetic batch")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON document instead")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (printed) for inspection")
    args = ap.parse_args()
    if args.rollbacks < 2 or args.threads < 1 or args.settle < 0.5:
        ap.error("--rollbacks ≥ 2, --threads ≥ 1 and --settle ≥ 0.5 please")
    from lifelong_cli.serving.loadgen import Traffic, read_rows

    env = bench_env(secrets.token_hex(16))
    load0 = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="llctl-bench-rollback-"))
    ws = tmp / "ws"
    server: Server | None = None
    traffic: Traffic | None = None
    events: list[dict[str, Any]] = []
    try:
        t0 = time.perf_counter()
        port = free_port()
        server = setup(ws, env, args.rows, port, tmp)
        say(f"workspace with v1 stable and v2 pushed to `llctl serve` in {time.perf_counter() - t0:.1f} s under {tmp}")
        rows = [{f: r.get(f) for f in FEATURES} for r in read_rows(str(ws / "stream" / "batch-01.csv"), set(NUMERIC))]
        traffic = Traffic(f"http://{HOST}:{port}", rows, features=FEATURES, threads=args.threads, feedback_share=0.0,
                          rate_per_thread=args.rate or None)
        traffic.start()
        wall_minus_mono = time.time() - time.monotonic()  # to place the audit log's commit times on the timeline
        time.sleep(args.settle)  # steady state before the first rollback
        current = 1
        for i in range(args.rollbacks):
            target = 2 if current == 1 else 1
            start = time.monotonic() - traffic.t0
            c0 = time.perf_counter()
            p = subprocess.run([LLCTL, "rollback", "--to", str(target), "--json", "--reason", "bench"], cwd=ws, env=env,
                               capture_output=True, text=True)
            wall = time.perf_counter() - c0
            returned = time.monotonic() - traffic.t0
            if p.returncode != 0:
                raise SystemExit(f"llctl rollback --to {target} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
            doc = json.loads(p.stdout)
            confirm = doc.get("confirm") or {}
            events.append({"from": current, "to": target, "start": start, "returned": returned, "wall": wall,
                           "confirm_seconds": confirm.get("seconds"), "replicas": confirm.get("replicas"),
                           "unconfirmed": confirm.get("unconfirmed"), "generation": doc.get("generation")})
            say(f"  rollback {i + 1}: v{current} -> v{target} in {wall:.2f} s (confirm {confirm.get('seconds')} s, "
                f"{confirm.get('replicas')} replica(s))")
            current = target
            time.sleep(args.settle)
        end = time.monotonic() - traffic.t0
        audit = json.loads(run([LLCTL, "audit", "--verb", "rollback", "--json", "-n", str(4 * args.rollbacks)], ws, env))
    finally:
        tally = traffic.stop() if traffic is not None else None
        if server is not None:
            server.stop()
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    timeline = tally.timeline
    committed = {}  # generation -> seconds on the Traffic timeline (the audit entry is written just before the commit)
    for a in audit["entries"]:
        if a["outcome"] == "ok" and "generation" in (a.get("detail") or {}):
            ts = datetime.fromisoformat(a["ts"].replace("Z", "+00:00")).timestamp()
            committed[a["detail"]["generation"]] = ts - wall_minus_mono - traffic.t0
    for i, e in enumerate(events):
        stop_at = events[i + 1]["start"] if i + 1 < len(events) else end
        e.update(analyse(timeline, e["start"], stop_at, e["from"], e["to"]))
        c = committed.get(e["generation"])
        e["to_commit"] = None if c is None else c - e["start"]
        e["after_commit"] = None if c is None else e["switch"] - e["to_commit"]
        e["old_after_return"] = any(v == e["from"] for t, v, _, s in timeline if e["returned"] <= t < stop_at and s == 200)
    switches = [e["switch"] for e in events]
    after = [e["after_commit"] for e in events if e["after_commit"] is not None]
    to_commit = [e["to_commit"] for e in events if e["to_commit"] is not None]
    walls = [e["wall"] for e in events]
    confirms = [e["confirm_seconds"] for e in events if e["confirm_seconds"] is not None]
    settled = all(e["settled_on_new"] for e in events)
    worst = max(switches)
    duration = end
    rps = tally.sent / duration if duration else 0.0
    med_commit = statistics.median(to_commit) if to_commit else None
    worst_after = max(after) if after else None
    med_confirm = statistics.median(confirms) if confirms else None
    s3 = lambda x: "n/a" if x is None else f"{x:.3f} s"  # noqa: E731
    rows_out = [  # (figure, value, shown, target, met)
        ("switch, worst of all rollbacks", worst, s3(worst), f"≤ {TARGET_SWITCH_SECONDS:.0f} s",
         worst <= TARGET_SWITCH_SECONDS and settled),
        ("switch, median", statistics.median(switches), s3(statistics.median(switches)), "(info)", None),
        ("  of which start → commit, median", med_commit, s3(med_commit), "(info)", None),
        ("  of which commit → switch, worst", worst_after, s3(worst_after), "(info)", None),
        ("failed requests, whole run", tally.failed, f"{tally.failed}", "0", tally.failed == 0),
        ("rollback command wall, median", statistics.median(walls), s3(statistics.median(walls)), "(info)", None),
        ("rollback confirm seconds, median", med_confirm, s3(med_confirm), "(info)", None),
    ]
    ok = all(good is not False for *_, good in rows_out)
    if args.json:
        print(json.dumps({"cores": os.cpu_count(), "loadavg": [load0, os.getloadavg()[0]], "threads": args.threads,
                          "rate_per_thread": args.rate, "settle": args.settle, "requests": tally.sent, "ok_requests": tally.ok, "failed": tally.failed,
                          "statuses": {str(k): v for k, v in tally.statuses.items()}, "errors": tally.errors[:5],
                          "requests_per_second": rps, "rollbacks": events,
                          "figures": {name.strip(): {"value": v, "shown": sh, "target": t, "met": g}
                                      for name, v, sh, t, g in rows_out},
                          "ok": ok}, indent=2))
        return 0 if ok else 1
    lat = sorted(tally.latencies_ms)
    pace = f"≤ {args.rate:g} req/s each" if args.rate else "unpaced"
    print(f"rollback benchmark: {len(events)} rollbacks of one `llctl serve` under {args.threads} Traffic threads ({pace}; "
          f"{rps:.0f} req/s, p50 {lat[len(lat) // 2]:.1f} ms); {os.cpu_count()} cores, load average {load0:.1f} "
          f"at the start, {os.getloadavg()[0]:.1f} at the end")
    print(f"{tally.sent:,} requests in {duration:.1f} s: {tally.ok:,} answered 200, {tally.failed} failed "
          f"(statuses {dict(tally.statuses)})")
    for err in tally.errors[:5]:
        print(f"    {err}")
    print()
    print("seconds from the start of `llctl rollback`; commit = its audit entry's time (written in the same transaction)")
    print(f"{'#':>2}  {'from→to':<8}{'switch':>8}{'first new':>11}{'commit':>8}{'commit→switch':>15}{'cmd wall':>10}"
          f"{'confirm':>9}{'old answers':>13}{'answers':>9}  settled on new")
    f3 = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    for i, e in enumerate(events, 1):
        print(f"{i:>2}  v{e['from']}→v{e['to']:<5}{e['switch']:>8.3f}{f3(e['first_new']):>11}{f3(e['to_commit']):>8}"
              f"{f3(e['after_commit']):>15}{e['wall']:>10.3f}{f3(e['confirm_seconds']):>9}"
              f"{e['old_responses']:>13}{e['responses']:>9}  {'yes' if e['settled_on_new'] else 'NO'}"
              + ("  (an old answer after the command returned)" if e["old_after_return"] else ""))
    print()
    print(f"{'figure':<36}{'value':>12}   {'target':<8}result")
    for name, _, value, target, good in rows_out:
        print(f"{name:<36}{value:>12}   {target:<8}{'' if good is None else 'met' if good else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
