"""train: a new model version from the data that became trainable since the parent's watermark."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import LlctlError, PreconditionError, TrainingHaltedError, UsageError
from lifelong_cli.ops._base import Result, audited

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext

STRATEGIES = ("naive", "replay", "ewc", "ewc+replay")


@dataclass(frozen=True)
class TrainResult(Result):
    status: str  # trained | nothing-new | dry-run
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


def _halted(state) -> TrainingHaltedError:
    return TrainingHaltedError(
        f"training is stopped (by {state.stopped_by} at {state.stopped_at:%Y-%m-%d %H:%M:%S}Z: {state.stop_reason})",
        hint="`llctl resume --reason ...` when the cause is fixed")


def train(ctx: AppContext, *, strategy: str | None = None, epochs: int | None = None, max_rows: int | None = None,
          dry_run: bool = False, inject_nan_at_step: int | None = None) -> TrainResult:
    """Train the next version from the training head. Refused while training is stopped or another
    trainer holds the lease; stops without a version when the stop flag is set mid-run."""
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
    with ctx.store.tx(write=False) as t:
        state = control.get(t)
        head = deployment.get(t)["training_head"]
    if state.stopped:
        raise _halted(state)

    lease = None
    ttl = timedelta(seconds=ts.lease_ttl_seconds)
    if not dry_run:
        _import_training_stack()  # before the lease: while it is held, a stop is noticed within a heartbeat
        with ctx.store.tx() as t:
            st = control.get(t)
            if st.stopped:
                raise _halted(st)
            lease = control.acquire_lease(t, holder=ctx.host_id, ttl=ttl, now=ctx.now())
    try:
        return _train(ctx, strategy=strategy, epochs=epochs or ts.epochs, max_rows=max_rows or ts.max_rows,
                      dry_run=dry_run, head=head, lease=lease, ttl=ttl, t_start=t_start,
                      inject_nan_at_step=inject_nan_at_step)
    finally:
        if lease is not None:
            with ctx.store.tx() as t:
                control.release_lease(t, lease)


def _import_training_stack() -> None:
    import pyarrow.compute  # noqa: F401
    import torch
    import torch._dynamo  # noqa: F401  (torch.optim imports it on first use: 1-2 s)

    from lifelong_cli.data import reader, segments  # noqa: F401
    from lifelong_cli.registry import local  # noqa: F401
    from lifelong_cli.training import onnx_export, preprocess, trainer  # noqa: F401

    del torch


def _train(ctx, *, strategy, epochs, max_rows, dry_run, head, lease, ttl, t_start, inject_nan_at_step) -> TrainResult:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import torch

    from lifelong_cli.data import reader as rd
    from lifelong_cli.data.schema import DataSchema
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.registry.base import ArtifactRef, open_registry
    from lifelong_cli.store import control
    from lifelong_cli.training import trainer as tr
    from lifelong_cli.training.model import build_model
    from lifelong_cli.training.onnx_export import export
    from lifelong_cli.training.preprocess import Preprocessor
    from lifelong_cli.versions import load_version

    settings = ctx.config.settings
    ts = settings.training
    schema = DataSchema.from_settings(settings.data)
    data = DataStore(ctx.config.data_root)
    registry = open_registry(ctx)
    parent = load_version(ctx, head) if head is not None else None
    watermark = parent["watermark"] if parent else None

    with ctx.store.read() as conn:
        rules = rd.active_rules(conn)
        new = rd.read_rows(conn, data, schema, rules=rules, seq_from=(watermark + 1) if watermark is not None else None)
        past = rd.read_rows(conn, data, schema, rules=rules, seq_to=watermark) if watermark is not None else None
    rule_ids = [r.id for r in rules]
    if max_rows and new.num_rows > max_rows:  # whole ingest sequences only, so the watermark stays exact
        seqs = np.asarray(new[rd.TRAINABLE_SEQ].to_numpy(zero_copy_only=False))
        cut = seqs[max_rows - 1]
        keep = seqs <= cut if (seqs <= cut).sum() > 0 else np.ones(len(seqs), bool)
        new = new.filter(pa.array(keep))
    seq_from = int(pc.min(new[rd.TRAINABLE_SEQ]).as_py()) if new.num_rows else None
    seq_to = int(pc.max(new[rd.TRAINABLE_SEQ]).as_py()) if new.num_rows else None

    buffer_keys: list[str] = []
    if parent and strategy in ("replay", "ewc+replay") and "replay" in parent["artifacts"]:
        buf = pq_read(registry.fetch(ArtifactRef.from_dict("replay", parent["artifacts"]["replay"])))
        buffer_keys = buf[schema.key].to_pylist()
    replay_tbl = None
    if past is not None and buffer_keys:
        # rebuilt from the store: a purged row (or one not in the parent's lineage) never survives
        replay_tbl = past.filter(pc.is_in(past[schema.key], value_set=pa.array(buffer_keys, pa.string())))

    if new.num_rows == 0:
        return TrainResult("nothing-new", None, head, strategy, None, None, 0, 0, rule_ids,
                           message=f"nothing new to train on since v{head} (watermark {watermark})" if head
                           else "nothing to train on yet: no labelled rows",
                           next="ingest more data (`llctl ingest FILE`), or labels for waiting examples")
    if dry_run:
        return TrainResult("dry-run", None, head, strategy, seq_from, seq_to, new.num_rows,
                           replay_tbl.num_rows if replay_tbl is not None else 0, rule_ids,
                           message=f"dry run: would train v{'?'} from {('v' + str(head)) if head else 'scratch'} on "
                           f"{new.num_rows} new rows (sequences {seq_from}–{seq_to}) with {strategy}",
                           next="run again without --dry-run")

    registry.check()  # a remote registry that cannot be reached fails now, not after the fit

    def check_in(step: int) -> None:
        nonlocal lease
        with ctx.store.tx() as t:
            lease, state = control.heartbeat(t, lease, ttl=ttl, now=ctx.now())
        if state.stopped:
            raise TrainingHaltedError(
                f"training stopped at step {step} by {state.stopped_by} ({state.stop_reason}); no version written",
                hint="`llctl resume --reason ...` then `llctl train` continues from the training head")

    check_in(0)  # the data is read: a stop that landed meanwhile ends the run here
    pre = (Preprocessor.from_dict(json.loads(registry.fetch(ArtifactRef.from_dict("preprocess", parent["artifacts"]["preprocess"]))))
           if parent else Preprocessor.fit(new, schema))
    x_new, y_new = pre.transform(new), pre.targets(new, schema.label)
    torch.manual_seed(ts.seed)
    model = build_model(settings.model, pre.n_inputs, pre.n_outputs)
    opt_state = None
    if parent:
        model.load_state_dict(_torch_load(registry.fetch(ArtifactRef.from_dict("state_dict", parent["artifacts"]["state_dict"]))))
        if "optimizer" in parent["artifacts"]:
            opt_state = _torch_load(registry.fetch(ArtifactRef.from_dict("optimizer", parent["artifacts"]["optimizer"])))
    ewc = None
    rng = np.random.default_rng(ts.seed + (head or 0))
    if parent and strategy in ("ewc", "ewc+replay") and past is not None and past.num_rows:
        sample = past.take(pa.array(rng.choice(past.num_rows, min(past.num_rows, ts.ewc.fisher_samples), replace=False)))
        ewc = tr.fisher_information(model, pre.transform(sample), pre.targets(sample, schema.label), pre.task)
    x_rep = pre.transform(replay_tbl) if replay_tbl is not None and replay_tbl.num_rows else None
    y_rep = pre.targets(replay_tbl, schema.label) if x_rep is not None else None
    check_in(0)  # and again after preprocessing and the Fisher information, before the loop
    cfg = tr.TrainConfig(strategy=strategy, epochs=epochs, batch_size=ts.batch_size, learning_rate=ts.learning_rate,
                         grad_clip=ts.grad_clip, shuffle_buffer=ts.shuffle_buffer, frozen_layers=list(ts.frozen_layers),
                         new_ratio=ts.replay.new_ratio, ewc_lambda=ts.ewc.ewc_lambda, seed=ts.seed + (head or 0),
                         task=pre.task, heartbeat_seconds=ts.heartbeat_seconds, threads=ts.threads)
    opt, fit_metrics = tr.fit(model, x_new, y_new, cfg, x_replay=x_rep, y_replay=y_rep, ewc=ewc, optimizer_state=opt_state,
                              check_in=check_in, inject_nan_at_step=inject_nan_at_step)

    # the new reservoir: every row seen so far equally likely to be in it; purged rows never are
    seen_before = parent["metrics"].get("rows_seen", 0) if parent else 0
    k_new, k_old = tr.reservoir_keep(seen_before, new.num_rows, ts.replay.buffer_size, rng,
                                     replay_tbl.num_rows if replay_tbl is not None else 0)
    parts = [new.take(pa.array(np.sort(rng.choice(new.num_rows, k_new, replace=False))))]
    if replay_tbl is not None and k_old:
        parts.insert(0, replay_tbl.take(pa.array(np.sort(rng.choice(replay_tbl.num_rows, k_old, replace=False)))))
    replay_cols = [schema.key, rd.TRAINABLE_SEQ]
    new_buffer = pa.concat_tables([p.select(replay_cols) for p in parts])

    metrics = {**fit_metrics, "rows_new": new.num_rows, "rows_replay": x_rep.shape[0] if x_rep is not None else 0,
               "rows_seen": seen_before + new.num_rows, "replay_buffer": new_buffer.num_rows}
    with ctx.store.read() as conn:
        golden = rd.read_rows(conn, data, schema, rules=rules, holdout="only", seq_to=seq_to)
    if golden.num_rows and pre.task == "classification":
        scores = tr.predict_scores(model, pre.transform(golden), pre.task)
        metrics["holdout_accuracy"] = float((scores.argmax(1) == pre.targets(golden, schema.label)).mean())
        metrics["holdout_rows"] = golden.num_rows

    with ctx.store.read() as conn:
        lineage_rows = rd.read_rows(conn, data, schema, rules=rules, seq_to=seq_to)
    fallback = _fallback(lineage_rows, schema, pre, ts.fallback_lookup_key)
    blobs = {
        "state_dict": _torch_bytes(model.state_dict()),
        "optimizer": _torch_bytes(opt.state_dict()),
        "onnx": export(model, pre),
        "preprocess": json.dumps(pre.to_dict(), sort_keys=True).encode(),
        "replay": pq_bytes(new_buffer),
        "fallback": json.dumps(fallback, sort_keys=True).encode(),
    }
    check_in(metrics["steps"])  # after evaluation and export, before the registry writes
    refs = {name: registry.put(name, b) for name, b in blobs.items()}
    metrics["train_seconds"] = time.monotonic() - t_start
    lineage = {
        "parent": head, "seq_from": seq_from, "seq_to": seq_to, "rows": new.num_rows, "purge_rules": rule_ids,
        "strategy": strategy, "config_hash": _config_hash(settings), "libraries": _libraries(),
        "git_commit": _git_commit(ctx.config.workspace), "task": pre.task, "classes": pre.classes,
        "replay_rows_used": metrics["rows_replay"], "ewc_from_parent": ewc is not None,
    }
    version = _commit(ctx, head=head, lease=lease, strategy=strategy, seq_from=seq_from, seq_to=seq_to,
                      watermark=max(seq_to, watermark or 0), rows=new.num_rows, lineage=lineage, metrics=metrics,
                      artifacts={k: v.to_dict() for k, v in refs.items()})
    reg_note = ""
    try:
        ref = registry.record_version(version, artifacts=refs, params={"strategy": strategy, "epochs": epochs, "parent": head},
                                      metrics={k: v for k, v in metrics.items() if isinstance(v, int | float)}, lineage=lineage)
    except LlctlError as exc:  # the version is committed; only its registry record is missing
        ref, reg_note = None, f" (not recorded in the registry: {exc.message})"
    if registry.kind != "local":
        from lifelong_cli.ops.registry_sync import sync_quietly

        sync_quietly(ctx)
    if ref:
        with ctx.store.tx() as t:
            t.execute("UPDATE model_versions SET registry_ref = :r WHERE id = :v", {"r": ref, "v": version})
    acc = f", hold-out accuracy {metrics['holdout_accuracy']:.3f}" if "holdout_accuracy" in metrics else ""
    return TrainResult("trained", version, head, strategy, seq_from, seq_to, new.num_rows, metrics["rows_replay"], rule_ids,
                       metrics=metrics, artifacts={k: v.to_dict() for k, v in refs.items()},
                       message=f"trained v{version} from {('v' + str(head)) if head else 'scratch'} on {new.num_rows} new rows "
                               f"(sequences {seq_from}–{seq_to}, {strategy}) in {metrics['train_seconds']:.1f}s{acc}{reg_note}",
                       next=f"`llctl versions show {version}`; validate it before pushing")


def _commit(ctx, *, head, lease, strategy, seq_from, seq_to, watermark, rows, lineage, metrics, artifacts) -> int:
    """The version row is written last, in one transaction with the head move and the audit entry;
    the stop flag and the lease are checked in it, so a stop that lands now still wins."""
    from lifelong_cli.store import control, deployment

    with audited(ctx, "train", args={"strategy": strategy, "parent": head}) as (t, entry):
        state = control.get(t)
        if state.stopped:
            raise _halted(state)
        if control.get(t).lease_token != lease.token:
            raise PreconditionError("training lease lost before the version was written; no version written",
                                    hint="`llctl status` shows who trains now")
        dep = deployment.get(t, lock=True)
        if dep["training_head"] != head:
            raise PreconditionError(f"the training head moved from v{head} to v{dep['training_head']} during training "
                                    "(a rollback?); no version written", hint="run `llctl train` again")
        version = (t.scalar("SELECT max(id) FROM model_versions") or 0) + 1
        t.execute("INSERT INTO model_versions (id, model, parent_id, created_at, created_by, strategy, seq_from, seq_to, "
                  "watermark, rows_trained, config_hash, lineage, metrics, artifacts) VALUES (:id, :model, :parent, :at, "
                  ":by, :strategy, :sf, :st, :wm, :rows, :ch, :lineage, :metrics, :artifacts)",
                  {"id": version, "model": ctx.config.settings.model.name, "parent": head, "at": ctx.now(),
                   "by": ctx.actor, "strategy": strategy, "sf": seq_from, "st": seq_to, "wm": watermark, "rows": rows,
                   "ch": lineage["config_hash"], "lineage": lineage, "metrics": _finite(metrics), "artifacts": artifacts})
        deployment.compare_and_set(t, expected_generation=dep["generation"], actor=ctx.actor, now=ctx.now(),
                                   training_head=version)
        entry.detail = {"version": version, "rows": rows, "seq_from": seq_from, "seq_to": seq_to}
    return version


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    import math

    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _fallback(rows, schema, pre, lookup_key: str | None) -> dict[str, Any]:
    """Majority class (or median) over the training lineage, and the same per value of a lookup key."""
    import numpy as np
    import pyarrow.compute as pc

    out: dict[str, Any] = {"task": pre.task}
    if pre.task == "classification":
        counts = pc.value_counts(rows[schema.label]).to_pylist()
        out["majority"] = max(counts, key=lambda c: c["counts"])["values"] if counts else (pre.classes[0] if pre.classes else None)
        out["classes"] = pre.classes
    else:
        vals = rows[schema.label].to_numpy(zero_copy_only=False)
        out["median"] = float(np.nanmedian(vals)) if len(vals) else 0.0
    if lookup_key and lookup_key in rows.column_names:
        table: dict[str, Any] = {}
        grouped = rows.group_by(lookup_key)
        if pre.task == "classification":
            agg = rows.select([lookup_key, schema.label]).to_pylist()
            tally: dict[str, dict[str, int]] = {}
            for r in agg:
                k = "" if r[lookup_key] is None else str(r[lookup_key])
                tally.setdefault(k, {}).setdefault(r[schema.label], 0)
                tally[k][r[schema.label]] += 1
            table = {k: max(v, key=v.get) for k, v in tally.items()}
        else:
            agg = grouped.aggregate([(schema.label, "approximate_median")]).to_pylist()
            table = {str(r[lookup_key]): r[f"{schema.label}_approximate_median"] for r in agg}
        out["lookup"] = {"key": lookup_key, "table": table}
    return out


def _torch_bytes(obj: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _torch_load(data: bytes) -> Any:
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)  # never unpickle arbitrary objects


def pq_bytes(table) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def pq_read(data: bytes):
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data))


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
