"""Two models on one store: many processes mixing emergency verbs on both leave each model's state
equal to the replay of its own audit entries, and nothing done to one model changes the other."""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from pathlib import Path

import pytest

from lifelong_cli.context import AppContext
from lifelong_cli.errors import PreconditionError
from lifelong_cli.ops import canary
from lifelong_cli.ops.fallback import fallback
from lifelong_cli.ops.init import init
from lifelong_cli.ops.resume import resume
from lifelong_cli.ops.rollback import rollback
from lifelong_cli.ops.stop_training import stop_training
from lifelong_cli.store import control, deployment

MODELS = ("demo", "other")
VERBS = ("stop-training", "resume", "fallback", "rollback", "canary start", "canary promote", "canary abort")
PROCS = 16


def _act(ctx: AppContext, rng: random.Random, n: int, i: int) -> str:
    verb = rng.choice(VERBS)
    why = f"w{n} r{i}"
    if verb == "stop-training":
        stop_training(ctx, reason=why)
    elif verb == "resume":
        resume(ctx, reason=why)
    elif verb == "fallback":
        fallback(ctx, on=rng.random() < 0.5, strategy=f"version:{rng.choice((1, 2))}", reason=why)
    elif verb == "rollback":
        rollback(ctx, to=rng.choice((1, 2)), serving_only=rng.random() < 0.5, reason=why)
    elif verb == "canary start":
        canary.start(ctx, version=rng.choice((1, 2)), reason=why)
    elif verb == "canary promote":
        canary.promote(ctx, force=True, reason=why)
    else:
        canary.abort(ctx, reason=why)
    return verb


def _worker(ws: str, env: dict[str, str], n: int, seconds: float, q) -> None:
    rng = random.Random(n)
    ctxs = {m: AppContext(cwd=Path(ws), env=env, actor=f"worker-{n}", overrides={"model.name": m}) for m in MODELS}
    done = {m: 0 for m in MODELS}
    refused = {m: 0 for m in MODELS}
    sent: dict[str, list[str]] = {m: [] for m in MODELS}
    try:
        end, i = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            m = rng.choice(MODELS)
            sent[m].append(f"w{n} r{i}")
            try:
                _act(ctxs[m], rng, n, i)
                done[m] += 1
            except PreconditionError:  # exit 5: stopped, nothing to promote, a canary already running …
                refused[m] += 1
            i += 1
        q.put((n, done, None, refused, sent))
    except Exception as exc:  # reported to the parent, which fails the test
        q.put((n, done, repr(exc), refused, sent))
    finally:
        for c in ctxs.values():
            c.close()


def _add_versions(ctx: AppContext) -> None:
    with ctx.store.tx() as t:
        for v in (1, 2):
            t.execute("INSERT INTO model_versions (model, id, created_at, created_by, rows_trained, lineage, metrics, "
                      "artifacts, pushed_at) VALUES (:m, :v, :at, 'test', 0, :e, :e, :e, :at)",
                      {"m": ctx.model, "v": v, "at": ctx.now(), "e": {}})


def _replay(entries: list[dict]) -> dict:
    state = {"stopped": False, "fallback_mode": False, "fallback_strategy": None, "stable_version": None,
             "training_head": None, "canary_version": None}
    for e in entries:
        if e["outcome"] != "ok":
            continue
        a, d = e["args"], e["detail"]
        if e["verb"] == "stop-training":
            state["stopped"] = True
        elif e["verb"] == "resume":
            state["stopped"] = False
        elif e["verb"] == "fallback":
            state["fallback_mode"] = a["on"]
            state["fallback_strategy"] = a["strategy"] if a["on"] else None
        elif e["verb"] == "rollback":
            # the change was computed from the locked row: it names the version it really replaced
            assert d["previous_stable"] == state["stable_version"], e
            state["stable_version"], state["canary_version"] = d["target"], None
            if not a["serving_only"]:
                state["training_head"] = d["target"]
        elif e["verb"] == "canary start":
            state["stable_version" if d["first_launch"] else "canary_version"] = d["version"]
        elif e["verb"] == "canary promote":
            assert d["previous_stable"] == state["stable_version"] and d["version"] == state["canary_version"], e
            state["stable_version"], state["canary_version"] = d["version"], None
        elif e["verb"] == "canary abort":
            assert d["version"] == state["canary_version"], e
            state["canary_version"] = None
    return state


@pytest.mark.slow
def test_two_models_under_sixteen_processes_each_equal_the_replay_of_their_own_audit(workspace, cli_env, backend):
    env = dict(cli_env)
    env.pop("LLCTL_ACTOR", None)
    ctxs = {m: AppContext(cwd=workspace, env=env, actor="setup", overrides={"model.name": m}) for m in MODELS}
    init(ctxs["other"], directory=str(workspace))
    for c in ctxs.values():
        _add_versions(c)
    seconds = 30.0 if backend == "postgres" else 15.0
    mpc = mp.get_context("spawn")
    q = mpc.Queue()
    procs = [mpc.Process(target=_worker, args=(str(workspace), env, n, seconds, q)) for n in range(PROCS)]
    for p in procs:
        p.start()
    results = [q.get(timeout=seconds + 240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert not [r for r in results if r[2]], [r for r in results if r[2]]
    calls = {m: sum(r[1][m] for r in results) for m in MODELS}
    refusals = {m: sum(r[3][m] for r in results) for m in MODELS}
    reasons = {m: {x for r in results for x in r[4][m]} for m in MODELS}
    assert all(calls[m] > 20 for m in MODELS), calls

    from lifelong_cli.store import audit

    for m, ctx in ctxs.items():
        with ctx.store.tx(write=False) as t:
            entries = [e for e in audit.query(t, model=m) if e["verb"] in VERBS]
            dep = deployment.get(t, m)
            ctl = control.get(t, m)
        # every call on this model, and none on the other, is in this model's audit log
        assert all(e["model"] == m for e in entries)
        # (a canary verb that finds nothing to do returns without an entry; every other call leaves one)
        assert len([e for e in entries if e["outcome"] != "refused"]) <= calls[m]
        assert len([e for e in entries if not e["verb"].startswith("canary")]) >= calls[m] // 2
        # each entry was made by a command sent to this model, and carries its reason
        assert {e["reason"] for e in entries} <= reasons[m], m
        state = _replay(entries)
        assert state == {"stopped": ctl.stopped, "fallback_mode": dep["fallback_mode"],
                         "fallback_strategy": dep["fallback_strategy"], "stable_version": dep["stable_version"],
                         "training_head": dep["training_head"], "canary_version": dep["canary_version"]}, m
        generations = sorted(e["detail"]["generation"] for e in entries if e["detail"].get("generation"))
        assert generations == list(range(1, dep["generation"] + 1)), m  # gap-free, every bump audited
        print(f"isolation[{backend}] model {m}: {calls[m]} commands done, {refusals[m]} refused (exit 5), "
              f"{len(entries)} audit entries, "
              f"generation {dep['generation']} gap-free")
    for c in ctxs.values():
        c.close()
