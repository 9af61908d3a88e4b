"""metrics: every model's state from a real store (SQLite, and PostgreSQL when configured) as Prometheus
metrics, after the real ops changed it; the textfile; `llctl serve`'s /metrics showing the same state."""

from __future__ import annotations

import os
import stat

import pyarrow.csv as pcsv
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lifelong_cli.context import AppContext
from lifelong_cli.data.synthetic import batch_table
from lifelong_cli.errors import ModelNotFoundError, UsageError
from lifelong_cli.ops.check import relax
from lifelong_cli.ops.fallback import fallback
from lifelong_cli.ops.incident import open_incident
from lifelong_cli.ops.ingest import ingest
from lifelong_cli.ops.init import init
from lifelong_cli.ops.metrics import metrics
from lifelong_cli.ops.resume import resume
from lifelong_cli.ops.rollback import rollback
from lifelong_cli.ops.stop_training import stop_training
from lifelong_cli.ops.train import train
from lifelong_cli.ops.validate import validate
from lifelong_cli.serving.metrics import StateCollector
from lifelong_cli.store import control, deployment, versions
from lifelong_cli.store.db import Store
from tests.helpers import run_cli


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) → value, from Prometheus text."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


def scrape(ctx: AppContext) -> str:
    r = metrics(ctx)
    assert r.mode == "stdout" and r.text
    return r.text


def test_a_new_model_exports_its_state_the_config_thresholds_and_the_process(make_ctx):
    ctx = make_ctx(overrides={"slo.max_fallback_minutes": "30", "slo.golden_floor": '{"accuracy": 0.7}'})
    text = scrape(ctx)
    m = ctx.model
    assert value(text, "llctl_model_info", model=m) == 1
    assert value(text, "llctl_stable_version", model=m) == 0
    assert value(text, "llctl_fallback_active", model=m) == 0
    assert value(text, "llctl_training_stopped", model=m) == 0
    assert value(text, "llctl_versions_trained_total", model=m) == 0
    assert value(text, "llctl_slo_max_fallback_seconds", model=m) == 1800
    assert value(text, "llctl_slo_golden_floor", model=m, metric="accuracy", higher_is_better="true") == 0.7
    assert value(text, "llctl_store_up") == 1
    # no value is written as a fake 0 for what has no value: the series is absent
    assert not [k for k in samples(text) if k[0] == "llctl_fallback_since_timestamp_seconds"]
    assert value(text, "process_start_time_seconds") is not None


def test_stop_resume_incident_and_relax_show_in_gauges_and_counters(make_ctx):
    ctx = make_ctx()
    m = ctx.model
    stop_training(ctx, reason="bad upstream")
    stop_training(ctx, reason="again")  # a no-op: not counted
    with ctx.store.tx(write=False) as t:
        stopped_at = control.get(t, m).stopped_at
    open_incident(ctx, title="labels flipped", severity="sev2")
    relax(ctx, policy="stopped", hours=2, reason="holiday")
    text = scrape(ctx)
    assert value(text, "llctl_training_stopped", model=m) == 1
    assert value(text, "llctl_training_stopped_since_timestamp_seconds", model=m) == pytest.approx(stopped_at.timestamp())
    assert value(text, "llctl_training_stops_total", model=m) == 1
    assert value(text, "llctl_audit_entries_total", model=m, verb="stop-training", outcome="noop") == 1
    assert value(text, "llctl_incidents_open", model=m) == 1
    assert value(text, "llctl_incidents_opened_total", model=m) == 1
    until = value(text, "llctl_slo_relaxed_until_timestamp_seconds", model=m, policy="stopped")
    assert until == pytest.approx(ctx.now().timestamp() + 7200, abs=60)

    resume(ctx, reason="fixed")
    text = scrape(ctx)
    assert value(text, "llctl_training_stopped", model=m) == 0
    assert value(text, "llctl_training_stopped_since_timestamp_seconds", model=m) is None
    assert value(text, "llctl_training_stops_total", model=m) == 1  # a counter never goes back


@pytest.mark.slow  # trains a model
def test_a_trained_version_made_stable_then_fallback_and_rollback(make_ctx, tmp_path):
    ctx = make_ctx(overrides={"training.epochs": "1"})
    m = ctx.model
    p = tmp_path / "b1.csv"
    pcsv.write_csv(batch_table(0, 600, day=1, seed=1), p)
    ingest(ctx, path=str(p))
    train(ctx)
    verdict = validate(ctx, version=1)
    with ctx.store.tx(write=False) as t:
        gates = versions.latest_validation(t, m, 1)["gates"]
        trained_at = versions.get(t, m, 1)["created_at"]
    golden = {g["name"][len("golden "):]: g["figure"] for g in gates if g["name"].startswith("golden ")}
    with ctx.store.tx() as t:  # stable even if v1 failed its golden floor (training quality is not under test)
        deployment.update_locked(t, m, actor="tester", now=ctx.now(), stable_version=1)
    fallback(ctx, on=True, strategy="majority", reason="drill")
    with ctx.store.tx(write=False) as t:
        dep = deployment.get(t, m)
    text = scrape(ctx)
    assert value(text, "llctl_stable_version", model=m) == 1
    assert value(text, "llctl_latest_version", model=m) == 1
    assert value(text, "llctl_versions_trained_total", model=m) == 1
    assert value(text, "llctl_stable_trained_timestamp_seconds", model=m) == pytest.approx(trained_at.timestamp())
    assert 0 <= value(text, "llctl_model_staleness_seconds", model=m) < 600
    assert value(text, "llctl_golden_metric", model=m, metric="accuracy") == pytest.approx(golden["accuracy"])
    assert value(text, "llctl_validations_total", model=m, verdict=verdict.verdict) == 1
    assert value(text, "llctl_batches_total", model=m, kind="examples", status="accepted") == 1
    assert value(text, "llctl_ingested_rows_total", model=m, kind="examples", outcome="read") == 600
    assert value(text, "llctl_fallback_active", model=m) == 1
    assert value(text, "llctl_fallback_since_timestamp_seconds", model=m) == pytest.approx(dep["fallback_since"].timestamp())
    assert value(text, "llctl_fallback_activations_total", model=m) == 1
    assert value(text, "llctl_state_generation", model=m) == dep["generation"]

    fallback(ctx, on=False, reason="drill over")
    rollback(ctx, to=1, reason="drill", force=True)  # forced: v1 may have failed its golden floor
    text = scrape(ctx)
    assert value(text, "llctl_fallback_active", model=m) == 0
    assert value(text, "llctl_fallback_since_timestamp_seconds", model=m) is None
    assert value(text, "llctl_fallback_activations_total", model=m) == 1
    assert value(text, "llctl_rollbacks_total", model=m) == 1


def test_a_running_canary_exports_its_version_weight_and_step_start(make_ctx):
    ctx = make_ctx()
    m = ctx.model
    with ctx.store.tx() as t:
        for _ in (1, 2):
            versions.add(t, m, parent_id=None, created_at=ctx.now(), created_by="t", strategy="naive", seq_from=None,
                         seq_to=None, watermark=None, rows_trained=0, config_hash=None, lineage={}, metrics={},
                         artifacts={})
        deployment.update_locked(t, m, actor="t", now=ctx.now(), stable_version=1, canary_version=2,
                                 canary_share=0.25, canary_state="running", canary_started_at=ctx.now(),
                                 canary_step_started_at=ctx.now())
    text = scrape(ctx)
    assert value(text, "llctl_canary_version", model=m) == 2
    assert value(text, "llctl_canary_weight", model=m) == 0.25
    assert value(text, "llctl_canary_step_started_timestamp_seconds", model=m) == pytest.approx(ctx.now().timestamp(), abs=60)


def test_every_model_by_default_or_only_those_named(make_ctx, workspace, store_url):
    ctx = make_ctx()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLCTL_")}
    if store_url:
        env["LLCTL_STORE__URL"] = store_url
    other = AppContext(cwd=workspace, env=env, actor="tester", overrides={"model.name": "other"})
    init(other, directory=str(workspace))
    other.close()
    stop_training(make_ctx(overrides={"model.name": "other"}), reason="only other")

    text = scrape(ctx)
    assert value(text, "llctl_training_stopped", model="other") == 1
    assert value(text, "llctl_training_stopped", model=ctx.model) == 0

    text = metrics(make_ctx(), models=["other"]).text
    assert value(text, "llctl_model_info", model="other") == 1
    assert value(text, "llctl_model_info", model=ctx.model) is None
    # the global --model flag also names one
    text = metrics(make_ctx(overrides={"model.name": ctx.model})).text
    assert value(text, "llctl_model_info", model="other") is None
    with pytest.raises(ModelNotFoundError):
        metrics(make_ctx(), models=["nosuch"])


def test_an_unreadable_store_is_reported_as_down_not_as_a_failed_scrape(tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    collector = StateCollector(Store(f"sqlite:///{tmp_path / 'not-a-store.db'}"))  # no llctl tables in it
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert value(text, "llctl_store_up") == 0
    assert "llctl_stable_version" not in text
    assert collector.last_error and "no such table" in collector.last_error


def test_the_textfile_is_written_whole_readable_by_others_and_without_process_metrics(make_ctx, tmp_path):
    ctx = make_ctx()
    path = tmp_path / "textfiles" / "llctl.prom"
    r = metrics(ctx, textfile=str(path), once=True)
    assert r.writes == 1 and r.textfile == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["llctl.prom"]  # no temp file left behind
    text = path.read_text()
    assert value(text, "llctl_model_info", model=ctx.model) == 1
    assert not [k for k in samples(text) if k[0].startswith("process_")]


@pytest.mark.parametrize("kwargs, needle", [
    ({"listen": ":9108", "textfile": "x.prom"}, "not both"),
    ({"listen": ":9108", "once": True}, "--once"),
    ({"textfile": "x.txt"}, "*.prom"),
    ({"listen": "nope"}, "HOST:PORT"),
    ({"textfile": "x.prom", "interval": 0.1}, "--interval"),
])
def test_bad_flags_are_usage_errors(make_ctx, kwargs, needle):
    with pytest.raises(UsageError) as ei:
        metrics(make_ctx(), **kwargs)
    assert needle in ei.value.message


def test_cli_prints_the_metrics_and_refuses_an_unknown_model(workspace, cli_env):
    r = run_cli(["metrics"], cwd=workspace, env=cli_env)
    assert r.code == 0 and value(r.stdout, "llctl_store_up") == 1, r.stderr
    r = run_cli(["metrics", "--model", "nosuch"], cwd=workspace, env=cli_env)
    assert r.code == 6 and r.stdout == "" and r.stderr.startswith("error: model(s) nosuch not in the state store")


def test_serve_metrics_show_the_same_state_and_counters_are_counters(make_ctx):
    import asyncio

    import httpx

    from lifelong_cli.serving.app import build_app
    from lifelong_cli.serving.runtime import Replica

    ctx = make_ctx()
    stop_training(ctx, reason="drill")
    replica = Replica(make_ctx(), None)
    replica.start()

    async def get() -> str:
        transport = httpx.ASGITransport(app=build_app([replica], started=True))
        async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
            return (await client.get("/metrics")).text

    try:
        text = asyncio.run(get())
    finally:
        replica.stop()
    m = ctx.model
    assert value(text, "llctl_training_stopped", model=m) == 1
    assert value(text, "llctl_store_up") == 1
    assert value(text, "process_start_time_seconds") is not None
    types = {fam.name: fam.type for fam in text_string_to_metric_families(text)}
    assert types["llctl_model_swaps"] == types["llctl_prediction_log_written"] == "counter"
    assert types["llctl_prediction_log_dropped"] == "counter"
    assert value(text, "llctl_prediction_log_dropped_total", model=m) == 0
    # the state gauges come from the one definition `llctl metrics` uses
    exporter = {fam.name for fam in text_string_to_metric_families(scrape(make_ctx())) if fam.name.startswith("llctl_")}
    served = {fam.name for fam in text_string_to_metric_families(text)}
    assert exporter <= served



def test_held_batches_are_a_gauge_that_falls_when_a_hold_ends(make_ctx, tmp_path):
    from lifelong_cli.ops.holds import data_release

    ctx = make_ctx()
    m = ctx.model
    keys = [f"k{i}" for i in range(200)]
    ex = tmp_path / "e.csv"
    ex.write_text("example_id,event_time,label,x1,x2,x3,segment\n"
                  + "".join(f"{k},2026-11-01T00:00:00Z,0,0.1,0.2,,a\n" for k in keys))
    relabel = tmp_path / "l.csv"
    relabel.write_text("example_id,label\n" + "".join(f"{k},1\n" for k in keys))
    ingest(ctx, path=str(ex))
    held = ingest(ctx, path=str(relabel), kind="labels")
    assert held.status == "held"
    assert value(scrape(ctx), "llctl_batches_held", model=m) == 1
    data_release(ctx, batch=held.batch, reason="confirmed")
    text = scrape(ctx)
    assert value(text, "llctl_batches_held", model=m) == 0
    assert value(text, "llctl_batches_total", model=m, kind="labels", status="accepted") == 1
