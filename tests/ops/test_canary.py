"""canary verbs: each acts on its own model's deployment row and prediction log; verbs racing each
other refuse (exit 5) naming what changed; every change of the deployment row is audited with its
reason and generation.

Versions here are rows without artifacts (nothing to verify, nothing served): the subject is the
state, not the model. The races are reproduced two ways: deterministically, by giving a verb the
row as it read it before another verb changed it (what a slow read meets on a busy store), and
for real, with threads on one store."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from lifelong_cli.errors import GenerationConflictError, PreconditionError
from lifelong_cli.ops import canary
from lifelong_cli.ops.audit import audit
from lifelong_cli.store import deployment, models, predictions, replicas, versions

FAST = {"canary.min_requests": "5", "canary.min_step_seconds": "0", "canary.min_labelled": "5"}


def _add_versions(ctx, n: int) -> None:
    with ctx.store.tx() as t:
        for _ in range(n):
            v = versions.add(t, ctx.model, parent_id=None, created_at=ctx.now(), created_by="tester", strategy="replay",
                             seq_from=None, seq_to=None, watermark=None, rows_trained=0, config_hash=None, lineage={},
                             metrics={}, artifacts={})
            versions.mark_pushed(t, ctx.model, v, now=ctx.now(), actor="tester", forced=False)


@pytest.fixture
def a(make_ctx):
    """The workspace's model: v1 stable (first launch), v2 pushed."""
    ctx = make_ctx(overrides=dict(FAST))
    _add_versions(ctx, 2)
    canary.start(ctx, version=1)
    return ctx


@pytest.fixture
def b(a, make_ctx):
    """A second model in the same store, in the same state as ``a``."""
    with a.store.tx() as t:
        models.add(t, name="other", actor="tester", now=a.now(), data_prefix="other")
    ctx = make_ctx(overrides={**FAST, "model.name": "other"})
    _add_versions(ctx, 2)
    canary.start(ctx, version=1)
    return ctx


def _dep(ctx):
    with ctx.store.tx(write=False) as t:
        return deployment.get(t, ctx.model)


def _traffic(ctx, n: int = 20, *, canary_ok: bool = True) -> None:
    """``n`` answered requests on each arm of the running canary, logged as a replica logs them."""
    dep = _dep(ctx)
    now = datetime.now(UTC)

    def rec(i, variant, version, ok):
        return {"ts": now, "request_id": f"{ctx.model}-{variant}-{i}-{now.timestamp()}", "replica": "r1",
                "version": version, "variant": variant, "n_rows": 1, "keys": [f"k{i}"], "output": ["1"] if ok else None,
                "latency_ms": 1.0 + (i % 3) * 0.1, "ok": ok, "error": None if ok else "boom",
                "shadow": ["1"] if variant == "canary" else None}

    rows = [rec(i, "stable", dep["stable_version"], True) for i in range(n)]
    rows += [rec(i, "canary", dep["canary_version"], canary_ok) for i in range(n)]
    with ctx.store.tx() as t:
        predictions.add(t, ctx.model, predictions=rows)


def _stale(monkeypatch, seen_by_verb: dict):
    """The next canary verb reads the deployment row as it was in ``seen_by_verb`` (taken earlier)."""
    real = canary._read
    calls = {"n": 0}

    def read(ctx):
        calls["n"] += 1
        dep, state = real(ctx)
        return (seen_by_verb, state) if calls["n"] == 1 else (dep, state)

    monkeypatch.setattr(canary, "_read", read)


def _generations(ctx) -> list[int]:
    return sorted(e["detail"]["generation"] for e in audit(ctx).entries
                  if e["outcome"] != "refused" and "generation" in (e["detail"] or {}) and e.get("model") == ctx.model)


# -- scoped to the model -----------------------------------------------------------------------

def test_a_canary_of_one_model_leaves_the_other_model_alone(a, b):
    before = _dep(b)
    r = canary.start(a, version=2, reason="launch a")
    assert r.model == a.model and r.message.startswith(f"model '{a.model}': canary v2 started")
    assert (_dep(a)["canary_version"], _dep(b)) == (2, before)
    assert canary.status(b).message == "model 'other': no canary running (last: promoted); stable v1"
    canary.abort(a, reason="done")
    assert _dep(b) == before


def test_canary_analysis_reads_only_its_model_s_predictions(a, b):
    canary.start(a, version=2)
    canary.start(b, version=2)
    _traffic(b, 30)  # same version numbers, same arms: only b's rows
    assert canary.status(a).analysis["requests"] == {"stable": 0, "canary": 0, "stable_total": 0, "canary_total": 0}
    assert canary.status(b).analysis["requests"]["canary"] == 30
    r = canary.step(b)
    assert (r.changed, r.share) == (True, 0.25)
    assert canary.step(a).state == "holding" and _dep(a)["canary_share"] == 0.05


def test_replicas_are_reported_and_confirmed_per_model(a, b):
    now = datetime.now(UTC)
    with a.store.tx() as t:
        for ctx, gen in ((a, _dep(a)["generation"]), (b, 0)):
            replicas.report(t, ctx.model, id="host:1@http://x", url="http://x", host="host", pid=1, started_at=now,
                            heartbeat_at=now, status="serving", generation=gen, stable_version=1, canary_version=None,
                            fallback_mode=False, detail={})
    with a.store.tx(write=False) as t:
        assert [(r["id"], r["model"]) for r in replicas.live(t, b.model, now=now, ttl_seconds=60)] == \
            [("host:1@http://x", "other")]
    # the same process serves both models; a's row is current, b's lags: a's wait does not see b's
    confirm = replicas.wait_for(a, _dep(a)["generation"])
    assert (confirm["replicas"], confirm["unconfirmed"]) == (1, [])


def test_feedback_export_is_per_model(a, b, tmp_path):
    from lifelong_cli.errors import NotFoundError
    from lifelong_cli.ops.feedback import export

    now = datetime.now(UTC)
    with a.store.tx() as t:
        predictions.add(t, b.model, predictions=[{"ts": now, "request_id": "r1", "replica": "x", "version": 1,
                                                  "variant": "stable", "n_rows": 1, "keys": ["k1"], "output": ["1"],
                                                  "latency_ms": 1.0, "ok": True}],
                        feedback=[{"ts": now, "request_id": "r1", "row_index": 0, "label": "0", "replica": "x"}])
    with pytest.raises(NotFoundError, match=f"model '{a.model}': no feedback"):
        export(a, out=str(tmp_path / "a.csv"))
    r = export(b, out=str(tmp_path / "b.csv"))
    assert (r.model, r.rows) == ("other", 1) and r.message.startswith("model 'other': 1 feedback row")


# -- races: a verb acting on a row that changed since it read it --------------------------------

def test_promote_after_a_concurrent_abort_exits_5_naming_the_abort(a, make_ctx, monkeypatch):
    canary.start(a, version=2)
    seen = _dep(a)
    canary.abort(make_ctx(actor="bob"), reason="bob aborts")
    _stale(monkeypatch, seen)
    with pytest.raises(PreconditionError) as ei:
        canary.promote(a, reason="alice promotes")
    assert ei.value.exit_code == 5 and not isinstance(ei.value, GenerationConflictError)
    assert "canary v2 was aborted" in ei.value.message and "by bob" in ei.value.message, ei.value.message
    dep = _dep(a)
    assert (dep["stable_version"], dep["canary_version"], dep["canary_state"]) == (1, None, "aborted")
    (entry,) = audit(a, verb="canary promote").entries
    assert (entry["outcome"], entry["reason"]) == ("refused", "alice promotes")


def test_abort_after_a_concurrent_promote_exits_5_and_leaves_the_promotion(a, monkeypatch):
    canary.start(a, version=2)
    seen = _dep(a)
    canary.promote(a, reason="promoted first")
    _stale(monkeypatch, seen)
    with pytest.raises(PreconditionError) as ei:
        canary.abort(a, reason="too late")
    assert "canary v2 was promoted: v2 is stable" in ei.value.message and "rollback --to 1" in ei.value.hint
    dep = _dep(a)
    assert (dep["stable_version"], dep["canary_version"], dep["canary_state"]) == (2, None, "promoted")


def test_abort_racing_another_abort_is_a_no_op(a, monkeypatch):
    canary.start(a, version=2)
    seen = _dep(a)
    canary.abort(a, reason="first")
    gen = _dep(a)["generation"]
    _stale(monkeypatch, seen)
    r = canary.abort(a, reason="second")
    assert (r.changed, _dep(a)["generation"]) == (False, gen)
    assert "already aborted" in r.message
    assert [e["outcome"] for e in audit(a, verb="canary abort").entries] == ["ok", "noop"]


def test_step_after_a_concurrent_step_exits_5_naming_the_new_share(a, monkeypatch):
    canary.start(a, version=2)
    _traffic(a)
    seen = _dep(a)
    assert canary.step(a).share == 0.25
    _stale(monkeypatch, seen)
    with pytest.raises(PreconditionError) as ei:
        canary.step(a, reason="me too")
    assert "canary v2 moved from 5% to 25%" in ei.value.message, ei.value.message
    assert _dep(a)["canary_share"] == 0.25


def test_an_automatic_abort_refuses_when_the_canary_moved_meanwhile(a, monkeypatch):
    canary.start(a, version=2)
    _traffic(a, canary_ok=False)
    assert canary.step(a).state == "suspect"
    seen = _dep(a)
    with a.store.tx() as t:  # someone else starts the step over (a new share) while this step analyses
        deployment.update_locked(t, a.model, actor="bob", now=a.now(), canary_step=1, canary_share=0.25,
                                 canary_state="running")
    _stale(monkeypatch, seen)
    with pytest.raises(PreconditionError, match="moved from 5% to 25%"):
        canary.step(a)
    assert _dep(a)["canary_version"] == 2


def test_promote_and_abort_in_threads_never_fail_with_an_internal_error(a, make_ctx):
    """Real concurrency: each round, promote and abort the same canary at once. One wins; the other
    exits 5 or is a no-op — never an internal error — and the audit log accounts for every generation."""
    outcomes = []
    for v in range(2, 7):
        if v > 2:
            _add_versions(a, 1)
        canary.start(a, version=v)
        ctxs = [make_ctx(actor=f"{who}{v}", overrides=dict(FAST)) for who in ("p", "a")]
        barrier = threading.Barrier(2)
        got: dict[str, object] = {}

        def run(name, fn, c, barrier=barrier, got=got, v=v):
            barrier.wait()
            try:
                got[name] = fn(c, reason=f"{name} {v}")
            except Exception as exc:  # recorded and judged below
                got[name] = exc

        threads = [threading.Thread(target=run, args=("promote", canary.promote, ctxs[0])),
                   threading.Thread(target=run, args=("abort", canary.abort, ctxs[1]))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for name, res in got.items():
            assert isinstance(res, canary.CanaryResult | PreconditionError), (name, repr(res))
        outcomes.append(tuple(type(got[k]).__name__ for k in ("promote", "abort")))
        if _dep(a)["canary_version"] is not None:  # both refused is impossible: one always wins
            pytest.fail(f"round {v}: the canary is still running after {got}")
    gen = _dep(a)["generation"]
    assert _generations(a) == list(range(1, gen + 1)), outcomes


# -- every change audited, with its reason ------------------------------------------------------

def test_a_holding_step_is_audited_with_its_reason_and_generation(a):
    canary.start(a, version=2)
    r = canary.step(a, reason="checking in")
    assert r.state == "holding" and not r.changed
    (entry,) = [e for e in audit(a, verb="canary step").entries]
    assert (entry["outcome"], entry["reason"]) == ("holding", "checking in")
    assert entry["detail"]["generation"] == _dep(a)["generation"]
    canary.step(a)  # still holding: nothing new to record, the row is not touched
    assert len(audit(a, verb="canary step").entries) == 1


def test_suspect_and_automatic_abort_keep_the_reason(a):
    canary.start(a, version=2)
    _traffic(a, canary_ok=False)
    assert canary.step(a, reason="cron").state == "suspect"
    r = canary.step(a, reason="cron")
    assert (r.state, r.exit_code) == ("aborted", 3)
    steps = audit(a, verb="canary step").entries
    (abort,) = audit(a, verb="canary abort").entries
    assert [(e["outcome"], e["reason"]) for e in steps] == [("suspect", "cron")]
    assert abort["reason"].startswith("automatic: canary analysis failed twice") and abort["reason"].endswith("; cron")
    with a.store.tx(write=False) as t:
        assert versions.get(t, a.model, 2)["demoted_at"] is not None


def test_every_generation_of_a_canary_has_its_audit_entry(a):
    canary.start(a, version=2)
    canary.step(a)  # holding
    for _ in range(3):
        _traffic(a)  # each step is judged on its own window
        canary.step(a)  # 25, 50, 100
    _traffic(a)
    canary.step(a)  # complete
    canary.promote(a, reason="all green")
    gen = _dep(a)["generation"]
    assert _generations(a) == list(range(1, gen + 1))
    outcomes = [e["outcome"] for e in audit(a, verb="canary step").entries]
    assert outcomes == ["holding", "ok", "ok", "ok", "complete"]
