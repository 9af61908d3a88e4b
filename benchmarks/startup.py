"""Cold start of the emergency verbs, against bare Python and `mlflow --version`, in one run.

Each command is a new process (cold interpreter), run N times interleaved so that machine noise
hits all of them alike; the median is reported. Targets (issue: foundation): each emergency verb
≤ 0.10 × `mlflow --version` and ≤ 0.35 s.

    .venv/bin/python benchmarks/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
TARGET_RATIO = 0.10
TARGET_SECONDS = 0.35


def timed(cmd: list[str], cwd: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    if args.runs < 10:
        ap.error("--runs must be at least 10")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLCTL_")}
    env["LLCTL_ACTOR"] = "bench"
    llctl = str(BIN / "llctl")
    with tempfile.TemporaryDirectory() as ws:
        subprocess.run([llctl, "init", ws], env=env, check=True, stdout=subprocess.DEVNULL)
        cmds = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "llctl stop-training": [llctl, "stop-training", "--reason", "bench"],
            "llctl resume": [llctl, "resume", "--reason", "bench"],
            "llctl status": [llctl, "status"],
            "mlflow --version": [str(BIN / "mlflow"), "--version"],
        }
        for cmd in cmds.values():  # warm the page cache once; not measured
            timed(cmd, ws, env)
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.runs):
            for name, cmd in cmds.items():
                times[name].append(timed(cmd, ws, env))
    med = {name: statistics.median(ts) for name, ts in times.items()}
    base = med["mlflow --version"]
    print(f"cold start, median of {args.runs} runs each (interleaved), {os.cpu_count()} cores")
    print(f"{'command':<22}{'median s':>10}{'× mlflow':>10}{'× python':>10}   target")
    ok = True
    for name, m in med.items():
        target = ""
        if name.startswith("llctl"):
            good = m <= TARGET_SECONDS and m / base <= TARGET_RATIO
            ok &= good
            target = f"≤ {TARGET_SECONDS:.2f} s and ≤ {TARGET_RATIO:.2f} × mlflow: {'met' if good else 'MISSED'}"
        print(f"{name:<22}{m:>10.3f}{m / base:>10.3f}{m / med['python -c pass']:>10.1f}   {target}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
