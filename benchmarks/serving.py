"""Serving throughput and latency: `llctl serve` against `mlflow models serve` of the same ONNX model, in one run.

A fresh workspace is made with the real binary (init, a synthetic batch, ``train --epochs 1``,
validate, push, ``canary start 1``: v1 is stable). Its ONNX artifact (the very bytes llctl serves) is
saved as an MLflow model with ``mlflow.onnx.save_model`` (the ONNX flavour takes the multi-input
model with its string input; CPU provider, 1 intra-op and 1 inter-op thread, as llctl's sessions)
and served by ``mlflow models serve --env-manager local --workers 1`` (uvicorn, one process, as
``llctl serve``'s single process). Both servers run for the whole benchmark; only one is loaded at
a time.

The client is one asyncio event loop in this process speaking HTTP/1.1 over ``--concurrency``
keep-alive connections (closed loop: each connection sends its next request as soon as the answer
is in), with every request pre-serialised, so that it costs little CPU per request (its CPU time
per request and the share of a core it used are printed for every window; ``--client httpx`` uses
``httpx.AsyncClient`` instead, to compare). Both servers get the same rows of the synthetic batch,
one row per request, in their own format: llctl ``{"row": {...}}`` on ``/v1/predict``; MLflow
``{"inputs": {"x1": [[...]], ..., "segment": [["a"]]}}`` on ``/invocations`` (a dict of ``[1, 1]``
arrays, one per ONNX input: the ONNX pyfunc refuses a DataFrame with a string column). Before
measuring, both must agree on every row sent (llctl's class = the argmax of MLflow's scores).

Schedule: a warm-up of ``--warmup`` s per server, then ``--rounds`` rounds of a ``--duration`` s
window each, alternating (llctl, mlflow, llctl, mlflow, ...). Throughput = all 200 answers / all
window time per server; p50/p99 over every request of that server's windows. Targets (issue:
serving): throughput llctl / mlflow ≥ 3 ×; p99 latency llctl / mlflow ≤ 0.5 ×; no failed request.

Also shown (info): each server's own CPU time per answered request (utime + stime of its process
group, from /proc), and the ratio mlflow / llctl of it. On a shared, busy machine neither server gets
a whole core (the load average is printed), so req/s follows the CPU share the scheduler grants each
process as much as its cost per request; CPU per request is the steadier measure of that cost.
``--pythonpath DIR`` runs both servers with DIR first on PYTHONPATH, e.g. to see what uvicorn's
optional C parser and loop change (``pip install --target DIR httptools uvloop``); the HTTP stack
uvicorn picks is printed.

    .venv/bin/python benchmarks/serving.py [--duration 10] [--rounds 3] [--concurrency 8] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from _proc import free_port, run  # noqa: E402  (benchmarks/ is the script's directory)

BIN = Path(sys.executable).parent
LLCTL = str(BIN / "llctl")
MLFLOW = str(BIN / "mlflow")
HOST = "127.0.0.1"
FEATURES = ["x1", "x2", "x3", "segment"]
NUMERIC = ["x1", "x2", "x3"]
TARGET_RPS_RATIO = 3.0
TARGET_P99_RATIO = 0.5
CLK_TCK = os.sysconf("SC_CLK_TCK")

SAVE_MLFLOW_MODEL = textwrap.dedent("""
    import sys
    import onnx
    import mlflow.onnx

    src, dst = sys.argv[1], sys.argv[2]
    mlflow.onnx.save_model(onnx.load(src), dst, onnx_execution_providers=["CPUExecutionProvider"],
                           onnx_session_options={"intra_op_num_threads": 1, "inter_op_num_threads": 1})
""")


def say(s: str) -> None:
    print(s, file=sys.stderr, flush=True)


def bench_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLCTL_")}
    env["LLCTL_ACTOR"] = "bench"
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # `mlflow models serve` execs `uvicorn` from PATH
    return env


def server_env(env: dict[str, str], extra: str | None) -> dict[str, str]:
    """The servers' environment: ``--pythonpath`` first on PYTHONPATH, for both alike."""
    if not extra:
        return env
    return dict(env, PYTHONPATH=os.pathsep.join(p for p in (extra, env.get("PYTHONPATH")) if p))


def uvicorn_stack(env: dict[str, str]) -> str:
    """Which HTTP parser and event loop uvicorn picks (``auto``) in that environment."""
    code = ("import importlib.util as u; print(('httptools' if u.find_spec('httptools') else 'h11') + ' + ' + "
            "('uvloop' if u.find_spec('uvloop') else 'asyncio'))")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip()




# ------------------------------------------------------------------------------- workspace + servers


def make_workspace(ws: Path, env: dict[str, str], rows: int) -> dict[str, Any]:
    """init, one synthetic batch, train, validate, push, canary start: v1 stable. Returns v1's row."""
    run([LLCTL, "init", str(ws)], ws.parent, env)
    run([sys.executable, "-m", "lifelong_cli.data.synthetic", "stream", "--batches", "1", "--rows", str(rows)], ws, env)
    run([LLCTL, "ingest", "stream/batch-01.csv", "--source", "bench"], ws, env)
    run([LLCTL, "train", "--epochs", "1"], ws, env)
    run([LLCTL, "validate"], ws, env)
    run([LLCTL, "push", "1"], ws, env)
    run([LLCTL, "canary", "start", "1"], ws, env)
    return json.loads(run([LLCTL, "versions", "show", "1", "--json"], ws, env))["version"]


class Server:
    """A server process in its own session (process group), stopped with its children whatever happens."""

    def __init__(self, name: str, cmd: list[str], cwd: Path, env: dict[str, str], port: int, ready_path: str,
                 log: Path) -> None:
        self.name, self.port, self.ready_path, self.log = name, port, ready_path, log
        with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.started = time.perf_counter()

    def wait_ready(self, timeout: float = 90.0) -> float:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}{self.ready_path}", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.name} not ready after {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def cpu_seconds(self) -> float:
        """utime + stime of every live process in the server's process group (MLflow's CLI execs uvicorn
        in a child), in seconds."""
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid:  # field 5 (pgrp), counted after the ")" of comm
                total += int(fields[11]) + int(fields[12])
        return total / CLK_TCK

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
        deadline = time.monotonic() + 5  # a child left in the group (MLflow's uvicorn) gets 5 s to finish
        with contextlib.suppress(ProcessLookupError):
            while time.monotonic() < deadline:
                os.killpg(self.proc.pid, 0)
                time.sleep(0.1)
            os.killpg(self.proc.pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------- client


def read_rows(path: Path) -> list[dict[str, Any]]:
    from lifelong_cli.serving.loadgen import read_rows as rr

    return [{f: r.get(f) for f in FEATURES} for r in rr(str(path), set(NUMERIC))]


def llctl_body(row: dict[str, Any]) -> bytes:
    return json.dumps({"row": row}).encode()


def mlflow_body(row: dict[str, Any]) -> bytes:
    # a missing number is sent as NaN, as llctl's feeds() does with a null (x3 is nullable)
    doc = {f: [[float("nan") if row[f] is None else row[f]]] for f in NUMERIC}
    doc["segment"] = [[row["segment"] or ""]]
    return json.dumps({"inputs": doc}).encode()


def raw_request(path: str, port: int, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


class Window:
    def __init__(self) -> None:
        self.lat: list[float] = []
        self.failed = 0
        self.errors: list[str] = []
        self.seconds = 0.0
        self.client_cpu = 0.0
        self.server_cpu = 0.0


async def _raw_conn(port: int, reqs: list[bytes], start: int, step: int, stop_at: float, w: Window) -> None:
    reader = writer = None
    i = start
    try:
        while time.perf_counter() < stop_at:
            req = reqs[i % len(reqs)]
            i += step
            t0 = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(HOST, port)
                writer.write(req)
                status = int((await reader.readline()).split(b" ", 2)[1])
                clen = -1
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line[:15].lower() == b"content-length:":
                        clen = int(line[15:])
                if clen < 0:
                    raise ValueError("no content-length in the response")
                body = await reader.readexactly(clen)
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
                w.failed += 1
                if len(w.errors) < 5:
                    w.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.01)
                continue
            dt = time.perf_counter() - t0
            if status == 200 and b'"predictions"' in body:
                w.lat.append(dt)
            else:
                w.failed += 1
                if len(w.errors) < 5:
                    w.errors.append(f"HTTP {status}: {body[:200]!r}")
    finally:
        if writer is not None:
            writer.close()


async def _httpx_conn(client: Any, url: str, bodies: list[bytes], start: int, step: int, stop_at: float,
                      w: Window) -> None:
    import httpx

    i = start
    while time.perf_counter() < stop_at:
        body = bodies[i % len(bodies)]
        i += step
        t0 = time.perf_counter()
        try:
            r = await client.post(url, content=body, headers={"content-type": "application/json"})
        except httpx.HTTPError as exc:
            w.failed += 1
            if len(w.errors) < 5:
                w.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            continue
        dt = time.perf_counter() - t0
        if r.status_code == 200 and b'"predictions"' in r.content:
            w.lat.append(dt)
        else:
            w.failed += 1
            if len(w.errors) < 5:
                w.errors.append(f"HTTP {r.status_code}: {r.content[:200]!r}")


async def _load(kind: str, port: int, path: str, bodies: list[bytes], concurrency: int, seconds: float,
                offset: int, w: Window) -> None:
    stop_at = time.perf_counter() + seconds
    if kind == "raw":
        reqs = [raw_request(path, port, b) for b in bodies]
        await asyncio.gather(*(_raw_conn(port, reqs, offset + c, concurrency, stop_at, w) for c in range(concurrency)))
        return
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        url = f"http://{HOST}:{port}{path}"
        await asyncio.gather(*(_httpx_conn(client, url, bodies, offset + c, concurrency, stop_at, w)
                               for c in range(concurrency)))


def load_window(kind: str, server: Server, path: str, bodies: list[bytes], concurrency: int, seconds: float,
                offset: int = 0) -> Window:
    w = Window()
    s0, c0, t0 = server.cpu_seconds(), time.process_time(), time.perf_counter()
    asyncio.run(_load(kind, server.port, path, bodies, concurrency, seconds, offset, w))
    w.seconds = time.perf_counter() - t0
    w.client_cpu = time.process_time() - c0
    w.server_cpu = server.cpu_seconds() - s0
    return w


def check_agreement(llctl_port: int, mlflow_port: int, rows: list[dict[str, Any]], classes: list[str]) -> int:
    """Both servers answer the same class for every row sent (llctl's label = argmax of MLflow's scores)."""
    import httpx

    with httpx.Client(timeout=30.0) as c:
        for i, row in enumerate(rows):
            a = c.post(f"http://{HOST}:{llctl_port}/v1/predict", content=llctl_body(row),
                       headers={"content-type": "application/json"})
            b = c.post(f"http://{HOST}:{mlflow_port}/invocations", content=mlflow_body(row),
                       headers={"content-type": "application/json"})
            if a.status_code != 200 or b.status_code != 200:
                raise SystemExit(f"row {i}: llctl HTTP {a.status_code} {a.text[:300]}; mlflow HTTP {b.status_code} {b.text[:300]}")
            scores = b.json()["predictions"]["scores"][0]
            mine = a.json()["predictions"][0]
            theirs = classes[max(range(len(scores)), key=scores.__getitem__)]
            if str(mine) != str(theirs):
                raise SystemExit(f"row {i} {row}: llctl says {mine!r}, MLflow's scores {scores} say {theirs!r}")
    return len(rows)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


# --------------------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of each measured window")
    ap.add_argument("--rounds", type=int, default=3, help="windows per server (alternating)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load per server first")
    ap.add_argument("--concurrency", type=int, default=8, help="keep-alive connections, each one request in flight")
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw",
                    help="raw: asyncio streams, pre-serialised HTTP/1.1 (default); httpx: httpx.AsyncClient")
    ap.add_argument("--rows", type=int, default=500, help="rows of the synthetic batch (trained on and sent)")
    ap.add_argument("--pythonpath", metavar="DIR", help="prepend DIR to both servers' PYTHONPATH (e.g. httptools and "
                    "uvloop installed with `pip install --target DIR`: uvicorn then picks them for both)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON document instead")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (printed) for inspection")
    args = ap.parse_args()
    if args.rounds < 1 or args.duration <= 0 or args.concurrency < 1:
        ap.error("--rounds, --duration and --concurrency must be positive")
    env = bench_env()
    load0 = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="llctl-bench-serving-"))
    servers: list[Server] = []
    try:
        t0 = time.perf_counter()
        ws = tmp / "ws"
        v1 = make_workspace(ws, env, args.rows)
        onnx_path = v1["artifacts"]["onnx"]["uri"]
        classes = v1["lineage"]["classes"]
        say(f"workspace with v1 stable in {time.perf_counter() - t0:.1f} s under {tmp}")
        (tmp / "save_mlflow_model.py").write_text(SAVE_MLFLOW_MODEL)
        run([sys.executable, str(tmp / "save_mlflow_model.py"), onnx_path, str(tmp / "mlflow-model")], tmp, env)

        senv = server_env(env, args.pythonpath)
        stack = uvicorn_stack(senv)
        lport, mport = free_port(), free_port()
        llctl = Server("llctl serve", [LLCTL, "serve", "--port", str(lport)], ws, senv, lport, "/readyz", tmp / "llctl.log")
        servers.append(llctl)
        mlflow = Server("mlflow models serve", [MLFLOW, "models", "serve", "-m", str(tmp / "mlflow-model"),
                                                "--env-manager", "local", "--port", str(mport), "--workers", "1"],
                        tmp, senv, mport, "/ping", tmp / "mlflow.log")
        servers.append(mlflow)
        start_s = {"llctl": llctl.wait_ready(), "mlflow": mlflow.wait_ready()}
        say(f"servers ready: llctl serve in {start_s['llctl']:.1f} s, mlflow models serve in {start_s['mlflow']:.1f} s "
            "(started together)")

        rows = read_rows(ws / "stream" / "batch-01.csv")
        agreed = check_agreement(lport, mport, rows[:50], classes)
        plan = {"llctl": (llctl, "/v1/predict", [llctl_body(r) for r in rows]),
                "mlflow": (mlflow, "/invocations", [mlflow_body(r) for r in rows])}
        sizes = {k: statistics.mean(len(b) for b in v[2]) for k, v in plan.items()}

        for name, (srv, path, bodies) in plan.items():
            w = load_window(args.client, srv, path, bodies, args.concurrency, args.warmup)
            say(f"  warm-up {name:<6} {len(w.lat) / w.seconds:8.0f} req/s, {w.failed} failed")
        windows: dict[str, list[Window]] = {"llctl": [], "mlflow": []}
        for i in range(args.rounds):
            for name in ("llctl", "mlflow"):
                srv, path, bodies = plan[name]
                w = load_window(args.client, srv, path, bodies, args.concurrency, args.duration,
                                offset=i * args.concurrency)
                windows[name].append(w)
                n = len(w.lat)
                say(f"  round {i + 1} {name:<6} {n / w.seconds:8.0f} req/s  p50 {pct(w.lat, .5) * 1e3:6.2f} ms  "
                    f"p99 {pct(w.lat, .99) * 1e3:6.2f} ms  {w.failed} failed  server CPU "
                    f"{w.server_cpu / max(n, 1) * 1e3:.2f} ms/req ({w.server_cpu / w.seconds:.0%} of a core)  client CPU "
                    f"{w.client_cpu / max(n, 1) * 1e3:.2f} ms/req ({w.client_cpu / w.seconds:.0%} of a core)")
    finally:
        for s in servers:
            s.stop()
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    res: dict[str, dict[str, Any]] = {}
    for name, ws_ in windows.items():
        lat = [x for w in ws_ for x in w.lat]
        secs = sum(w.seconds for w in ws_)
        n = len(lat)
        res[name] = {"requests": n, "failed": sum(w.failed for w in ws_), "seconds": secs, "rps": n / secs,
                     "p50_ms": pct(lat, .5) * 1e3, "p99_ms": pct(lat, .99) * 1e3, "mean_ms": statistics.mean(lat) * 1e3,
                     "rps_windows": [len(w.lat) / w.seconds for w in ws_],
                     "server_cpu_ms_per_req": sum(w.server_cpu for w in ws_) / n * 1e3,
                     "server_cores": sum(w.server_cpu for w in ws_) / secs,
                     "client_cpu_ms_per_req": sum(w.client_cpu for w in ws_) / n * 1e3,
                     "client_cores": sum(w.client_cpu for w in ws_) / secs,
                     "request_bytes": sizes[name], "ready_seconds": start_s[name],
                     "errors": [e for w in ws_ for e in w.errors][:5]}
    r_rps = res["llctl"]["rps"] / res["mlflow"]["rps"]
    r_p99 = res["llctl"]["p99_ms"] / res["mlflow"]["p99_ms"]
    r_cpu = res["mlflow"]["server_cpu_ms_per_req"] / res["llctl"]["server_cpu_ms_per_req"]
    failed = res["llctl"]["failed"] + res["mlflow"]["failed"]
    rows_out = [  # (figure, value, shown, target, met)
        ("throughput llctl / mlflow", r_rps, f"{r_rps:.2f} ×", f"≥ {TARGET_RPS_RATIO:.1f} ×", r_rps >= TARGET_RPS_RATIO),
        ("p99 latency llctl / mlflow", r_p99, f"{r_p99:.2f} ×", f"≤ {TARGET_P99_RATIO:.1f} ×", r_p99 <= TARGET_P99_RATIO),
        ("failed requests (both)", failed, f"{failed}", "0", failed == 0),
        ("server CPU/request mlflow / llctl", r_cpu, f"{r_cpu:.2f} ×", "(info)", None),
    ]
    ok = all(good is not False for *_, good in rows_out)
    if args.json:
        print(json.dumps({"cores": os.cpu_count(), "loadavg": [load0, os.getloadavg()[0]], "client": args.client, "concurrency": args.concurrency,
                          "uvicorn": stack, "pythonpath": args.pythonpath,
                          "duration": args.duration, "rounds": args.rounds, "agreed_rows": agreed, "servers": res,
                          "ratios": {"rps": r_rps, "p99": r_p99, "server_cpu_per_request_mlflow_over_llctl": r_cpu},
                          "figures": {name: {"value": v, "shown": sh, "target": t, "met": g} for name, v, sh, t, g in rows_out},
                          "ok": ok}, indent=2))
        return 0 if ok else 1
    print(f"serving benchmark: one row per request, {args.concurrency} keep-alive connections ({args.client} asyncio "
          f"client), {args.rounds} × {args.duration:.0f} s per server alternating, after {args.warmup:.0f} s warm-up each; "
          f"{os.cpu_count()} cores")
    print(f"load average (1 min) at the start {load0:.1f}, at the end {os.getloadavg()[0]:.1f}: the machine is shared")
    print(f"same ONNX bytes (v1); both servers gave the same class on the {agreed} rows checked; uvicorn for both: "
          f"{stack}" + (f" (PYTHONPATH {args.pythonpath})" if args.pythonpath else ""))
    print()
    print(f"{'server':<22}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}{'server CPU':>17}{'client CPU':>17}   per window req/s")
    for name, label in (("llctl", "llctl serve"), ("mlflow", "mlflow models serve")):
        r = res[name]
        print(f"{label:<22}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['failed']:>8}"
              f"{r['server_cpu_ms_per_req']:>9.2f} ms/req{r['client_cpu_ms_per_req']:>9.2f} ms/req   "
              + ", ".join(f"{x:.0f}" for x in r["rps_windows"]))
        for e in r["errors"]:
            print(f"    {e}")
    print(f"(server CPU: utime+stime of its process group per answered request; it used {res['llctl']['server_cores']:.2f} "
          f"and {res['mlflow']['server_cores']:.2f} cores; the client {res['llctl']['client_cores']:.2f} and "
          f"{res['mlflow']['client_cores']:.2f})")
    print()
    print(f"{'figure':<34}{'value':>12}   {'target':<10}result")
    for name, _, value, target, good in rows_out:
        print(f"{name:<34}{value:>12}   {target:<10}{'' if good is None else 'met' if good else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
