"""Ingest throughput, memory, purge-rule read overhead and drift-check latency, in one run.

A CSV of N rows x 20 float features (plus example_id, an ISO-8601 event_time and a label 0..4) is
generated with numpy and written with pyarrow; every figure is a ratio measured within this run
(the machine is shared and noisy), with repetitions interleaved so that noise hits both sides alike.
Targets (issue: data plane):

1. `llctl ingest file.csv` (the real binary, a fresh workspace each time) ≤ 2.0 × the floor: this
   process reading the same CSV with ``pyarrow.csv.read_csv`` (threads on, pyarrow's defaults) and
   writing it with ``pyarrow.parquet.write_table`` (zstd, as segments are), imports already paid.
2. Peak memory independent of file size: max RSS of ingesting N rows ≤ 1.3 × that of N/4 rows.
3. Reading the ingested data (``data.reader.read_rows``, the model's batch references and purge
   rules read from the store each time) with 10 active purge rules that match few rows ≤ 1.2 × with
   none (the same rules passed as ``[]``; median of 5 each, interleaved).
4. The default drift backend on 100k rows vs a 100k reference, in a fresh interpreter, imports
   included: ≤ 0.5 s (subprocess wall time minus a bare ``python -c pass``).

    .venv/bin/python benchmarks/ingest.py [--rows 1000000] [--reps 3]
    .venv/bin/python benchmarks/ingest.py --only drift    # part 4 alone (its 2 x 100k rows only)
    .venv/bin/python benchmarks/ingest.py --only ingest [--rows 1000000] [--reps 3]   # part 1 alone
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LLCTL = str(BIN / "llctl")
TIME = "/usr/bin/time"
N_FEATURES = 20
FEATURES = [f"f{i}" for i in range(N_FEATURES)]
LABELS = [str(i) for i in range(5)]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
GEN_CHUNK = 200_000
DRIFT_ROWS = 100_000
DRIFT_RUNS = 7
READ_RUNS = 5

TARGET_INGEST_RATIO = 2.0
TARGET_MEM_RATIO = 1.3
TARGET_PURGE_RATIO = 1.2
TARGET_DRIFT_SECONDS = 0.5

DRIFT_SCRIPT = textwrap.dedent("""
    import time
    t0 = time.perf_counter()
    import json, sys
    import numpy as np
    from lifelong_cli.drift import get_detector
    t1 = time.perf_counter()
    z = np.load(sys.argv[1])
    names = [f"f{i}" for i in range(z["ref"].shape[0])]
    def arrays(side):
        feats = z[side]
        out = {n: feats[i] for i, n in enumerate(names)}
        out["label"] = z[side + "_label"].astype(object)  # ingest passes the label as an object array of str
        return out
    ref, cur = arrays("ref"), arrays("cur")
    t2 = time.perf_counter()
    report = get_detector("scipy").compare(ref, cur, numeric=names, categorical=[], label="label")
    t3 = time.perf_counter()
    print(json.dumps({"import": t1 - t0, "build": t2 - t1, "compare": t3 - t2, "total": t3 - t0,
                      "drifted": report.drifted, "tests": len(report.features), "n_ref": report.n_reference,
                      "n_cur": report.n_current}))
""")


# ------------------------------------------------------------------------------------------- data


def generate(path: Path, n: int, seed: int) -> dict[str, np.ndarray]:
    """Write n rows to path; return the first 2 x DRIFT_ROWS rows' features and labels (for drift)."""
    rng = np.random.default_rng(seed)
    keep_f, keep_l, kept = [], [], 0
    schema = None
    writer = None
    try:
        for start in range(0, n, GEN_CHUNK):
            m = min(GEN_CHUNK, n - start)
            feats = np.round(rng.standard_normal((N_FEATURES, m)), 6)  # a typical export: 6 decimals
            labels = rng.integers(0, 5, m)
            idx = pa.array(np.arange(start, start + m))
            ids = pc.binary_join_element_wise("ex", pc.utf8_lpad(idx.cast(pa.string()), 9, "0"), "-")
            secs = pa.array(int(T0.timestamp()) + np.arange(start, start + m), pa.int64())
            times = pc.strftime(secs.cast(pa.timestamp("s", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
            cols = {"example_id": ids, "event_time": times, "label": pa.array(labels)}
            cols.update({name: pa.array(feats[i]) for i, name in enumerate(FEATURES)})
            t = pa.table(cols)
            if writer is None:
                schema = t.schema
                writer = pcsv.CSVWriter(str(path), schema)
            writer.write_table(t)
            if kept < 2 * DRIFT_ROWS:
                take = min(m, 2 * DRIFT_ROWS - kept)
                keep_f.append(feats[:, :take])
                keep_l.append(labels[:take].astype(str))
                kept += take
    finally:
        if writer is not None:
            writer.close()
    return {"features": np.concatenate(keep_f, axis=1), "labels": np.concatenate(keep_l)}


def bench_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLCTL_")}
    env["LLCTL_ACTOR"] = "bench"
    return env


def make_workspace(ws: Path, env: dict[str, str]) -> None:
    subprocess.run([LLCTL, "init", str(ws)], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cfg_path = ws / "llctl.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["data"]["features"] = [{"name": f, "type": "float", "nullable": False} for f in FEATURES]
    cfg["data"]["label_categories"] = list(LABELS)
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def run_measured(cmd: list[str], cwd: Path, env: dict[str, str], scratch: Path) -> tuple[float, int, str]:
    """(wall seconds, max RSS in KiB of the command itself, stdout). /usr/bin/time reports the RSS of its
    own child, so the benchmark's own (large) memory never leaks into it through fork/vfork + exec."""
    if not Path(TIME).exists():  # fallback: wait4() gives this child's own rusage (which, after vfork +
        # exec, may also count this process's peak RSS: /usr/bin/time is the better witness)
        with open(scratch / "out.txt", "w+") as fo, open(scratch / "err.txt", "w+") as fe:
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fo, stderr=fe, text=True)
            _, status, ru = os.wait4(p.pid, 0)
            dt = time.perf_counter() - t0
            p.returncode = os.waitstatus_to_exitcode(status)
            fo.seek(0)
            fe.seek(0)
            out_s, err_s = fo.read(), fe.read()
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{out_s}\n{err_s}")
        return dt, ru.ru_maxrss, out_s
    out = scratch / "time.out"
    t0 = time.perf_counter()
    p = subprocess.run([TIME, "-f", "%M", "-o", str(out), *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return dt, int(out.read_text().split()[-1]), p.stdout


def ingest_once(csv: Path, tmp: Path, env: dict[str, str], tag: str) -> tuple[float, int, Path, str]:
    ws = tmp / f"ws-{tag}"
    shutil.rmtree(ws, ignore_errors=True)
    make_workspace(ws, env)
    dt, rss, out = run_measured([LLCTL, "ingest", str(csv)], ws, env, tmp)
    if "accepted" not in out:
        raise SystemExit(f"ingest did not accept the batch:\n{out}")
    return dt, rss, ws, out


def floor_once(csv: Path, tmp: Path) -> float:
    """The floor, in this process: pyarrow reads the whole CSV and writes it as one zstd Parquet file."""
    import pyarrow.parquet as pq

    dst = tmp / "floor.parquet"
    t0 = time.perf_counter()
    pq.write_table(pcsv.read_csv(csv), dst, compression="zstd")
    dt = time.perf_counter() - t0
    dst.unlink(missing_ok=True)
    return dt


# ---------------------------------------------------------------------------------- purge rules


def purge_specs(n: int) -> list[tuple[dict, str]]:
    """10 rules, each matching few rows (a standard normal beyond ±4.5 is ~7 in a million)."""
    def iso(sec: int) -> str:
        return (T0 + timedelta(seconds=sec)).isoformat().replace("+00:00", "Z")
    mid = n // 2
    return [
        ({"where": "f3 > 4.5"}, "bench: outliers in f3"),
        ({"where": "f7 < -4.5"}, "bench: outliers in f7"),
        ({"where": "example_id = 'ex-000000042'"}, "bench: one example"),
        ({"where": "f0 > 4 and f1 > 0"}, "bench: a conjunction"),
        ({"where": "label = '4' and f5 > 4.2"}, "bench: label and feature"),
        ({"from": iso(mid), "to": iso(mid + 10)}, "bench: a 10 s outage"),
        ({"from": iso(mid // 2), "to": iso(mid // 2 + 60), "where": "f2 > 0"}, "bench: window and predicate"),
        ({"source": "other-upstream"}, "bench: another source"),
        ({"where": "example_id in ('ex-000000001', 'ex-000000002', 'ex-000000003')"}, "bench: a key list"),
        ({"where": "f9 is null or f10 > 4.6"}, "bench: null or outlier"),
    ]


def insert_rules(ctx, n: int) -> str:
    """Add the 10 rules through the purge op (soft rules: the rows stay in the segments)."""
    from lifelong_cli.ops.purge_data import purge_data

    for spec, reason in purge_specs(n):
        purge_data(ctx, reason=reason, from_=spec.get("from"), to=spec.get("to"), where=spec.get("where"),
                   source=spec.get("source"))
    return "via ops.purge_data.purge_data"


def read_overhead(ws: Path, n: int, runs: int) -> dict:
    from lifelong_cli.context import AppContext
    from lifelong_cli.data import reader as rd
    from lifelong_cli.data.schema import DataSchema
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.store import batches, purge_rules

    ctx = AppContext(config_file=str(ws / "llctl.yaml"), cwd=ws, env=bench_env())
    try:
        how = insert_rules(ctx, n)
        schema = DataSchema.from_settings(ctx.config.settings.data)
        data = DataStore(ctx.data_root)

        def read(on: bool) -> tuple[float, int, int]:
            t0 = time.perf_counter()
            with ctx.store.tx(write=False) as t:
                refs = batches.for_reading(t, ctx.model)
                rules = purge_rules.active(t, ctx.model) if on else []
            table = rd.read_rows(data, schema, refs, rules)
            dt = time.perf_counter() - t0
            return dt, table.num_rows, len(rules)

        read(False)  # warm the page cache and imports; not measured
        read(True)
        times: dict[bool, list[float]] = {False: [], True: []}
        rows: dict[bool, int] = {}
        rules: dict[bool, int] = {}
        for i in range(runs):
            for on in ((False, True) if i % 2 == 0 else (True, False)):
                dt, rows[on], rules[on] = read(on)
                times[on].append(dt)
    finally:
        ctx.close()
    if rules[False] != 0 or rules[True] != 10:
        raise SystemExit(f"expected 0 and 10 active rules, saw {rules[False]} and {rules[True]}")
    return {"how": how, "t0": statistics.median(times[False]), "t10": statistics.median(times[True]),
            "rows0": rows[False], "rows10": rows[True]}


# ---------------------------------------------------------------------------------------- drift


def drift_check(tmp: Path, kept: dict[str, np.ndarray], env: dict[str, str], runs: int) -> dict:
    npz = tmp / "drift.npz"
    f, lab = kept["features"], kept["labels"]
    np.savez(npz, ref=np.ascontiguousarray(f[:, :DRIFT_ROWS]), cur=np.ascontiguousarray(f[:, DRIFT_ROWS:]),
             ref_label=lab[:DRIFT_ROWS], cur_label=lab[DRIFT_ROWS:])
    script = tmp / "drift_check.py"
    script.write_text(DRIFT_SCRIPT)
    env = dict(env, PYTHONPATH=str(ROOT))
    cmds = {"pass": [sys.executable, "-c", "pass"], "drift": [sys.executable, str(script), str(npz)]}
    for cmd in cmds.values():  # warm the page cache once; not measured
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall: dict[str, list[float]] = {k: [] for k in cmds}
    inner: list[dict] = []
    for _ in range(runs):
        for name, cmd in cmds.items():
            t0 = time.perf_counter()
            p = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True)
            wall[name].append(time.perf_counter() - t0)
            if name == "drift":
                inner.append(json.loads(p.stdout))
    med = {k: statistics.median(v) for k, v in wall.items()}
    doc = {k: statistics.median(d[k] for d in inner) for k in ("import", "build", "compare", "total")}
    doc.update(wall=med["drift"], bare=med["pass"], net=med["drift"] - med["pass"],
               net_min=min(wall["drift"]) - min(wall["pass"]), n_ref=inner[0]["n_ref"],
               n_cur=inner[0]["n_cur"], tests=inner[0]["tests"], drifted=inner[0]["drifted"])
    return doc


def drift_lines(drift: dict) -> list[str]:
    return [
        f"4. drift, scipy backend, {drift['n_cur']:,} vs {drift['n_ref']:,} rows, {N_FEATURES} features + label "
        f"({drift['tests']} tests, drifted={drift['drifted']})",
        f"   fresh interpreter: {drift['wall']:.3f} s wall - {drift['bare']:.3f} s python -c pass = "
        f"{drift['net']:.3f} s (medians of {DRIFT_RUNS}, interleaved; fastest runs: {drift['net_min']:.3f} s)",
        f"   in process: import {drift['import']:.3f} s + build arrays {drift['build']:.3f} s + compare "
        f"{drift['compare']:.3f} s = {drift['total']:.3f} s",
    ]


def drift_row(drift: dict) -> tuple[str, str, str, bool]:
    return ("drift check, fresh interpreter", f"{drift['net']:.3f} s", f"≤ {TARGET_DRIFT_SECONDS:.1f} s",
            drift["net"] <= TARGET_DRIFT_SECONDS)


def print_table(rows: list[tuple[str, str, str, bool | None]]) -> bool:
    print(f"{'figure':<34}{'value':>18}   {'target':<10}result")
    ok = True
    for name, value, target, good in rows:
        res = "" if good is None else ("met" if good else "MISSED")
        ok &= good is not False
        print(f"{name:<34}{value:>18}   {target:<10}{res}")
    return ok


def only_drift(keep: bool) -> int:
    """Part 4 alone: the same 2 x DRIFT_ROWS rows as a full run (same seed and chunking), nothing else."""
    env = bench_env()
    tmp = Path(tempfile.mkdtemp(prefix="llctl-bench-drift-"))
    try:
        kept = generate(tmp / "drift.csv", 2 * DRIFT_ROWS, seed=1)
        drift = drift_check(tmp, kept, env, runs=DRIFT_RUNS)
    finally:
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"drift benchmark only (part 4), {os.cpu_count()} cores")
    print()
    print("\n".join(drift_lines(drift)))
    print()
    return 0 if print_table([drift_row(drift)]) else 1


def only_ingest(n: int, reps: int, keep: bool) -> int:
    """Part 1 alone: `llctl ingest` of an N-row CSV against the in-process floor, interleaved."""
    env = bench_env()
    tmp = Path(tempfile.mkdtemp(prefix="llctl-bench-ingest-"))
    ing: list[float] = []
    flo: list[float] = []
    try:
        csv = tmp / "big.csv"
        generate(csv, n, seed=1)
        floor_once(csv, tmp)  # warm the page cache and pyarrow's imports; not measured
        for i in range(reps):
            for what in (("floor", "ingest") if i % 2 == 0 else ("ingest", "floor")):
                if what == "floor":
                    flo.append(floor_once(csv, tmp))
                else:
                    ing.append(ingest_once(csv, tmp, env, "big")[0])
            print(f"  run {i + 1}: ingest {ing[-1]:.2f} s, floor {flo[-1]:.2f} s", file=sys.stderr, flush=True)
    finally:
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    t_ing, t_floor = statistics.median(ing), statistics.median(flo)
    r = t_ing / t_floor
    print(f"ingest benchmark only (part 1): {n:,} rows x {N_FEATURES} float features, {os.cpu_count()} cores, "
          f"median of {reps} interleaved runs")
    print(f"   runs: ingest {', '.join(f'{d:.2f}' for d in ing)} s; floor {', '.join(f'{d:.2f}' for d in flo)} s")
    print()
    return 0 if print_table([
        ("llctl ingest", f"{t_ing:.2f} s", "", None),
        ("floor: read_csv + write_table", f"{t_floor:.2f} s", "", None),
        ("ingest wall time / floor", f"{r:.2f} ×", f"≤ {TARGET_INGEST_RATIO:.1f} ×", r <= TARGET_INGEST_RATIO),
    ]) else 1


# ----------------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each ingest/floor run (interleaved)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (printed) for inspection")
    ap.add_argument("--only", choices=["drift", "ingest"],
                    help="run one part alone: drift = part 4 (--rows/--reps unused), ingest = part 1")
    args = ap.parse_args()
    if args.only == "drift":
        return only_drift(args.keep)
    if args.reps < 1 or args.rows < 1:
        ap.error("--rows and --reps must be at least 1")
    if args.only == "ingest":
        return only_ingest(args.rows, args.reps, args.keep)
    if args.rows < 2 * DRIFT_ROWS:
        ap.error(f"--rows must be at least {2 * DRIFT_ROWS} (the drift check needs 2 x {DRIFT_ROWS} rows)")
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    n, small_n = args.rows, args.rows // 4
    env = bench_env()
    tmp = Path(tempfile.mkdtemp(prefix="llctl-bench-ingest-"))
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731 - progress on stderr
    try:
        t0 = time.perf_counter()
        big, small = tmp / "big.csv", tmp / "small.csv"
        kept = generate(big, n, seed=1)
        generate(small, small_n, seed=2)
        say(f"generated {n:,} rows ({big.stat().st_size / 1e6:.0f} MB) and {small_n:,} rows "
            f"({small.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s under {tmp}")

        # 1 + 2: wall time against the floor, peak memory at N and N/4 (all runs interleaved).
        ing: list[tuple[float, int]] = []
        flo: list[float] = []
        ing_small: list[tuple[float, int]] = []
        last_ws, last_out = None, ""
        floor_once(big, tmp)  # warm the page cache and pyarrow's imports; not measured
        for i in range(args.reps):
            order = ("floor", "ingest") if i % 2 == 0 else ("ingest", "floor")
            for what in order:
                if what == "floor":
                    flo.append(floor_once(big, tmp))
                    say(f"  floor  run {i + 1}: {flo[-1]:.2f} s")
                else:
                    dt, rss, last_ws, last_out = ingest_once(big, tmp, env, "big")
                    ing.append((dt, rss))
                    say(f"  ingest run {i + 1}: {dt:.2f} s, {rss / 1024:.0f} MiB")
            dt_s, rss_s, _, _ = ingest_once(small, tmp, env, "small")
            ing_small.append((dt_s, rss_s))
            say(f"  ingest N/4 run {i + 1}: {dt_s:.2f} s, {rss_s / 1024:.0f} MiB")
        t_ing = statistics.median(d for d, _ in ing)
        t_floor = statistics.median(flo)
        rss_big = statistics.median(r for _, r in ing)
        t_small = statistics.median(d for d, _ in ing_small)
        rss_small = statistics.median(r for _, r in ing_small)

        # 3: read overhead of 10 active purge rules, on the last N-row workspace.
        say("read_rows with 0 vs 10 active purge rules ...")
        purge = read_overhead(last_ws, n, runs=READ_RUNS)

        # 4: drift check in a fresh interpreter.
        say("drift check ...")
        drift = drift_check(tmp, kept, env, runs=DRIFT_RUNS)
    finally:
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    r_ing = t_ing / t_floor
    r_mem = rss_big / rss_small
    r_purge = purge["t10"] / purge["t0"]
    print(f"ingest benchmark: {n:,} rows x {N_FEATURES} float features (+ key, ISO time, label 0..4), "
          f"{os.cpu_count()} cores, median of {args.reps} interleaved runs")
    print(f"llctl says: {last_out.strip().splitlines()[0]}")
    print()
    print(f"1. llctl ingest (fresh workspace)   {t_ing:7.2f} s   {n / t_ing:>12,.0f} rows/s")
    print(f"   floor: read_csv + write_table    {t_floor:7.2f} s   {n / t_floor:>12,.0f} rows/s   (in process, zstd)")
    print(f"   ratio                            {r_ing:7.2f} ×   target ≤ {TARGET_INGEST_RATIO:.1f} × floor")
    print(f"   runs: ingest {', '.join(f'{d:.2f}' for d, _ in ing)} s; floor {', '.join(f'{d:.2f}' for d in flo)} s; "
          f"ingest of N/4 rows {t_small:.2f} s")
    print(f"2. peak RSS, ingest of {small_n:>10,} rows {rss_small / 1024:7.0f} MiB")
    print(f"   peak RSS, ingest of {n:>10,} rows {rss_big / 1024:7.0f} MiB   (max RSS of the process, "
          f"{'/usr/bin/time %M' if Path(TIME).exists() else 'wait4'})")
    print(f"   ratio                            {r_mem:7.2f} ×   target ≤ {TARGET_MEM_RATIO:.1f} ×")
    print("   expected to grow with the file: the batch's key hashes for de-duplication and its key index run")
    print("   (8 and 16 bytes a row), and pyarrow's CSV read-ahead until it holds its 32 read blocks (64 MiB at")
    print("   2 MiB blocks); everything else is bounded by data.chunk_rows.")
    print(f"3. read_rows, 0 active purge rules  {purge['t0']:7.3f} s   ({purge['rows0']:,} rows)")
    print(f"   read_rows, 10 active purge rules {purge['t10']:7.3f} s   ({purge['rows10']:,} rows; "
          f"{purge['rows0'] - purge['rows10']} purged)")
    print(f"   ratio                            {r_purge:7.2f} ×   target ≤ {TARGET_PURGE_RATIO:.1f} ×   (median of {READ_RUNS}, "
          f"interleaved; rules {purge['how']})")
    print("\n".join(drift_lines(drift)))
    print()
    rows = [
        ("ingest wall time / floor", f"{r_ing:.2f} ×", f"≤ {TARGET_INGEST_RATIO:.1f} ×", r_ing <= TARGET_INGEST_RATIO),
        ("ingest throughput", f"{n / t_ing:,.0f} rows/s", "(info)", None),
        (f"peak RSS {n:,} / {small_n:,} rows", f"{r_mem:.2f} ×", f"≤ {TARGET_MEM_RATIO:.1f} ×", r_mem <= TARGET_MEM_RATIO),
        ("read_rows 10 rules / 0 rules", f"{r_purge:.2f} ×", f"≤ {TARGET_PURGE_RATIO:.1f} ×", r_purge <= TARGET_PURGE_RATIO),
        drift_row(drift),
    ]
    return 0 if print_table(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
