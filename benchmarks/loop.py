"""The per-batch loop's cost against the size of the history.

Two workspaces (llctl's default ``llctl.yaml``: x1, x2, x3 nullable, a categorical segment, a binary
label; ewc+replay, hold-out 10%, drift on ingest — every setting llctl's default), each on its own
SQLite store, hold a history of labelled rows ingested as a few big CSV files (``--files``; keys are
random 32-character hex strings, like uuid4, in no order), and a first version trained on all of it
(``train --epochs 1``: the setup, not measured). Then, per repetition and workspace, one batch of
``--batch`` new rows goes through the loop with llctl's own ops, in this process:

1. ``ingest`` the examples (no label column: labels come later),
2. ``ingest`` their labels (``--kind labels``),
3. ``train`` (the default strategy, from the training head),
4. ``validate`` the new version.

The golden set then holds the hold-out (10% of the history: 1,000 vs 100,000 rows), so validating
costs more with more history whatever the data plane does (every golden row is scored by both
versions, ONNX and torch). ``--golden-rows N`` holds it fixed instead: ``data.holdout_fraction: 0``
and an imported golden set of N rows (``llctl golden import``) in both workspaces.

With ``--cli`` the four steps run as the real ``llctl`` binary instead (a process each: start-up and
imports included — torch for train, torch and onnxruntime for validate — which do not depend on the
history).

One loop per workspace runs first, unmeasured (imports, the ONNX exporter, the page cache); the
measured repetitions alternate which workspace goes first. Each figure is the median over the
repetitions. Targets (issue 10, item 5):

* the loop with the large history ≤ 1.2 × the loop with the small one;
* the loop ≤ 3 s wall with either history.

    .venv/bin/python benchmarks/loop.py [--small 10000] [--large 1000000] [--batch 1000] [--reps 3]
    .venv/bin/python benchmarks/loop.py --quick          # 2,000 vs 50,000 rows, 2 repetitions
    .venv/bin/python benchmarks/loop.py --cli            # the steps as `llctl` processes
    .venv/bin/python benchmarks/loop.py --golden-rows 2000   # a golden set of fixed size
    .venv/bin/python benchmarks/loop.py --cli --workdir /tmp/loop   # set up once; later runs reuse it
                                                                    # (each loop adds a batch to the history)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

LLCTL = str(Path(sys.executable).parent / "llctl")
TARGET_RATIO = 1.2
TARGET_SECONDS = 3.0
STEPS = ("ingest examples", "ingest labels", "train", "validate")
T0 = 1_790_000_000  # 2026-09-21, seconds since the epoch: history rows count up from here
HEX = np.array([f"{i:02x}" for i in range(256)], dtype="S2")


def cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (the `llctl` processes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rows(n: int, *, start: int, seed: int) -> pa.Table:
    """n labelled rows of the default schema; keys are random hex (32 characters, like uuid4)."""
    rng = np.random.default_rng(seed)
    keys = HEX[rng.integers(0, 256, (n, 16), dtype=np.uint8)].view("S32").ravel()
    x1, x2, x3 = rng.normal(0, 1, (3, n))
    label = ((x1 + 0.5 * x2 + rng.normal(0, 0.5, n)) > 0).astype(np.int8)
    secs = pa.array(T0 + start + np.arange(n, dtype=np.int64), pa.int64()).cast(pa.timestamp("s", tz="UTC"))
    return pa.table({
        "example_id": pa.array(keys, pa.binary()).cast(pa.string()),
        "event_time": pc.strftime(secs, format="%Y-%m-%dT%H:%M:%SZ"),
        "label": pa.array(label).cast(pa.string()),
        "x1": pa.array(x1.round(5)), "x2": pa.array(x2.round(5)),
        "x3": pa.array(x3.round(5), mask=rng.random(n) < 0.1),
        "segment": pa.array(np.array(["a", "b", "c"])[rng.integers(0, 3, n)]),
    })


class Workspace:
    """One workspace and its context; history rows ingested, a first version trained."""

    def __init__(self, root: Path, name: str, history: int, files: int, seed: int, golden_rows: int = 0) -> None:
        import yaml

        from lifelong_cli.context import AppContext
        from lifelong_cli.ops.golden import golden_import
        from lifelong_cli.ops.ingest import ingest
        from lifelong_cli.ops.init import init
        from lifelong_cli.ops.train import train

        self.name, self.history, self.dir, self.golden_rows = name, history, root / name, golden_rows
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LLCTL_")}
        self.state = self.dir / "bench-state.json"  # a set-up workspace (--workdir): how far its rows got
        if self.state.exists():
            st = json.loads(self.state.read_text())
            if (st["history"], st["golden_rows"]) != (history, golden_rows):
                raise SystemExit(f"{self.dir} was set up for another history or golden set: use another --workdir")
            self.ctx = AppContext(cwd=self.dir, env=self.env, actor="bench")
            self.next_row, self.seed, self.n = st["next_row"], seed, st["n"]
            self.reused = self.n
            say(f"  {name}: reusing {self.dir} ({history:,} rows of history, {self.n} loops run before)")
            return
        self.dir.mkdir()
        init(AppContext(cwd=root, env=self.env, actor="bench"), directory=str(self.dir))
        if golden_rows:
            cfg = self.dir / "llctl.yaml"
            doc = yaml.safe_load(cfg.read_text())
            doc["data"]["holdout_fraction"] = 0.0
            cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.ctx = AppContext(cwd=self.dir, env=self.env, actor="bench")
        self.next_row, self.seed = 0, seed
        if golden_rows:
            path = self.dir / "golden.csv"
            pcsv.write_csv(rows(golden_rows, start=-golden_rows, seed=99), path)  # the same set in both
            golden_import(self.ctx, path=str(path), slice_by="segment")
        t0 = time.perf_counter()
        per = -(-history // files)
        for f in range(files):
            n = min(per, history - f * per)
            path = self.dir / f"history-{f}.csv"
            pcsv.write_csv(rows(n, start=self.next_row, seed=seed * 1000 + f), path)
            self.next_row += n
            r = ingest(self.ctx, path=str(path), source="history")
            path.unlink()
            if r.status != "accepted":
                raise SystemExit(f"{name}: history file {f}: {r.message}")
        t1 = time.perf_counter()
        tr = train(self.ctx, epochs=1)
        if tr.status != "trained":
            raise SystemExit(f"{name}: first train: {tr.message}")
        say(f"  {name}: {history:,} rows of history in {files} files ingested in {t1 - t0:.1f} s, "
            f"v{tr.version} trained on {tr.rows_new:,} rows in {time.perf_counter() - t1:.1f} s")
        self.n = self.reused = 0
        self._save()

    def _save(self) -> None:
        self.state.write_text(json.dumps({"history": self.history, "golden_rows": self.golden_rows,
                                          "next_row": self.next_row, "n": self.n}))

    def cli(self, *args: str, ok: tuple[int, ...] = (0,)) -> dict:
        """Run `llctl ARGS --json` in the workspace; its JSON result."""
        p = subprocess.run([LLCTL, *args, "--json"], cwd=self.dir, env={**self.env, "LLCTL_ACTOR": "bench"},
                           capture_output=True, text=True)
        if p.returncode not in ok:
            raise SystemExit(f"{self.name}: llctl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return json.loads(p.stdout)

    def loop(self, batch: int, cli: bool = False) -> dict[str, float]:
        """One batch through ingest examples, ingest labels, train, validate: seconds per step."""
        from types import SimpleNamespace

        from lifelong_cli.data.synthetic import split_labels
        from lifelong_cli.ops.ingest import ingest
        from lifelong_cli.ops.train import train
        from lifelong_cli.ops.validate import validate

        if cli:
            def ingest(ctx, *, path, kind="examples", source="default"):  # noqa: ARG001 - the ops' signatures
                return SimpleNamespace(**self.cli("ingest", path, "--kind", kind, "--source", source))

            def train(ctx):  # noqa: ARG001
                return SimpleNamespace(**self.cli("train"))

            def validate(ctx, *, version):  # noqa: ARG001
                return SimpleNamespace(**self.cli("validate", str(version), ok=(0, 3)))

        self.n += 1
        examples, labels = split_labels(rows(batch, start=self.next_row, seed=self.seed * 1000 + 500 + self.n))
        self.next_row += batch
        ex_path, lab_path = self.dir / f"batch-{self.n}.csv", self.dir / f"labels-{self.n}.csv"
        pcsv.write_csv(examples, ex_path)
        pcsv.write_csv(labels, lab_path)
        out: dict[str, float] = {}
        t0, c0 = time.perf_counter(), cpu_seconds()
        r = ingest(self.ctx, path=str(ex_path), source="stream")
        out["ingest examples"], out["ingest examples cpu"] = time.perf_counter() - t0, cpu_seconds() - c0
        if r.status != "accepted" or r.rows_accepted != batch:
            raise SystemExit(f"{self.name}: ingest: {r.message}")
        t0, c0 = time.perf_counter(), cpu_seconds()
        r = ingest(self.ctx, path=str(lab_path), kind="labels", source="stream")
        out["ingest labels"], out["ingest labels cpu"] = time.perf_counter() - t0, cpu_seconds() - c0
        if r.status != "accepted" or r.rows_trainable + r.rows_holdout != batch:  # the hold-out is not trainable
            raise SystemExit(f"{self.name}: ingest labels: {r.message}")
        t0, c0 = time.perf_counter(), cpu_seconds()
        tr = train(self.ctx)
        out["train"], out["train cpu"] = time.perf_counter() - t0, cpu_seconds() - c0
        if tr.status != "trained":
            raise SystemExit(f"{self.name}: train: {tr.message}")
        t0, c0 = time.perf_counter(), cpu_seconds()
        v = validate(self.ctx, version=tr.version)
        out["validate"], out["validate cpu"] = time.perf_counter() - t0, cpu_seconds() - c0
        out["total"] = sum(out[s] for s in STEPS)
        out["total cpu"] = sum(out[f"{s} cpu"] for s in STEPS)
        self.last = {"rows_new": tr.rows_new, "rows_replay": tr.rows_replay, "golden_rows": v.golden_rows,
                     "verdict": v.verdict, "version": tr.version}
        ex_path.unlink()
        lab_path.unlink()
        self._save()
        return out

    def close(self) -> None:
        self.ctx.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=10_000, help="rows of history of the small workspace")
    ap.add_argument("--large", type=int, default=1_000_000, help="rows of history of the large workspace")
    ap.add_argument("--batch", type=int, default=1000, help="rows of each new batch")
    ap.add_argument("--files", type=int, default=4, help="the history is ingested as this many files")
    ap.add_argument("--reps", type=int, default=3, help="measured loops per workspace (interleaved)")
    ap.add_argument("--quick", action="store_true", help="2,000 vs 50,000 rows of history, 2 repetitions")
    ap.add_argument("--golden-rows", type=int, default=0, metavar="N",
                    help="no hold-out; an imported golden set of N rows in both workspaces (default: the hold-out)")
    ap.add_argument("--cli", action="store_true", help="run the steps as `llctl` processes, not ops in this one")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (printed) for inspection")
    ap.add_argument("--workdir", metavar="DIR",
                    help="set the workspaces up in DIR and keep them; a later run with the same DIR reuses them")
    args = ap.parse_args()
    if args.quick:
        args.small, args.large, args.reps = 2000, 50_000, 2
    if min(args.small, args.large, args.batch, args.files, args.reps) < 1:
        ap.error("--small, --large, --batch, --files and --reps must be at least 1")
    if args.workdir:
        tmp = Path(args.workdir).resolve()
        tmp.mkdir(parents=True, exist_ok=True)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="llctl-bench-loop-"))
    times: dict[str, list[dict[str, float]]] = {"small": [], "large": []}
    spaces: dict[str, Workspace] = {}
    t_all = time.perf_counter()
    try:
        say(f"setting up under {tmp} ...")
        for name, n, seed in (("small", args.small, 1), ("large", args.large, 2)):
            spaces[name] = Workspace(tmp, name, n, args.files, seed, args.golden_rows)
        for ws in spaces.values():  # unmeasured: imports, the ONNX exporter, the page cache
            ws.loop(args.batch, args.cli)
        for i in range(args.reps):
            for name in (("small", "large") if i % 2 == 0 else ("large", "small")):
                t = spaces[name].loop(args.batch, args.cli)
                times[name].append(t)
                say(f"  {name} loop {i + 1}: " + ", ".join(f"{s} {t[s]:.2f}" for s in STEPS)
                    + f" = {t['total']:.2f} s wall, {t['total cpu']:.2f} s CPU")
        last = {name: ws.last for name, ws in spaces.items()}
    finally:
        for ws in spaces.values():
            ws.close()
        if args.keep or args.workdir:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    keys = [k for s in (*STEPS, "total") for k in (s, f"{s} cpu")]
    med = {name: {s: statistics.median(t[s] for t in ts) for s in keys} for name, ts in times.items()}
    ratio = med["large"]["total"] / med["small"]["total"]
    worst = max(med["small"]["total"], med["large"]["total"])
    how = "`llctl` processes" if args.cli else "ops in process"
    golden = (f"an imported golden set of {args.golden_rows:,} rows, no hold-out" if args.golden_rows
              else "the golden set: the hold-out (data.holdout_fraction 0.1)")
    print(f"the per-batch loop ({how}): a {args.batch:,}-row batch with {args.small:,} vs {args.large:,} rows "
          f"of history ({args.files} files each); {golden}; median of {args.reps} interleaved loops; "
          f"{os.cpu_count()} cores; {time.perf_counter() - t_all:.0f} s in all")
    if any(ws.reused for ws in spaces.values()):
        print("  reused workspaces (--workdir): their history grew by " + ", ".join(
            f"{ws.reused * args.batch:,} rows ({name})" for name, ws in spaces.items()) + " since set-up")
    print()
    print(f"{'step':<18}{'history ' + format(args.small, ','):>20}{'history ' + format(args.large, ','):>20}{'ratio':>9}"
          f"{'CPU s, small':>16}{'CPU s, large':>14}")
    for s in (*STEPS, "total"):
        a, b = med["small"][s], med["large"][s]
        print(f"{s:<18}{a:>18.3f} s{b:>18.3f} s{b / a:>8.2f}×{med['small'][s + ' cpu']:>16.3f}{med['large'][s + ' cpu']:>14.3f}")
    print("  (CPU s: user + system seconds of the step — this process and the `llctl` processes it ran — the figure "
          "least moved by other work on a shared machine)")
    for name in ("small", "large"):
        d = last[name]
        print(f"  last {name} loop: v{d['version']} trained on {d['rows_new']:,} new + {d['rows_replay']:,} replayed rows; "
              f"validated on {d['golden_rows']:,} golden rows ({d['verdict']})")
    print()
    checks = [
        (f"loop, {args.large:,} / {args.small:,} rows of history", f"{ratio:.2f} ×", f"≤ {TARGET_RATIO} ×",
         ratio <= TARGET_RATIO),
        ("loop wall time, the slower history", f"{worst:.2f} s", f"≤ {TARGET_SECONDS:.0f} s", worst <= TARGET_SECONDS),
    ]
    print(f"{'figure':<44}{'value':>10}   {'target':<10}result")
    for name, value, target, good in checks:
        print(f"{name:<44}{value:>10}   {target:<10}{'met' if good else 'MISSED'}")
    return 0 if all(g for *_, g in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
