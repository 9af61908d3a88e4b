"""The state of every model as Prometheus metrics, read from the store at scrape time: one definition
for `llctl metrics` (an exporter and a node-exporter textfile, for machines that do not serve) and
for `llctl serve`'s ``/metrics``.

Gauges carry the label ``model``: what serves (stable and canary version, canary weight, fallback and
since when), training (stopped and since when, running, head, newest version, when it was trained),
data (newest ingest and event time), the stable version's golden figures, the SLO thresholds of the
config (so that alert rules compare against what `llctl check` uses) and live replicas. Counters are
counts of rows the store never deletes (versions, verdicts, batches and their rows, audited actions,
incidents), so they only grow. A point in time is a ``*_timestamp_seconds`` gauge (Unix seconds):
alert on ``time() - metric`` — that stays right in a textfile written a minute ago. A gauge that has
no value (no canary running, fallback off) is left out rather than written as 0.

Reading costs a fixed number of queries whatever the number of models (one per table, plus one per
model for the stable version's verdict). When the store cannot be read, ``llctl_store_up`` is 0 and
the state is left out: a scrape never fails because the database is down."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lifelong_cli.errors import LlctlError

HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "mae": False, "rmse": False}
# Audited verbs counted on their own (outcome "ok": the action changed something).
ACTION_COUNTERS = {
    "rollback": ("llctl_rollbacks", "Rollbacks of serving (`llctl rollback`, by hand or by a playbook)"),
    "canary abort": ("llctl_canary_aborts", "Canaries aborted (by hand or by a failed analysis)"),
    "canary promote": ("llctl_canary_promotions", "Canaries promoted to stable"),
    "canary start": ("llctl_canary_starts", "Canaries started"),
    "stop-training": ("llctl_training_stops", "Times training was stopped (`llctl stop-training`)"),
    "push": ("llctl_pushes", "Versions pushed to serving"),
}
GOLDEN_DOC = "The stable version's golden-set figure from its latest validation (accuracy, macro_f1, mae, rmse)"
RELAXED_DOC = "An SLO policy relaxed (`llctl check --relax`) until this time"
BATCHES_DOC = "Batches ingested, by kind and status (accepted, rejected, ...)"
ROWS_DOC = "Rows of ingested batches: read, accepted, quarantined (bad), duplicate"
VALIDATIONS_DOC = "Validation verdicts recorded, by verdict (passed, rejected)"
AUDIT_DOC = "Audit log entries, by verb and outcome (ok, noop, refused, ...)"


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


@dataclass
class Snapshot:
    """What one scrape read: plain values, metric families are built from it (and tests read it)."""

    now: datetime
    models: list[str]
    deployment: dict[str, dict[str, Any]] = field(default_factory=dict)
    control: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    golden: dict[str, dict[str, float]] = field(default_factory=dict)
    batches: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    fallback_activations: dict[str, int] = field(default_factory=dict)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    purge_rules: list[dict[str, Any]] = field(default_factory=list)
    replicas: dict[str, dict[str, Any]] = field(default_factory=dict)
    relaxed: list[dict[str, Any]] = field(default_factory=list)


def read_snapshot(store: Any, *, models: Sequence[str] | None, now: datetime, replica_ttl_seconds: float) -> Snapshot:
    """Everything the metrics show, in one read transaction. ``models``: those models (None: every
    model in the store)."""
    from lifelong_cli.store import (
        audit,
        batches,
        control,
        deployment,
        incidents,
        purge_rules,
        replicas,
        slo,
        versions,
    )
    from lifelong_cli.store import models as store_models

    with store.tx(write=False) as t:
        present = store_models.names(t)
        wanted = present if models is None else [m for m in models if m in present]
        snap = Snapshot(now=now, models=wanted)
        keep = set(wanted)
        snap.deployment = {r["model"]: r for r in deployment.every(t) if r["model"] in keep}
        snap.control = {m: c for m, c in control.every(t).items() if m in keep}
        snap.versions = {m: v for m, v in versions.totals_by_model(t).items() if m in keep}
        snap.verdicts = [r for r in versions.verdict_counts(t) if r["model"] in keep]
        for m, dep in snap.deployment.items():
            if dep["stable_version"] is None:
                continue
            validation = versions.latest_validation(t, m, dep["stable_version"])
            snap.golden[m] = {g["name"][len("golden "):]: float(g["figure"]) for g in ((validation or {}).get("gates") or [])
                              if str(g.get("name", "")).startswith("golden ") and isinstance(g.get("figure"), int | float)}
        snap.batches = [r for r in batches.totals_by_model(t) if r["model"] in keep]
        snap.audit = [r for r in audit.counts(t) if r["model"] in keep]
        snap.fallback_activations = {m: n for m, n in audit.fallback_activations(t).items() if m in keep}
        snap.incidents = [r for r in incidents.counts(t) if r["model"] in keep or r["model"] is None]
        snap.purge_rules = [r for r in purge_rules.counts(t) if r["model"] in keep]
        snap.replicas = {m: r for m, r in replicas.live_by_model(t, now=now, ttl_seconds=replica_ttl_seconds).items()
                         if m in keep}
        snap.relaxed = [r for r in slo.relaxed_all(t, now=now) if r["model"] in keep]
    return snap


class _Families:
    """Metric families by name, created on first use, each sample added with its labels."""

    def __init__(self) -> None:
        self.families: dict[str, Any] = {}

    def _family(self, kind: str, name: str, doc: str, labels: Sequence[str]) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        fam = self.families.get(name)
        if fam is None:
            cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            fam = self.families[name] = cls(name, doc, labels=list(labels))
        return fam

    def gauge(self, name: str, doc: str, value: float | None, **labels: str) -> None:
        fam = self._family("gauge", name, doc, labels)
        if value is not None:
            fam.add_metric(list(labels.values()), float(value))

    def counter(self, name: str, doc: str, value: float | None, **labels: str) -> None:
        """``value`` None declares the family (with these label names) without a sample."""
        fam = self._family("counter", name, doc, labels)
        if value is not None:
            fam.add_metric(list(labels.values()), float(value))


def families(snap: Snapshot, *, slo: Any | None = None) -> list[Any]:
    """The metric families of a snapshot. ``slo``: the config's SloSettings, exported as thresholds."""
    f = _Families()
    now = snap.now
    for m in snap.models:
        dep = snap.deployment.get(m) or {}
        ctl = snap.control.get(m)
        ver = snap.versions.get(m) or {}
        f.gauge("llctl_model_info", "A model in the state store (always 1)", 1, model=m)
        f.gauge("llctl_stable_version", "The stable version serving answers with (0: none yet)",
                dep.get("stable_version") or 0, model=m)
        f.gauge("llctl_canary_version", "The canary version (0: no canary running)", dep.get("canary_version") or 0,
                model=m)
        running_canary = dep.get("canary_version") is not None
        f.gauge("llctl_canary_weight", "The share of traffic (0..1) the canary receives",
                (dep.get("canary_share") or 0.0) if running_canary else 0.0, model=m)
        f.gauge("llctl_canary_started_timestamp_seconds", "When the running canary started (absent: no canary)",
                _ts(dep.get("canary_started_at")) if running_canary else None, model=m)
        f.gauge("llctl_canary_step_started_timestamp_seconds",
                "When the running canary reached its current step (absent: no canary)",
                _ts(dep.get("canary_step_started_at")) if running_canary else None, model=m)
        fallback = bool(dep.get("fallback_mode"))
        f.gauge("llctl_fallback_active", "1 while serving answers from the fallback (`llctl fallback on`)",
                1 if fallback else 0, model=m)
        f.gauge("llctl_fallback_since_timestamp_seconds", "When the fallback was turned on (absent: fallback off)",
                _ts(dep.get("fallback_since")) if fallback else None, model=m)
        f.gauge("llctl_training_head_version", "The version the next `llctl train` continues from (0: none)",
                dep.get("training_head") or 0, model=m)
        f.gauge("llctl_state_generation",
                "The deployment row's generation in the store (every replica should apply it)",
                dep.get("generation") or 0, model=m)
        stopped = bool(ctl is not None and ctl.stopped)
        f.gauge("llctl_training_stopped", "1 while training is stopped (`llctl stop-training`; `llctl resume` lifts it)",
                1 if stopped else 0, model=m)
        f.gauge("llctl_training_stopped_since_timestamp_seconds", "When training was stopped (absent: not stopped)",
                _ts(ctl.stopped_at) if stopped and ctl is not None else None, model=m)
        f.gauge("llctl_training_running", "1 while a trainer holds a live training lease",
                1 if ctl is not None and ctl.lease_active(now) else 0, model=m)
        f.gauge("llctl_latest_version", "The newest version trained (0: none)", ver.get("latest") or 0, model=m)
        f.gauge("llctl_last_train_timestamp_seconds", "When the newest version was trained (absent: none yet)",
                _ts(ver.get("last_trained_at")), model=m)
        stable_at = ver.get("stable_trained_at")
        f.gauge("llctl_stable_trained_timestamp_seconds",
                "When the stable version was trained (absent: no stable version)", _ts(stable_at), model=m)
        f.gauge("llctl_model_staleness_seconds",
                "Age of the stable version when this was read (`llctl check`'s staleness; in alerts prefer "
                "time() - llctl_stable_trained_timestamp_seconds)",
                None if stable_at is None else (now - stable_at).total_seconds(), model=m)
        f.counter("llctl_versions_trained", "Versions trained", ver.get("versions") or 0, model=m)
        for metric, value in sorted((snap.golden.get(m) or {}).items()):
            f.gauge("llctl_golden_metric", GOLDEN_DOC, value, model=m, metric=metric)
        rep = snap.replicas.get(m) or {}
        f.gauge("llctl_replicas_live", "Serving replicas of the model that reported recently",
                rep.get("live") or 0, model=m)
        f.gauge("llctl_replicas_lowest_generation",
                "The lowest deployment generation a live replica has applied (absent: no live replica)",
                rep.get("lowest_generation"), model=m)
        f.counter("llctl_fallback_activations", "Times the fallback was turned on (or its strategy changed)",
                  snap.fallback_activations.get(m, 0), model=m)
        if slo is not None:
            f.gauge("llctl_slo_max_staleness_seconds", "slo.max_staleness_hours, in seconds",
                    slo.max_staleness_hours * 3600, model=m)
            f.gauge("llctl_slo_max_fallback_seconds", "slo.max_fallback_minutes, in seconds",
                    slo.max_fallback_minutes * 60, model=m)
            f.gauge("llctl_slo_max_canary_hold_seconds", "slo.max_canary_hold_minutes, in seconds",
                    slo.max_canary_hold_minutes * 60, model=m)
            f.gauge("llctl_slo_max_stopped_seconds", "slo.max_stopped_hours, in seconds",
                    slo.max_stopped_hours * 3600, model=m)
            for metric, floor in sorted(slo.golden_floor.items()):
                f.gauge("llctl_slo_golden_floor",
                        "slo.golden_floor: the lowest (accuracy, macro_f1) or highest (mae, rmse) golden figure allowed",
                        floor, model=m, metric=metric,
                        higher_is_better="true" if HIGHER_IS_BETTER.get(metric, True) else "false")
    for r in snap.relaxed:
        f.gauge("llctl_slo_relaxed_until_timestamp_seconds", RELAXED_DOC, _ts(r["until"]), model=r["model"],
                policy=r["policy"])
    # families whose samples depend on what happened: declared, so that their names are always there
    f.gauge("llctl_golden_metric", GOLDEN_DOC, None, model="", metric="")
    f.gauge("llctl_slo_relaxed_until_timestamp_seconds", RELAXED_DOC, None, model="", policy="")
    f.counter("llctl_batches", BATCHES_DOC, None, model="", kind="", status="")
    f.counter("llctl_ingested_rows", ROWS_DOC, None, model="", kind="", outcome="")
    f.counter("llctl_validations", VALIDATIONS_DOC, None, model="", verdict="")
    f.counter("llctl_audit_entries", AUDIT_DOC, None, model="", verb="", outcome="")
    _data_families(f, snap)
    _action_families(f, snap)
    return list(f.families.values())


def _data_families(f: _Families, snap: Snapshot) -> None:
    last_ingest: dict[str, datetime] = {}
    newest_event: dict[str, datetime] = {}
    rows: dict[tuple[str, str, str], int] = {}
    drifted: dict[str, int] = {}
    held: dict[str, int] = {}
    for r in snap.batches:
        m, kind = r["model"], r["kind"]
        if r["status"] == "held":  # a hold ends (released, rejected): a gauge, not a counter
            held[m] = held.get(m, 0) + int(r["n"])
            continue
        f.counter("llctl_batches", BATCHES_DOC, r["n"], model=m, kind=kind, status=r["status"])
        for outcome in ("read", "accepted", "quarantined", "duplicate"):
            rows[(m, kind, outcome)] = rows.get((m, kind, outcome), 0) + int(r[f"rows_{outcome}"] or 0)
        drifted[m] = drifted.get(m, 0) + int(r["drifted"] or 0)
        if r["status"] == "accepted":
            if r["last_at"] and (m not in last_ingest or r["last_at"] > last_ingest[m]):
                last_ingest[m] = r["last_at"]
            if r["newest"] and (m not in newest_event or r["newest"] > newest_event[m]):
                newest_event[m] = r["newest"]
    for (m, kind, outcome), n in sorted(rows.items()):
        f.counter("llctl_ingested_rows", ROWS_DOC, n, model=m, kind=kind, outcome=outcome)
    for m in snap.models:
        f.counter("llctl_batches_drifted", "Batches whose drift check found drift", drifted.get(m, 0), model=m)
        f.gauge("llctl_batches_held", "Batches on hold: stored, not trainable until `llctl data release` or `reject`",
                held.get(m, 0), model=m)
        f.gauge("llctl_last_ingest_timestamp_seconds", "When the newest accepted batch was ingested",
                _ts(last_ingest.get(m)), model=m)
        f.gauge("llctl_newest_event_timestamp_seconds", "The newest event time in an accepted batch",
                _ts(newest_event.get(m)), model=m)
    for r in snap.verdicts:
        f.counter("llctl_validations", VALIDATIONS_DOC, r["n"], model=r["model"], verdict=r["verdict"])
    active: dict[str, int] = {}
    created: dict[str, int] = {}
    for r in snap.purge_rules:
        created[r["model"]] = created.get(r["model"], 0) + int(r["n"])
        if r["active"]:
            active[r["model"]] = active.get(r["model"], 0) + int(r["n"])
    for m in snap.models:
        f.gauge("llctl_purge_rules_active", "Soft purge rules in force", active.get(m, 0), model=m)
        f.counter("llctl_purge_rules", "Purge rules created (soft and hard, undone or not)", created.get(m, 0), model=m)


def _action_families(f: _Families, snap: Snapshot) -> None:
    actions = {(m, verb): 0 for m in snap.models for verb in ACTION_COUNTERS}
    for r in snap.audit:
        f.counter("llctl_audit_entries", AUDIT_DOC, r["n"], model=r["model"], verb=r["verb"], outcome=r["outcome"])
        if r["verb"] in ACTION_COUNTERS and r["outcome"] == "ok":
            actions[(r["model"], r["verb"])] += int(r["n"])
    for (m, verb), n in sorted(actions.items()):
        name, doc = ACTION_COUNTERS[verb]
        f.counter(name, doc, n, model=m)
    opened: dict[str | None, int] = {}
    still_open: dict[str | None, int] = {}
    for r in snap.incidents:
        opened[r["model"]] = opened.get(r["model"], 0) + int(r["n"])
        if r["status"] == "open":
            still_open[r["model"]] = still_open.get(r["model"], 0) + int(r["n"])
    for m in snap.models:
        f.counter("llctl_incidents_opened", "Incidents opened for the model", opened.get(m, 0), model=m)
        f.gauge("llctl_incidents_open", "Incidents of the model open now", still_open.get(m, 0), model=m)
    f.counter("llctl_store_incidents_opened", "Store-wide incidents opened (of no single model)", opened.get(None, 0))
    f.gauge("llctl_store_incidents_open", "Store-wide incidents open now", still_open.get(None, 0))


class StateCollector:
    """A prometheus_client collector: the state of ``models`` (None: every model in the store) at
    each collection. ``slo``: the SloSettings whose thresholds to export."""

    def __init__(self, store: Any, *, models: Sequence[str] | None = None, slo: Any | None = None,
                 replica_ttl_seconds: float = 15.0, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.models = list(models) if models is not None else None
        self.slo = slo
        self.replica_ttl_seconds = replica_ttl_seconds
        self.clock = clock or (lambda: datetime.now(UTC))
        self.last_error: str | None = None

    def describe(self) -> Iterable[Any]:
        return []  # registering does not read the store

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        t0 = time.perf_counter()
        up = GaugeMetricFamily("llctl_store_up", "1 if the state store could be read for this scrape")
        try:
            snap = read_snapshot(self.store, models=self.models, now=self.clock(),
                                 replica_ttl_seconds=self.replica_ttl_seconds)
        except LlctlError as exc:  # the store is down or outdated: say so in the metrics, do not fail the scrape
            self.last_error = exc.message
            up.add_metric([], 0)
            yield up
            return
        self.last_error = None
        yield from families(snap, slo=self.slo)
        up.add_metric([], 1)
        yield up
        took = GaugeMetricFamily("llctl_store_read_seconds", "Time this scrape took to read the state store")
        took.add_metric([], time.perf_counter() - t0)
        yield took
