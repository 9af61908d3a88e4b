"""train: a new model version from the data that became trainable since the parent's watermark."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import LlctlError, TrainingHaltedError, UsageError
from lifelong_cli.ops._base import Result, audited
from lifelong_cli.training.artifacts import pq_bytes, pq_read, torch_bytes, torch_load

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext

STRATEGIES = ("naive", "replay", "ewc", "ewc+replay")
__all__ = ["STRATEGIES", "TrainResult", "train", "pq_bytes", "pq_read"]


@dataclass(frozen=True)
class TrainResult(Result):
    model: str
    status: str  # trained | nothing-new | dry-run | not-due
    version: int | None
    parent: int | None
    strategy: str
    seq_from: int | None
    seq_to: int | None
    rows_new: int
    rows_replay: int
    purge_rules: list[int]
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    next: str = ""
    due: dict[str, Any] | None = None  # with --if-due: the cadence figures and the verdict
    skipped: list[dict[str, Any]] = field(default_factory=list)  # what was not trained on, and why


def _halted(state, model: str) -> TrainingHaltedError:
    return TrainingHaltedError(
        f"model '{model}': training is stopped (by {state.stopped_by} at {state.stopped_at:%Y-%m-%d %H:%M:%S}Z: "
        f"{state.stop_reason})", hint="`llctl resume --reason ...` when the cause is fixed")


def train(ctx: AppContext, *, strategy: str | None = None, epochs: int | None = None, max_rows: int | None = None,
          dry_run: bool = False, inject_nan_at_step: int | None = None, if_due: bool = False) -> TrainResult:
    """Train the model's next version from its training head. Refused while the model's training is
    stopped or another trainer holds its lease; stops without a version when its stop flag is set
    mid-run. Other models' training is neither seen nor touched.

    ``if_due``: train only when the cadence policy says so — at least ``training.min_new_rows`` new
    rows, or some new rows and a training head older than ``training.max_wait`` (or no version
    yet); otherwise return status ``not-due`` with the figures, having imported no torch and taken
    no lease."""
    from lifelong_cli.store import control, deployment

    t_start = time.monotonic()
    ts = ctx.config.settings.training
    strategy = strategy or ts.strategy
    if strategy not in STRATEGIES:
        raise UsageError(f"--strategy {strategy!r} is not one of {', '.join(STRATEGIES)}", hint="llctl train --strategy replay")
    if epochs is not None and epochs < 1:
        raise UsageError("--epochs must be at least 1", hint="llctl train --epochs 3")
    if max_rows is not None and max_rows < 1:
        raise UsageError("--max-rows must be at least 1", hint="llctl train --max-rows 10000")
    model = ctx.model
    with ctx.store.tx(write=False) as t:
        state = control.get(t, model)
        head = deployment.get(t, model)["training_head"]
    if state.stopped:
        raise _halted(state, model)
    due = None
    if if_due:
        due = _due(ctx, model, head)
        if not due["due"]:
            return _with_skipped(ctx, TrainResult(
                model=model, status="not-due", version=None, parent=head, strategy=strategy, seq_from=None,
                seq_to=None, rows_new=due["new_rows"], rows_replay=0, purge_rules=[],
                message=f"model '{model}': {due['reason']}", due=due,
                next="nothing to do; run again later (e.g. from cron every few minutes)"))

    run = _Run(ctx, model=model, strategy=strategy, epochs=epochs or ts.epochs, head=head,
               ttl=timedelta(seconds=ts.lease_ttl_seconds), t_start=t_start)
    if not dry_run:
        _import_training_stack()  # before the lease: while it is held, a stop is noticed within a heartbeat
        with ctx.store.tx() as t:
            st = control.get(t, model)
            if st.stopped:
                raise _halted(st, model)
            run.lease = control.acquire_lease(t, model, holder=ctx.host_id, ttl=run.ttl, now=ctx.now())
    try:
        res = _train(run, max_rows=max_rows or ts.max_rows, dry_run=dry_run, inject_nan_at_step=inject_nan_at_step)
        if due is not None:
            res = replace(res, due=due, message=f"{due['reason']}; {res.message}")
        return _with_skipped(ctx, res)
    finally:
        if run.lease is not None:
            with ctx.store.tx() as t:
                control.release_lease(t, model, run.lease)


def _with_skipped(ctx: AppContext, res: TrainResult) -> TrainResult:
    """``res`` saying what training did not read, and why: batches on hold (with their cause) and
    the purge rules in force."""
    from lifelong_cli.store import batches

    with ctx.store.tx(write=False) as t:
        held = batches.held(t, res.model)
    skipped = [{"batch": b["id"], "kind": b["kind"], "source": b["source"], "rows": b["rows_accepted"],
                "why": "on hold: " + str(((b["detail"] or {}).get("hold") or {}).get("cause", "held"))} for b in held]
    if res.purge_rules:
        skipped.append({"purge_rules": list(res.purge_rules), "why": "purged: their rows and labels are not read"})
    if not skipped:
        return res
    notes = []
    if held:
        causes: dict[str, list[int]] = {}
        for b in held:
            causes.setdefault(str(((b["detail"] or {}).get("hold") or {}).get("cause", "held")), []).append(b["id"])
        notes.append(f"{len(held)} batch(es) on hold ("
                     + "; ".join(f"{c}: {', '.join(map(str, ids))}" for c, ids in causes.items())
                     + ") — `llctl data holds`")
    if res.purge_rules:
        notes.append(f"{len(res.purge_rules)} purge rule(s) in force")
    return replace(res, skipped=skipped, message=f"{res.message}; not read: {', '.join(notes)}")


def _ago(seconds: float) -> str:
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m" if s >= 60 else f"{s}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def _due(ctx: AppContext, model: str, head: int | None) -> dict[str, Any]:
    """The cadence policy: how many rows ``train`` would take now (counted as it counts them, purge
    rules and hold-out applied) and how long ago the training head was trained."""
    import pyarrow.compute as pc

    from lifelong_cli.config import duration_seconds
    from lifelong_cli.data import reader as rd
    from lifelong_cli.data.schema import DataSchema
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.data.snapshots import visible
    from lifelong_cli.store import batches, purge_rules, versions

    ts = ctx.config.settings.training
    schema = DataSchema.from_settings(ctx.config.settings.data)
    data_store = DataStore(ctx.data_root)
    with ctx.store.tx(write=False) as t:
        refs = batches.for_reading(t, model)
        rules = purge_rules.active(t, model)
        parent = versions.require(t, model, head) if head is not None else None
    watermark = parent["watermark"] if parent else None
    fresh = rd.read_new(data_store, schema, refs, [], after=watermark)
    rows = visible(data_store, schema, refs, fresh.rows, rules)
    if watermark is not None:
        rows = rows.filter(pc.greater(rows[rd.TRAINABLE_SEQ], watermark))
    n = rows.num_rows - int(pc.sum(pc.fill_null(rows[rd.HOLDOUT], False).cast("int64")).as_py() or 0)
    wait = duration_seconds(ts.max_wait)
    since = (ctx.now() - parent["created_at"]).total_seconds() if parent else None
    figures = f"{n} new rows {'≥' if n >= ts.min_new_rows else '<'} min_new_rows {ts.min_new_rows}, " + (
        f"last train {_ago(since)} ago {'≥' if since >= wait else '<'} max_wait {ts.max_wait}" if since is not None
        else "no version yet")
    if n == 0:
        is_due = False
        reason = f"not due: {figures}, and nothing new to train on"
    else:
        is_due = n >= ts.min_new_rows or since is None or since >= wait
        reason = f"{'due' if is_due else 'not due'}: {figures}"
    return {"due": is_due, "reason": reason, "new_rows": n, "min_new_rows": ts.min_new_rows,
            "last_train": parent["created_at"].isoformat() if parent else None,
            "since_seconds": since, "max_wait": ts.max_wait, "max_wait_seconds": wait}


def _import_training_stack() -> None:
    # torch._dynamo: torch.optim (step, zero_grad, state_dict) and torch.func.grad (EWC's Fisher) import it
    # on first use — 1-2 s, as much as torch itself; the ONNX export (TorchScript path) does not need it.
    import pyarrow.compute  # noqa: F401
    import torch
    import torch._dynamo  # noqa: F401

    from lifelong_cli.data import reader, segments  # noqa: F401
    from lifelong_cli.registry import local  # noqa: F401
    from lifelong_cli.training import onnx_export, preprocess, trainer  # noqa: F401

    del torch


class _Run:
    """One training run of one model: what every step needs, and the lease it holds."""

    def __init__(self, ctx: AppContext, *, model: str, strategy: str, epochs: int, head: int | None,
                 ttl: timedelta, t_start: float) -> None:
        self.ctx, self.model, self.strategy, self.epochs, self.head = ctx, model, strategy, epochs, head
        self.ttl, self.t_start = ttl, t_start
        self.lease = None

    def check_in(self, step: int) -> None:
        """Renew the lease; end the run if the model's training was stopped meanwhile."""
        from lifelong_cli.store import control

        with self.ctx.store.tx() as t:
            self.lease, state = control.heartbeat(t, self.model, self.lease, ttl=self.ttl, now=self.ctx.now())
        if state.stopped:
            raise TrainingHaltedError(
                f"model '{self.model}': training stopped at step {step} by {state.stopped_by} ({state.stop_reason}); "
                "no version written",
                hint="`llctl resume --reason ...` then `llctl train` continues from the training head")

    def result(self, status: str, **kw: Any) -> TrainResult:
        return TrainResult(model=self.model, status=status, parent=self.head, strategy=self.strategy, **kw)


@dataclass
class _Data:
    """What a step reads, once, purge rules applied: the rows new since the parent's watermark, the
    parent's replay reservoir as it is now, and the hold-out up to the new watermark."""

    rule_ids: list[int]
    new: Any
    reservoir: Any  # the parent's reservoir rows still trainable at its watermark (None: no parent)
    replay: Any  # the reservoir, when the strategy replays
    holdout: Any
    seq_from: int | None
    seq_to: int | None
    fresh: Any  # every row trainable after the parent's watermark, before rules (data.reader.NewRows)
    refs: Any
    rules: Any


def _read(run: _Run, data_store, schema, *, parent: dict[str, Any] | None, registry, max_rows: int | None) -> _Data:
    """Read what the step needs and nothing more, so that its cost follows the new data and not the
    history: the rows that became trainable since the parent's watermark (whole ingest sequences,
    at most ``max_rows``; the key index finds the older rows that late labels made new), the
    parent's replay reservoir (its rows kept beside the segments, as they are now: a purged row, or
    one relabelled since, never survives) and the hold-out up to the new watermark (a snapshot
    extended by the new hold-out rows)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from lifelong_cli.data import reader as rd
    from lifelong_cli.data.snapshots import Snapshots, visible
    from lifelong_cli.store import batches, purge_rules

    with run.ctx.store.tx(write=False) as t:
        refs = batches.for_reading(t, run.model)
        rules = purge_rules.active(t, run.model)
    watermark = parent["watermark"] if parent else None
    fresh = rd.read_new(data_store, schema, refs, [], after=watermark)
    rows = visible(data_store, schema, refs, fresh.rows, rules)
    if watermark is not None:  # a purged relabel leaves its rows with the delivery before: not new
        rows = rows.filter(pc.greater(rows[rd.TRAINABLE_SEQ], watermark))
    new = rows.filter(pc.invert(pc.fill_null(rows[rd.HOLDOUT], False)))
    if max_rows and new.num_rows > max_rows:  # whole ingest sequences only, so the watermark stays exact
        seqs = np.asarray(new[rd.TRAINABLE_SEQ].to_numpy(zero_copy_only=False))
        cut = seqs[max_rows - 1]
        new = new.filter(pa.array(seqs <= cut))
    seq_from = int(pc.min(new[rd.TRAINABLE_SEQ]).as_py()) if new.num_rows else None
    seq_to = int(pc.max(new[rd.TRAINABLE_SEQ]).as_py()) if new.num_rows else None
    holdout = None
    if seq_to is not None:
        held = Snapshots(data_store, schema).holdout(refs, seq_to, new=fresh, base=watermark)
        holdout = visible(data_store, schema, refs, held, rules)

    reservoir = None
    if parent and run.strategy in ("replay", "ewc", "ewc+replay") and "replay" in parent["artifacts"] and new.num_rows:
        reservoir = _reservoir(data_store, schema, refs, rules, parent, registry, fresh)
    replay = reservoir if reservoir is not None and run.strategy in ("replay", "ewc+replay") and \
        reservoir.num_rows else None
    return _Data([r["id"] for r in rules], new, reservoir, replay, holdout, seq_from, seq_to, fresh, refs, rules)


def _reservoir(data_store, schema, refs, rules, parent: dict[str, Any], registry, fresh):
    """The rows of the parent's replay reservoir that are still trainable at its watermark, rules
    applied, in the order a full read gives them: from the snapshot kept with it (rows relabelled
    since the watermark left out), else read by key (the key index)."""
    import pyarrow.compute as pc

    from lifelong_cli.data import reader as rd
    from lifelong_cli.data.snapshots import Snapshots, visible
    from lifelong_cli.registry.base import ArtifactRef

    ref = ArtifactRef.from_dict("replay", parent["artifacts"]["replay"])
    keys = pq_read(registry.fetch(ref))[schema.key].combine_chunks()  # fetched: a corrupted buffer fails here
    if not len(keys):
        return None
    kept = Snapshots(data_store, schema).reservoir(refs, ref.sha256, keys)
    if kept is None:
        return rd.rows_for(data_store, schema, refs, rules, keys, seq_to=parent["watermark"], holdout="exclude")
    if len(fresh.relabelled):
        kept = kept.filter(pc.invert(pc.is_in(kept[schema.key], value_set=fresh.relabelled)))
    kept = visible(data_store, schema, refs, kept, rules)
    return kept.take(pc.sort_indices(kept[rd.BATCH]))  # batch order (stable: each batch's rows keep theirs)


def _fallback(run: _Run, data_store, schema, pre, d: _Data, parent: dict[str, Any] | None, fetch) -> dict[str, Any]:
    """The fallback over the new version's lineage (every trainable row up to its watermark). For
    classification the parent's tally of its lineage is carried forward — plus the new rows, minus
    what the rows relabelled since counted before — while the purge rules in force are the same;
    otherwise (and for regression, whose median cannot be merged) the lineage is read whole."""
    import pyarrow.compute as pc

    from lifelong_cli.data import reader as rd
    from lifelong_cli.store import purge_rules
    from lifelong_cli.training import tally as tl
    from lifelong_cli.training.fallback import build_fallback

    ts = run.ctx.config.settings.training
    with run.ctx.store.tx(write=False) as t:
        in_force = [r["id"] for r in purge_rules.in_force(t, run.model)]
    def lineage():  # from scratch, the new rows are the whole lineage
        return d.new if parent is None else rd.read_rows(data_store, schema, d.refs, d.rules, seq_to=d.seq_to)

    if pre.task != "classification":
        return build_fallback(lineage(), schema.label, pre, ts.fallback_lookup_key)
    before = json.loads(fetch("fallback")).get("tally") if parent and "fallback" in parent["artifacts"] else None
    if before is not None and before.get("rules") == in_force and parent["watermark"] is not None:
        w = parent["watermark"]
        was = d.fresh.rows.filter(pc.less_equal(d.fresh.rows[rd.BATCH], w))  # older rows relabelled since
        counted = rd.rows_for(data_store, schema, d.refs, d.rules, was[schema.key], seq_to=w, holdout="exclude",
                              as_of=w) if was.num_rows else d.new.slice(0, 0)
        tally = tl.merge(tl.merge(before, tl.count(d.new, schema.label, ts.fallback_lookup_key)),
                         tl.count(counted, schema.label, ts.fallback_lookup_key), -1)
    else:
        tally = tl.count(lineage(), schema.label, ts.fallback_lookup_key)
    tally["rules"] = in_force
    return tl.fallback_doc(tally, pre, ts.fallback_lookup_key)


def _train(run: _Run, *, max_rows, dry_run, inject_nan_at_step) -> TrainResult:
    import numpy as np
    import pyarrow as pa
    import torch

    from lifelong_cli.data import reader as rd
    from lifelong_cli.data.schema import DataSchema
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.data.snapshots import Snapshots
    from lifelong_cli.registry.base import ArtifactRef, open_registry
    from lifelong_cli.store import versions
    from lifelong_cli.training import trainer as tr
    from lifelong_cli.training.model import build_model
    from lifelong_cli.training.onnx_export import export
    from lifelong_cli.training.preprocess import Preprocessor

    ctx, model, head, strategy = run.ctx, run.model, run.head, run.strategy
    settings = ctx.config.settings
    ts = settings.training
    schema = DataSchema.from_settings(settings.data)
    registry = open_registry(ctx)
    if head is not None:
        with ctx.store.tx(write=False) as t:
            parent = versions.require(t, model, head)
    else:
        parent = None
    data_store = DataStore(ctx.data_root)
    d = _read(run, data_store, schema, parent=parent, registry=registry, max_rows=max_rows)
    new, replay_tbl = d.new, d.replay
    n_replay = replay_tbl.num_rows if replay_tbl is not None else 0
    from_what = f"v{head}" if head else "scratch"

    if new.num_rows == 0:
        watermark = parent["watermark"] if parent else None
        return run.result("nothing-new", version=None, seq_from=None, seq_to=None, rows_new=0, rows_replay=0,
                          purge_rules=d.rule_ids,
                          message=f"model '{model}': nothing new to train on since v{head} (watermark {watermark})"
                          if head else f"model '{model}': nothing to train on yet: no labelled rows",
                          next="ingest more data (`llctl ingest FILE`), or labels for waiting examples")
    if dry_run:
        with ctx.store.tx(write=False) as t:
            nxt = versions.next_id(t, model)
        return run.result("dry-run", version=None, seq_from=d.seq_from, seq_to=d.seq_to, rows_new=new.num_rows,
                          rows_replay=n_replay, purge_rules=d.rule_ids,
                          message=f"dry run: model '{model}': would train v{nxt} from {from_what} on "
                          f"{new.num_rows} new rows (sequences {d.seq_from}–{d.seq_to}) with {strategy}",
                          next="run again without --dry-run")

    registry.check()  # a remote registry that cannot be reached fails now, not after the fit
    run.check_in(0)  # the data is read: a stop that landed meanwhile ends the run here

    def fetch(name: str) -> bytes:
        return registry.fetch(ArtifactRef.from_dict(name, parent["artifacts"][name]))

    pre = Preprocessor.from_dict(json.loads(fetch("preprocess"))) if parent else \
        Preprocessor.fit(new, schema, scale_floor=ts.preprocess.scale_floor, clip=ts.preprocess.clip)
    x_new, y_new = pre.transform(new), pre.targets(new, schema.label)
    x_val, y_val, x_fit, y_fit = _validation_rows(run, pre, schema, new, d, parent, x_new, y_new)
    torch.manual_seed(ts.seed)
    net = build_model(settings.model, pre.n_inputs, pre.n_outputs)
    opt_state = None
    if parent:
        net.load_state_dict(torch_load(fetch("state_dict")))
        if "optimizer" in parent["artifacts"]:
            opt_state = torch_load(fetch("optimizer"))
    ewc = None
    rng = np.random.default_rng(ts.seed + (head or 0))
    past = d.reservoir  # the parent's data, as the uniform sample of it its reservoir is
    if parent and strategy in ("ewc", "ewc+replay") and past is not None and past.num_rows:
        sample = past.take(pa.array(rng.choice(past.num_rows, min(past.num_rows, ts.ewc.fisher_samples), replace=False)))
        ewc = tr.fisher_information(net, pre.transform(sample), pre.targets(sample, schema.label), pre.task)
    x_rep = pre.transform(replay_tbl) if n_replay else None
    y_rep = pre.targets(replay_tbl, schema.label) if x_rep is not None else None
    run.check_in(0)  # and again after preprocessing and the Fisher information, before the loop
    # continued training starts from weights that already fit the past: smaller steps keep them
    lr = ts.learning_rate * (ts.continued_lr_factor if parent else 1.0)
    cfg = tr.TrainConfig(strategy=strategy, epochs=run.epochs, batch_size=ts.batch_size, learning_rate=lr,
                         grad_clip=ts.grad_clip, shuffle_buffer=ts.shuffle_buffer, frozen_layers=list(ts.frozen_layers),
                         new_ratio=ts.replay.new_ratio, ewc_lambda=ts.ewc.ewc_lambda, seed=ts.seed + (head or 0),
                         task=pre.task, heartbeat_seconds=ts.heartbeat_seconds, threads=ts.threads,
                         min_steps=ts.min_steps, max_epochs=ts.max_epochs, patience=ts.patience)
    opt, fit_metrics = tr.fit(net, x_fit, y_fit, cfg, x_replay=x_rep, y_replay=y_rep, ewc=ewc, optimizer_state=opt_state,
                              check_in=run.check_in, inject_nan_at_step=inject_nan_at_step, x_val=x_val, y_val=y_val)

    # the new reservoir: every row seen so far equally likely to be in it; purged rows never are
    seen_before = parent["metrics"].get("rows_seen", 0) if parent else 0
    k_new, k_old = tr.reservoir_keep(seen_before, new.num_rows, ts.replay.buffer_size, rng, n_replay)
    parts = [new.take(pa.array(np.sort(rng.choice(new.num_rows, k_new, replace=False))))]
    if n_replay and k_old:
        parts.insert(0, replay_tbl.take(pa.array(np.sort(rng.choice(n_replay, k_old, replace=False)))))
    new_buffer = pa.concat_tables([p.select([schema.key, rd.TRAINABLE_SEQ]) for p in parts])
    buffer_rows = pa.concat_tables([p.select(new.column_names).cast(new.schema) for p in parts])

    metrics = {**fit_metrics, "rows_new": new.num_rows, "rows_replay": x_rep.shape[0] if x_rep is not None else 0,
               "rows_seen": seen_before + new.num_rows, "replay_buffer": new_buffer.num_rows}
    golden = d.holdout
    if golden is not None and golden.num_rows and pre.task == "classification":
        scores = tr.predict_scores(net, pre.transform(golden), pre.task)
        metrics["holdout_accuracy"] = float((scores.argmax(1) == pre.targets(golden, schema.label)).mean())
        metrics["holdout_rows"] = golden.num_rows

    blobs = {
        "state_dict": torch_bytes(net.state_dict()),
        "optimizer": torch_bytes(opt.state_dict()),
        "onnx": export(net, pre),
        "preprocess": json.dumps(pre.to_dict(), sort_keys=True).encode(),
        "replay": pq_bytes(new_buffer),
        "fallback": json.dumps(_fallback(run, data_store, schema, pre, d, parent, fetch), sort_keys=True).encode(),
    }
    run.check_in(metrics["steps"])  # after evaluation and export, before the registry writes
    refs = {name: registry.put(name, b) for name, b in blobs.items()}
    Snapshots(data_store, schema).save_reservoir(d.refs, refs["replay"].sha256, buffer_rows)  # for the next train
    metrics["train_seconds"] = time.monotonic() - run.t_start
    lineage = {
        "parent": head, "seq_from": d.seq_from, "seq_to": d.seq_to, "rows": new.num_rows, "purge_rules": d.rule_ids,
        "strategy": strategy, "config_hash": _config_hash(settings), "libraries": _libraries(),
        "git_commit": _git_commit(ctx.config.workspace), "task": pre.task, "classes": pre.classes,
        "replay_rows_used": metrics["rows_replay"], "ewc_from_parent": ewc is not None,
    }
    artifacts = {k: v.to_dict() for k, v in refs.items()}
    watermark = max(d.seq_to, parent["watermark"] or 0) if parent else d.seq_to
    version = _commit(run, seq_from=d.seq_from, seq_to=d.seq_to, watermark=watermark, rows=new.num_rows,
                      lineage=lineage, metrics=metrics, artifacts=artifacts)
    reg_note = _record(run, registry, version, refs, metrics, lineage)
    acc = f", hold-out accuracy {metrics['holdout_accuracy']:.3f}" if "holdout_accuracy" in metrics else ""
    return run.result("trained", version=version, seq_from=d.seq_from, seq_to=d.seq_to, rows_new=new.num_rows,
                      rows_replay=metrics["rows_replay"], purge_rules=d.rule_ids, metrics=metrics, artifacts=artifacts,
                      message=f"model '{model}': trained v{version} from {from_what} on {new.num_rows} new rows "
                              f"(sequences {d.seq_from}–{d.seq_to}, {strategy}) in {metrics['train_seconds']:.1f}s"
                              f"{acc}{reg_note}",
                      next=f"`llctl versions show {version}`; validate it before pushing")


def _validation_rows(run: _Run, pre, schema, new, d: _Data, parent, x_new, y_new):
    """Rows for early stopping, never trained on in this run: the hold-out rows that became
    trainable with this increment when there are enough of them; else a seeded share
    (``validation_fraction``) of the increment, which this run then does not train on (the next
    one may replay them). None when the run has a fixed epoch count or too few rows.
    Returns (x_val, y_val, x_fit, y_fit)."""
    import numpy as np
    import pyarrow.compute as pc

    from lifelong_cli.data import reader as rd

    ts = run.ctx.config.settings.training
    if run.epochs is not None:
        return None, None, x_new, y_new
    held = d.holdout
    if held is not None and held.num_rows and parent is not None and parent["watermark"] is not None:
        held = held.filter(pc.fill_null(pc.greater(held[rd.TRAINABLE_SEQ], parent["watermark"]), False))
    if held is not None and held.num_rows >= ts.min_validation_rows:
        return pre.transform(held), pre.targets(held, schema.label), x_new, y_new
    k = int(round(len(x_new) * ts.validation_fraction))
    if k < ts.min_validation_rows or len(x_new) - k < ts.min_validation_rows:
        return None, None, x_new, y_new
    val = np.zeros(len(x_new), dtype=bool)
    val[np.random.default_rng(ts.seed + (run.head or 0) + 7919).choice(len(x_new), k, replace=False)] = True
    return x_new[val], y_new[val], x_new[~val], y_new[~val]


def _record(run: _Run, registry, version: int, refs, metrics: dict[str, Any], lineage: dict[str, Any]) -> str:
    """Record the committed version in the registry (an MLflow run and model version) and mirror the
    aliases; best effort: the version is committed, only its registry record can be missing."""
    from lifelong_cli.store import versions

    note = ""
    try:
        ref = registry.record_version(version, artifacts=refs,
                                      params={"strategy": run.strategy, "epochs": run.epochs or "adaptive",
                                              "parent": run.head},
                                      metrics={k: v for k, v in metrics.items() if isinstance(v, int | float)},
                                      lineage=lineage)
    except LlctlError as exc:
        ref, note = None, f" (not recorded in the registry: {exc.message})"
    if registry.kind != "local":
        from lifelong_cli.ops.registry_sync import sync_quietly

        sync_quietly(run.ctx)
    if ref:
        with run.ctx.store.tx() as t:
            versions.set_registry_ref(t, run.model, version, ref)
    return note


def _commit(run: _Run, *, seq_from, seq_to, watermark, rows, lineage, metrics, artifacts) -> int:
    """The version row is written last, in one transaction with the head move and the audit entry.
    The model's control row is locked and its lease and stop flag checked in it (a stop that lands
    now waits for this commit, or wins before it), then its deployment row."""
    from lifelong_cli.errors import PreconditionError
    from lifelong_cli.store import control, deployment, versions

    ctx, model, head = run.ctx, run.model, run.head
    with audited(ctx, "train", args={"strategy": run.strategy, "parent": head}) as (t, entry):
        run.lease, state = control.heartbeat(t, model, run.lease, ttl=run.ttl, now=ctx.now())
        if state.stopped:
            raise _halted(state, model)
        dep = deployment.get(t, model, lock=True)
        if dep["training_head"] != head:
            raise PreconditionError(f"model '{model}': the training head moved from v{head} to v{dep['training_head']} "
                                    "during training (a rollback?); no version written", hint="run `llctl train` again")
        version = versions.add(t, model, parent_id=head, created_at=ctx.now(), created_by=ctx.actor,
                               strategy=run.strategy, seq_from=seq_from, seq_to=seq_to, watermark=watermark,
                               rows_trained=rows, config_hash=lineage["config_hash"], lineage=lineage,
                               metrics=_finite(metrics), artifacts=artifacts)
        deployment.compare_and_set(t, model, expected_generation=dep["generation"], actor=ctx.actor, now=ctx.now(),
                                   training_head=version)
        entry.detail = {"version": version, "rows": rows, "seq_from": seq_from, "seq_to": seq_to}
    return version


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    import math

    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _config_hash(settings) -> str:
    return hashlib.sha256(json.dumps(settings.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def _libraries() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("llctl", "torch", "numpy", "pyarrow", "onnx", "onnxruntime", "scipy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _git_commit(workspace) -> str | None:
    try:
        p = subprocess.run(["git", "rev-parse", "HEAD"], cwd=workspace, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 else None
