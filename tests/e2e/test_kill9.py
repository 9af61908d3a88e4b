"""kill -9 at random points, and at file events, of the real `llctl` binary running ingest, train,
purge-data --hard, rollback, fallback on, canary step and golden import. After each kill:

* `doctor --json` reports only leftovers of interrupted writes (no inconsistency), and
  `doctor --fix --yes --min-age 0s` clears them (then doctor passes);
* `status --json` agrees with the store; every audit entry's subject exists, and every state change
  (a new batch, version or purge rule, a rewritten segment, a changed deployment row) has its entry;
* every version's artifacts match their sha256; no example key is read twice;
* re-running the same command completes (exit 0; for train, after a dead trainer's lease expired),
  and leaves exactly the state an uninterrupted run leaves (same example keys, versions, batches,
  purge rules and deployment pointers).

One workspace is prepared per module (in-process: the training stack is imported once) and copied for
each trial; each operation is first run once uninterrupted on a copy, which measures its duration (the
range the random kill delays are drawn from) and the state it leaves (what a re-run must reach)."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lifelong_cli.context import AppContext
from lifelong_cli.fsutil import TMP_SUFFIX
from tests.helpers import copy_workspace, llctl_bin, read_all_rows, run_bin

pytestmark = pytest.mark.slow

SEED = 20261201
ROWS = 1500
WORKERS = 2  # trials run two at a time
LEASE_TTL = 4.0  # seconds: a killed trainer's lease lapses quickly (the default is 30 s)
# what a crash may leave (and `doctor --fix` removes); "snapshots": a copied workspace's training snapshots
# name the original's segment paths, and an interrupted hard purge leaves snapshots of the old segments
LEFTOVER_CHECKS = {"data root", "registry root", "spool", "unreferenced segments", "snapshots"}
SUBJECTS = {"batch": "batches", "version": "model_versions", "rule": "purge_rules", "target": "model_versions"}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLCTL_")}
    env["LLCTL_ACTOR"] = "tester"
    return env


# -- file events: predicates on the workspace, polled while the command runs ----------------------

def _files(root: Path, pattern: str) -> set[str]:
    return {str(p) for p in root.rglob(pattern)} if root.is_dir() else set()


def _segment_files(ws: Path, pattern: str) -> set[str]:
    """Files under the data root's segment areas (``<data root>/<model>/segments/<kind>/``)."""
    root = ws / ".llctl" / "data"
    return {str(p) for p in root.rglob(pattern) if "segments" in p.relative_to(root).parts[:-1]}


def _temp_written(ws: Path, before: dict) -> bool:
    """A segment's temp file exists and has bytes in it (the write is under way)."""
    for p in _segment_files(ws, f"*{TMP_SUFFIX}"):
        try:
            if Path(p).stat().st_size > 0:
                return True
        except FileNotFoundError:  # renamed meanwhile
            continue
    return False


def _segment_renamed(ws: Path, before: dict) -> bool:
    return bool(_segment_files(ws, "*.parquet") - before["segments"])


def _registry_object_written(ws: Path, before: dict) -> bool:
    return bool(_files(ws / ".llctl" / "artifacts", "objects/*/*") - before["objects"])


def _old_segment_removed(ws: Path, before: dict) -> bool:
    return not Path(before["purged_segment"]).exists()


@dataclass(frozen=True)
class Op:
    name: str
    args: list[str]
    trials: int
    events: dict[str, Callable[[Path, dict], bool]] = field(default_factory=dict)


SEGMENT_EVENTS = {"temp written": _temp_written, "segment renamed": _segment_renamed}
OPS = [
    Op("ingest", ["ingest", "{data}/b4.csv", "--source", "crm", "--json"], 10, SEGMENT_EVENTS),
    Op("train", ["--set", f"training.lease_ttl_seconds={LEASE_TTL}", "train", "--strategy", "naive", "--json"], 3,
       {"registry object written": _registry_object_written}),
    Op("purge-data --hard", ["purge-data", "--batch", "2", "--where", "x1 > 0", "--hard", "--yes", "--reason", "k9",
                             "--json"], 10, {**SEGMENT_EVENTS, "old segment removed": _old_segment_removed}),
    Op("rollback", ["rollback", "--to", "1", "--reason", "k9", "--json"], 10),
    Op("fallback on", ["fallback", "on", "--strategy", "majority", "--reason", "k9", "--json"], 10),
    Op("canary step", ["canary", "step", "--reason", "k9", "--json"], 8),
    Op("golden import", ["golden", "import", "{data}/gold.csv", "--slice-by", "segment", "--json"], 10, SEGMENT_EVENTS),
]


# -- the prepared workspace ----------------------------------------------------------------------

@dataclass
class Prepared:
    ws: Path
    data: Path
    duration: dict[str, float]  # seconds, one uninterrupted run of each operation
    expected: dict[str, dict[str, Any]]  # the state an uninterrupted run leaves


def _csv(path: Path, start: int, n: int, day: int, seed: int) -> str:
    import pyarrow.csv as pcsv

    from lifelong_cli.data.synthetic import batch_table

    pcsv.write_csv(batch_table(start, n, day=day, seed=seed), path)
    return str(path)


def _prepare(base: Path) -> Path:
    """v1 stable; v2 trained, validated, pushed and in a canary at 5 %; batch 3 ingested, not trained on."""
    from lifelong_cli.ops import canary
    from lifelong_cli.ops.ingest import ingest
    from lifelong_cli.ops.init import init
    from lifelong_cli.ops.push import push
    from lifelong_cli.ops.train import train
    from lifelong_cli.ops.validate import validate

    data = base / "data"
    data.mkdir()
    for n in (1, 2, 3, 4):
        _csv(data / f"b{n}.csv", n * 10_000, ROWS, n, n)
    _csv(data / "gold.csv", 90_000, 300, 9, 9)
    ws = base / "ws"
    init(AppContext(cwd=base, env=_env(), actor="tester"), directory=str(ws))
    ctx = AppContext(cwd=ws, env=_env(), actor="tester", overrides={"training.epochs": "1"})
    try:
        for n in (1, 2):
            ingest(ctx, path=str(data / f"b{n}.csv"), source="crm")
            assert train(ctx, strategy="naive").version == n
            assert validate(ctx, version=n).verdict == "passed"
            push(ctx, version=n)
            canary.start(ctx, version=n)
        ingest(ctx, path=str(data / "b3.csv"), source="crm")
    finally:
        ctx.close()
    (ws / "llctl.yaml").write_text((ws / "llctl.yaml").read_text().replace("\n  epochs: null\n", "\n  epochs: 1\n", 1))
    return ws


def _args(op: Op, data: Path) -> list[str]:
    return [a.replace("{data}", str(data)) for a in op.args]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Prepared:
    base = tmp_path_factory.mktemp("kill9")
    ws = _prepare(base)
    env = _env()
    duration, expected = {}, {}
    for op in OPS:  # one uninterrupted run each: its duration, and the state a re-run must reach
        copy = copy_workspace(ws, base / f"calibrate-{op.name.replace(' ', '_')}")
        t0 = time.monotonic()
        r = run_bin(_args(op, base / "data"), cwd=copy, env=env, timeout=300)
        duration[op.name] = time.monotonic() - t0
        assert r.code == 0, f"{op.name} uninterrupted: exit {r.code}\n{r.stdout}\n{r.stderr}"
        expected[op.name] = _fingerprint(copy, env)
    return Prepared(ws, base / "data", duration, expected)


# -- reading the state ---------------------------------------------------------------------------

def _rows(ws: Path, env: dict[str, str], sql: str) -> list[dict[str, Any]]:
    ctx = AppContext(cwd=ws, env=env, actor="tester")
    try:
        with ctx.store.tx(write=False) as t:
            return t.rows(sql, {}, types={"detail": "json", "artifacts": "json"})
    finally:
        ctx.close()


def _fingerprint(ws: Path, env: dict[str, str]) -> dict[str, Any]:
    """What an operation's outcome is judged by (not the generation counter or times)."""
    keys = read_all_rows(ws, env)["example_id"].to_pylist()
    dep = _rows(ws, env, "SELECT stable_version, canary_version, canary_share, canary_state, fallback_mode, "
                         "fallback_strategy, training_head FROM deployment")
    return {
        "keys": sorted(keys),
        "versions": [r["id"] for r in _rows(ws, env, "SELECT id FROM model_versions ORDER BY id")],
        "batches": [(r["kind"], r["status"], r["rows_accepted"])
                    for r in _rows(ws, env, "SELECT kind, status, rows_accepted FROM batches ORDER BY id")],
        "purge_rules": [(r["hard"], r["rows_affected"]) for r in _rows(ws, env, "SELECT hard, rows_affected FROM "
                                                                                "purge_rules WHERE active ORDER BY id")],
        "deployment": dep,
    }


def _state(ws: Path, env: dict[str, str]) -> dict[str, Any]:
    """Ids and pointers, to tell which state changes happened since."""
    return {
        "audit_max": _rows(ws, env, "SELECT coalesce(max(id), 0) AS m FROM audit_log")[0]["m"],
        "batches": {r["id"]: r["segment_path"] for r in _rows(ws, env, "SELECT id, segment_path FROM batches")},
        "versions": {r["id"] for r in _rows(ws, env, "SELECT id FROM model_versions")},
        "rules": {r["id"] for r in _rows(ws, env, "SELECT id FROM purge_rules")},
        "deployment": _rows(ws, env, "SELECT stable_version, canary_version, canary_share, canary_state, fallback_mode, "
                                     "training_head, generation FROM deployment")[0],
    }


def _problems(ws: Path, env: dict[str, str], before: dict[str, Any]) -> list[str]:
    """Everything that is not consistent after a kill (leftovers of interrupted writes are not)."""
    from lifelong_cli.ops.doctor import doctor, doctor_fix
    from lifelong_cli.ops.status import status as status_op

    out: list[str] = []
    ctx = AppContext(cwd=ws, env=env, actor="tester")
    try:  # the ops behind `doctor --json`, `doctor --fix --yes --min-age 0s` and `status --json` (the CLI
        # paths are tested in tests/ops/test_doctor_fix.py; the ops are thread-safe, the in-process CLI is not)
        out += [f"doctor: {c.name}: {c.detail}" for c in doctor(ctx).findings if c.name not in LEFTOVER_CHECKS]
        fixed = doctor_fix(ctx, min_age_seconds=0)
        if not fixed.ok:
            out.append(f"doctor --fix left findings: {[(c.name, c.detail) for c in fixed.checks if not c.ok]}")
        status = status_op(ctx).to_dict()
    finally:
        ctx.close()
    dep = _rows(ws, env, "SELECT * FROM deployment")[0]
    acc = _rows(ws, env, "SELECT count(*) AS n, coalesce(sum(rows_accepted), 0) AS rows FROM batches "
                         "WHERE status = 'accepted'")[0]
    n_versions = _rows(ws, env, "SELECT count(*) AS n FROM model_versions")[0]["n"]
    s = status["serving"]
    seen = (s["stable_version"], s["canary_version"], s["fallback"], s["generation"], status["training"]["versions"],
            status["training"]["head_version"], status["data"]["batches"], status["data"]["rows_accepted"])
    truth = (dep["stable_version"], dep["canary_version"], bool(dep["fallback_mode"]), dep["generation"], n_versions,
             dep["training_head"], acc["n"], acc["rows"])
    if seen != truth:
        out.append(f"status {seen} != store {truth}")

    now = _state(ws, env)
    entries = _rows(ws, env, f"SELECT id, verb, outcome, detail FROM audit_log WHERE id > {int(before['audit_max'])}")
    for e in entries:  # every subject an entry names exists
        for key, table in SUBJECTS.items():
            v = (e["detail"] or {}).get(key)
            if isinstance(v, int) and not _rows(ws, env, f"SELECT 1 AS x FROM {table} WHERE id = {v}"):
                out.append(f"audit entry {e['id']} ({e['verb']}) names {key} {v}, which does not exist")

    def audited(verb: str, key: str | None = None, value: Any = None) -> bool:
        return any(e["verb"] == verb and e["outcome"] not in ("refused",)
                   and (key is None or (e["detail"] or {}).get(key) == value) for e in entries)

    for bid in set(now["batches"]) - set(before["batches"]):
        if not (audited("ingest", "batch", bid) or audited("golden-import", "batch", bid)):
            out.append(f"batch {bid} has no audit entry")
    for bid, path in now["batches"].items():
        if bid in before["batches"] and path != before["batches"][bid] and not audited("purge-data"):
            out.append(f"batch {bid}'s segment was rewritten without an audit entry")
    for v in now["versions"] - before["versions"]:
        if not audited("train", "version", v):
            out.append(f"version {v} has no audit entry")
    for rule in now["rules"] - before["rules"]:
        if not audited("purge-data", "rule", rule):
            out.append(f"purge rule {rule} has no audit entry")
    if now["deployment"] != before["deployment"] and not any(
            e["verb"] in ("rollback", "fallback", "canary step", "canary abort", "train") for e in entries):
        out.append(f"the deployment row changed without an audit entry: {before['deployment']} -> {now['deployment']}")

    for v in _rows(ws, env, "SELECT id, artifacts FROM model_versions"):
        for name, a in (v["artifacts"] or {}).items():
            p = Path(a["uri"])
            if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != a["sha256"]:
                out.append(f"v{v['id']} artifact {name}: missing or sha256 mismatch at {p}")

    keys = read_all_rows(ws, env)["example_id"].to_pylist()
    if len(keys) != len(set(keys)):
        out.append(f"{len(keys) - len(set(keys))} example key(s) read twice")
    return out


# -- one trial -----------------------------------------------------------------------------------

@dataclass
class Trial:
    op: str
    point: str
    killed: bool
    committed: bool  # the killed run had already committed its change (an audit entry of it exists)
    problems: list[str]


def _kill_at(cmd: list[str], ws: Path, env: dict[str, str], *, delay: float | None,
             event: Callable[[Path, dict], bool] | None, before: dict) -> bool:
    """Run ``cmd``; SIGKILL it after ``delay`` seconds or as soon as ``event`` holds. True if killed."""
    p = subprocess.Popen(cmd, cwd=ws, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + (delay if delay is not None else 300)
        while p.poll() is None and time.monotonic() < deadline:
            if event is not None and event(ws, before):
                break
            time.sleep(0.003 if event is not None else 0.01)
        if p.poll() is not None:
            return False
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
        return True
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def _rerun(args: list[str], ws: Path, env: dict[str, str]) -> tuple[int, str]:
    """The same command again; a trainer killed holding the lease keeps it until it lapses (exit 5,
    documented): wait for that once."""
    r = run_bin(args, cwd=ws, env=env, timeout=300)
    if r.code == 5 and "lease" in r.stderr:
        time.sleep(LEASE_TTL + 0.5)
        r = run_bin(args, cwd=ws, env=env, timeout=300)
    return r.code, r.stdout[-600:] + r.stderr[-600:]


def _plan(prepared: Prepared) -> list[tuple[Op, int, str, float | None]]:
    """(operation, trial number, kill point, delay): odd trials of an operation with file events kill
    at one (in turn), the others after a delay drawn from a seeded RNG within its measured duration."""
    rng = random.Random(SEED)
    plan = []
    for op in OPS:
        events = list(op.events)
        for n in range(op.trials):
            if events and n % 2 == 1:
                plan.append((op, n, events[(n // 2) % len(events)], None))
            else:
                delay = rng.uniform(0.05, prepared.duration[op.name])
                plan.append((op, n, f"after {delay:.2f}s", delay))
    return plan


def _trial(prepared: Prepared, op: Op, n: int, point: str, delay: float | None, base: Path) -> Trial:
    env = _env()
    ws = copy_workspace(prepared.ws, base / f"{op.name.replace(' ', '_')}-{n}")
    args = _args(op, prepared.data)
    before_files = {"segments": _segment_files(ws, "*.parquet"),
                    "objects": _files(ws / ".llctl" / "artifacts", "objects/*/*"),
                    "purged_segment": _rows(ws, env, "SELECT segment_path FROM batches WHERE id = 2")[0]["segment_path"]}
    before = _state(ws, env)
    event = op.events[point] if delay is None else None
    killed = _kill_at([llctl_bin(), *args], ws, env, delay=delay, event=event, before=before_files)
    committed = _state(ws, env)["audit_max"] > before["audit_max"]
    problems = [f"after the kill: {p}" for p in _problems(ws, env, before)]
    code, tail = _rerun(args, ws, env)
    if code != 0:
        problems.append(f"re-run exited {code}: {tail}")
    else:
        problems += [f"after the re-run: {p}" for p in _problems(ws, env, before)]
        got, want = _fingerprint(ws, env), prepared.expected[op.name]
        for k in want:
            if got[k] != want[k]:
                g, w = got[k], want[k]
                if k == "keys":
                    g, w = f"{len(g)} keys ({len(set(g) - set(w))} extra)", f"{len(w)} ({len(set(w) - set(g))} lost)"
                problems.append(f"after the re-run: {k} {g} != uninterrupted run's {w}")
    return Trial(op.name, point, killed, committed, problems)


def test_kill_9_at_random_points_and_file_events_leaves_a_consistent_store(prepared, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    started = time.monotonic()
    plan = _plan(prepared)
    with ThreadPoolExecutor(WORKERS) as pool:  # two trials at a time, each in its own workspace copy
        trials = list(pool.map(lambda p: _trial(prepared, *p, tmp_path), plan))
    elapsed = time.monotonic() - started
    bad = [t for t in trials if t.problems]
    print(f"\nkill -9 harness: {len(trials)} trials ({sum(t.killed for t in trials)} killed mid-run, "
          f"{sum(t.killed and t.committed for t in trials)} of them after their commit), {len(bad)} inconsistent "
          f"state(s), {elapsed:.0f}s of trials; uninterrupted durations "
          + ", ".join(f"{k} {v:.1f}s" for k, v in prepared.duration.items()))
    for t in trials:
        what = ("killed after commit" if t.committed else "killed before commit") if t.killed else "finished"
        print(f"  {t.op:18} {t.point:24} {what}" + ("" if not t.problems else "  INCONSISTENT: " + " | ".join(t.problems)))
    assert len(trials) >= 60
    assert sum(t.killed for t in trials) >= len(trials) // 2, "most trials must really kill the command mid-run"
    assert not bad, "\n".join(f"{t.op} killed {t.point}: {t.problems}" for t in bad)
