"""ingest: read, validate, quarantine, de-duplicate, write an immutable segment, check drift."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import ConfigError, InvalidInputError, UsageError
from lifelong_cli.ops._base import Result, audited

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext

KINDS = ("examples", "labels", "feedback")
DRIFT_SAMPLE_ROWS = 100_000


@dataclass(frozen=True)
class IngestResult(Result):
    model: str
    batch: int | None
    status: str  # accepted | held | rejected | duplicate
    kind: str
    source: str
    input: str
    content_hash: str
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    rows_trainable: int = 0  # rows this batch makes trainable (purge rules applied; hold-out rows not counted)
    rows_holdout: int = 0  # rows this batch adds to the hold-out (the golden set's automatic part)
    labels_waiting: int = 0
    redelivery_of: int | None = None  # labels: an earlier batch with the same content, whose labels it restores
    labels_changed: int = 0  # labels: examples whose effective label this batch changes
    bad_fraction: float = 0.0
    max_bad_fraction: float = 0.0
    event_time_min: datetime | None = None
    event_time_max: datetime | None = None
    ignored_columns: list[str] = field(default_factory=list)
    top_reasons: dict[str, int] = field(default_factory=dict)
    drift: dict[str, Any] | None = None
    label_audit: dict[str, Any] | None = None  # a batch carrying labels: the audit's tests and figures
    hold: dict[str, Any] | None = None  # status held: why (cause, reason, figures)
    dry_run: bool = False
    message: str = ""
    next: str = ""


def ingest(ctx: AppContext, *, path: str, source: str = "default", kind: str = "examples",
           fmt: str | None = None, dry_run: bool = False,
           progress: Callable[[int, int], None] | None = None) -> IngestResult:
    """Ingest one batch (a file, a directory of files, or ``-`` for stdin).

    Re-ingesting identical content into the same model is a no-op (another model may ingest it too:
    each model has its own batches and segments, under its data directory). A batch whose bad-row share exceeds
    ``data.max_bad_fraction`` is recorded as rejected and nothing of it becomes trainable."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from lifelong_cli.data.readers import iter_chunks, open_input
    from lifelong_cli.data.schema import (
        HOLDOUT_COL,
        LINE,
        RAW,
        REASON,
        DataSchema,
        key_hash,
        missing_required,
        quarantine_schema,
        validate_chunk,
    )
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.store import batches, purge_rules

    if kind not in KINDS:
        raise UsageError(f"--kind {kind!r} is not one of {', '.join(KINDS)}", hint="llctl ingest FILE --kind examples")
    if fmt is not None and fmt not in ("csv", "jsonl", "parquet"):
        raise UsageError(f"--format {fmt!r} is not one of csv, jsonl, parquet", hint="llctl ingest FILE --format csv")
    source = (source or "default").strip()
    if not source or len(source) > 200:
        raise UsageError("--source must be 1 to 200 characters", hint="llctl ingest FILE --source crm-export")
    settings = ctx.config.settings
    schema = DataSchema.from_settings(settings.data)
    if kind == "examples" and not schema.features:
        raise ConfigError(f"{ctx.config.path}: data.features is empty", hint="describe the features in llctl.yaml (see config.example.yaml)")
    model = ctx.model
    data = DataStore(ctx.data_root)
    spool = ctx.config.state_dir / "spool"
    src = open_input(path, fmt=fmt, spool_dir=spool)
    try:
        with ctx.store.tx(write=False) as t:
            twin = batches.accepted_twin(t, model, kind, src.sha256)
            refs = batches.for_reading(t, model)
            rules = purge_rules.active(t, model)
            twin_row = batches.get(t, model, twin) if twin is not None and kind != "examples" else None
        content_hash, redelivery_of, relabels = src.sha256, None, 0
        if twin_row is not None:  # the same labels again: a no-op, unless they are no longer the ones in use
            relabels = _labels_not_in_use(data, schema, refs, rules, twin_row)
            if relabels:
                import hashlib

                redelivery_of, twin = twin, None
                newest = max((r.id for r in refs), default=0)
                content_hash = hashlib.sha256(f"{src.sha256}:redelivered-after:{newest}".encode()).hexdigest()
        if twin is None and redelivery_of is None:
            with ctx.store.tx(write=False) as t:
                on_hold = batches.held_twin(t, model, kind, src.sha256)
            if on_hold is not None:
                return IngestResult(model=model, batch=on_hold["id"], status="duplicate", kind=kind, source=source,
                                    input=src.label, content_hash=src.sha256, dry_run=dry_run,
                                    message=f"model '{model}': already ingested as batch {on_hold['id']}, which is on "
                                            f"hold ({(on_hold['detail'].get('hold') or {}).get('reason', 'held')}); "
                                            "nothing changed",
                                    next=f"`llctl data release {on_hold['id']} --reason ...` makes it trainable; "
                                         f"`llctl data reject {on_hold['id']} --reason ...` keeps it out")
        if twin is not None:
            return IngestResult(model=model, batch=twin, status="duplicate", kind=kind, source=source,
                                input=src.label, content_hash=src.sha256, dry_run=dry_run,
                                message=f"model '{model}': already ingested as batch {twin} (same content); nothing changed",
                                next="`llctl status` shows the data state")
        good_schema = schema.arrow_schema(kind)
        if kind == "examples":
            good_schema = good_schema.append(pa.field(HOLDOUT_COL, pa.bool_()))
        gw = data.writer(data.new_path(f"segments/{kind}"), good_schema) if not dry_run else None
        qw = data.writer(data.new_path("quarantine"), quarantine_schema(schema, kind)) if not dry_run else None
        try:
            counts = {"read": 0, "accepted": 0, "quarantined": 0, "duplicate": 0}
            reasons: dict[str, int] = {}
            tmin = tmax = None
            sample_parts: list[pa.Table] = []
            sample_rate = 1.0
            done_bytes = 0
            checked_columns = False
            batch_hashes: list = []
            label_parts: list[pa.Table] = []  # a labels or feedback batch's (key, label): its audit
            wanted = schema.columns(kind)

            def on_bytes(n: int) -> None:
                nonlocal done_bytes
                done_bytes += n
                if progress:
                    progress(min(done_bytes, src.size), src.size)

            for chunk, malformed in iter_chunks(src, wanted=wanted, chunk_rows=settings.data.chunk_rows,
                                                on_bytes=on_bytes, max_field_bytes=schema.max_field_bytes):
                if not checked_columns and (chunk.num_rows or src.columns):
                    missing = missing_required(src.columns, schema, kind)
                    if missing:
                        raise InvalidInputError(
                            f"{src.label}: missing required column(s) {', '.join(missing)} (has: {', '.join(src.columns[:20]) or 'none'})",
                            hint="fix the export, or the schema in llctl.yaml (data.features, data.key, data.event_time); nothing was ingested")
                    checked_columns = True
                good, bad = validate_chunk(chunk, schema, kind, first_line=counts["read"] + 1)
                counts["read"] += chunk.num_rows + len(malformed)
                if malformed:
                    mt = pa.table({**{c: pa.nulls(len(malformed), pa.string()) for c in wanted},
                                   REASON: pa.array([m.reason for m in malformed], pa.string()),
                                   LINE: pa.array([m.row for m in malformed], pa.int64()),
                                   RAW: pa.array([m.text for m in malformed], pa.string())})
                    bad = pa.concat_tables([bad, mt]) if bad.num_rows else mt
                if bad.num_rows:
                    counts["quarantined"] += bad.num_rows
                    for r in bad[REASON].to_pylist():
                        key = r.split(":")[0] + ": " + r.split(": ", 1)[-1] if ": " in r else r
                        reasons[key] = reasons.get(key, 0) + 1
                    if qw:
                        qw.write(bad)
                if good.num_rows:
                    batch_hashes.append(key_hash(good[schema.key], bits=64))
                    et = good[schema.event_time]
                    lo, hi = pc.min(et).as_py(), pc.max(et).as_py()
                    tmin = lo if tmin is None or (lo and lo < tmin) else tmin
                    tmax = hi if tmax is None or (hi and hi > tmax) else tmax
                    if kind == "examples":
                        good = good.append_column(HOLDOUT_COL, _holdout(good[schema.key], settings.data.holdout_fraction))
                        if counts["accepted"] == 0 and src.size:
                            est_rows = max(good.num_rows, int(src.size / max(1, chunk.nbytes) * chunk.num_rows))
                            sample_rate = min(1.0, DRIFT_SAMPLE_ROWS / est_rows)
                        sample_parts.append(_sample(good, sample_rate, counts["accepted"]))
                    else:
                        label_parts.append(good.select([schema.key, schema.label]))
                    counts["accepted"] += good.num_rows
                    if gw:
                        gw.write(good)
            if len(batch_hashes) > 1:  # one array (8 bytes a row), the chunks' freed
                batch_hashes[:] = [np.concatenate(batch_hashes)]
            seen, seen_h = (_stored_twins(data, schema, refs, batch_hashes, gw) if kind == "examples"
                            else (pa.array([], pa.string()), np.array([], np.uint64)))
            keep = _first_new(batch_hashes, (lambda idx: _batch_keys(gw, schema, idx)) if gw else None,
                              np.sort(seen_h), lambda hs: _seen_keys(seen, seen_h, hs))
            if keep is not None:  # duplicates are rare: the segment is rewritten only when there are some
                counts["accepted"] = int(pc.sum(keep).as_py() or 0)
                if gw:
                    gw.filter_rows(keep)
            counts["duplicate"] = counts["read"] - counts["quarantined"] - counts["accepted"]
            if counts["read"] == 0:
                raise InvalidInputError(f"{src.label}: no data rows", hint="nothing to ingest; check the upstream export")
            bad_fraction = counts["quarantined"] / counts["read"]
            max_bad = settings.data.max_bad_fraction
            status = "rejected" if bad_fraction > max_bad else "accepted"
            ignored = sorted(set(src.columns) - set(wanted)) if src.columns else []

            drift_doc, audit_doc, hold = None, None, None
            if status == "accepted":
                drift_doc, audit_doc, hold = _checks(ctx, data, schema, refs, rules, kind=kind, source=source,
                                                     sample=pa.concat_tables(sample_parts) if sample_parts else None,
                                                     labels=label_parts, redelivery=redelivery_of is not None)

            if dry_run:
                return IngestResult(model=model, batch=None, status=status, kind=kind, source=source, input=src.label,
                                    content_hash=src.sha256, rows_read=counts["read"], rows_accepted=counts["accepted"],
                                    rows_quarantined=counts["quarantined"], rows_duplicate=counts["duplicate"],
                                    bad_fraction=bad_fraction,
                                    max_bad_fraction=max_bad, event_time_min=tmin, event_time_max=tmax,
                                    ignored_columns=ignored, top_reasons=_top(reasons), drift=drift_doc,
                                    label_audit=audit_doc, hold=hold, dry_run=True,
                                    message=f"dry run: would {_verb(status, hold)} this batch for model '{model}'"
                                            + (f" ({hold['reason']})" if hold else ""),
                                    next="run again without --dry-run to ingest")
            seg_path = gw.commit() if status == "accepted" and counts["accepted"] else None
            if seg_path and kind != "examples" and redelivery_of is None:  # the more specific cause wins
                hold = _label_conflict(ctx, data, schema, refs, rules, seg_path) or hold
            if hold is not None and seg_path:
                status = "held"
            if seg_path is None:
                gw.abort()
            q_path = qw.commit() if counts["quarantined"] else None
            if not counts["quarantined"]:
                qw.abort()
            trainable, waiting = 0, 0  # counted once the batch is stored (below): purge rules and all
        except BaseException:
            for w in (gw, qw):
                if w is not None:
                    w.abort()
            raise

        args = {"path": src.label, "source": source, "kind": kind, "format": src.format}
        if status == "rejected":  # nothing of a rejected batch is accepted; the valid rows are only counted
            counts["valid"], counts["accepted"] = counts["accepted"], 0
        batch_id = None
        try:
            with audited(ctx, "ingest", args=args) as (t, entry):
                twin = batches.accepted_twin(t, model, kind, content_hash)
                if twin is None:
                    batch_id = batches.add(
                        t, model, kind=kind, source=source, content_hash=content_hash, status=status, input=src.label,
                        created_at=ctx.now(), created_by=ctx.actor, rows_read=counts["read"],
                        rows_accepted=counts["accepted"], rows_quarantined=counts["quarantined"],
                        rows_duplicate=counts["duplicate"], rows_trainable=trainable, event_time_min=tmin,
                        event_time_max=tmax, segment_path=seg_path, quarantine_path=q_path,
                        drifted=None if drift_doc is None else drift_doc["drifted"], drift=drift_doc,
                        detail={"bad_fraction": bad_fraction, "max_bad_fraction": max_bad, "top_reasons": _top(reasons),
                                "ignored_columns": ignored, "labels_waiting": waiting, "format": src.format,
                                "bytes": src.size, "rows_valid": counts.get("valid", counts["accepted"]),
                                **({"redelivery_of": redelivery_of, "content_sha256": src.sha256}
                                   if redelivery_of is not None else {}),
                                **({"label_audit": audit_doc} if audit_doc is not None else {}),
                                **({"hold": hold} if hold is not None else {})})
                    if batch_id is None:  # a concurrent ingest of the same content committed first
                        twin = batches.accepted_twin(t, model, kind, content_hash)
                if batch_id is not None:
                    entry.outcome = status
                    entry.detail = {"batch": batch_id, "rows_accepted": counts["accepted"],
                                    "rows_quarantined": counts["quarantined"]}
                else:
                    entry.outcome, entry.detail = "duplicate", {"batch": twin}
        except BaseException:  # the batch row was not written: its files must not linger unreferenced
            for p in (seg_path, q_path):
                if p:
                    data.remove(p)
            raise
        if batch_id is not None and seg_path and status == "accepted":  # the key index learns the batch now
            from lifelong_cli.data.keyindex import KeyIndex

            h = batch_hashes[0] if batch_hashes else np.array([], np.uint64)
            KeyIndex(data, schema.key, "examples" if kind == "examples" else "labels").add(
                batch_id, seg_path, h if keep is None else h[np.asarray(keep)])
        if batch_id is None:  # a concurrent ingest of the same content won the race
            for p in (seg_path, q_path):
                if p:
                    data.remove(p)
            return IngestResult(model=model, batch=twin, status="duplicate", kind=kind, source=source,
                                input=src.label, content_hash=src.sha256,
                                message=f"model '{model}': already ingested as batch {twin}; nothing changed")
    finally:
        src.cleanup()
    held_out = 0
    if batch_id is not None and seg_path and status == "accepted":  # what it makes trainable, as train reads it
        with ctx.store.tx(write=False) as t:
            refs = batches.for_reading(t, model)
            rules = purge_rules.active(t, model)
        trainable, held_out, waiting = trainable_counts(data, schema, refs, rules, batch_id, kind, seg_path)
        with ctx.store.tx() as t:
            batches.set_counts(t, model, batch_id, rows_trainable=trainable, rows_holdout=held_out,
                               labels_waiting=waiting)

    if status == "held":
        message = (f"model '{model}': batch {batch_id} HELD (stored, not trainable): {hold['cause']}: {hold['reason']}")
        look = (f"`llctl labels show {hold['examples'][0]['key']}` shows one" if hold.get("examples")
                else f"`llctl drift --batch {batch_id}` shows the drift" if hold["cause"] == "drift"
                else "`llctl data holds` shows the figures")
        nxt = (f"{look}; `llctl data release {batch_id} --reason ...` if the batch is right"
               + (" (its labels then win)" if kind != "examples" else "")
               + f", `llctl data reject {batch_id} --reason ...` if not")
    elif status == "rejected":
        message = (f"model '{model}': batch {batch_id} REJECTED: {bad_fraction:.1%} of {counts['read']} rows are bad "
                   f"(limit {max_bad:.0%}); nothing of it is trainable")
        nxt = f"inspect with `llctl quarantine show {batch_id}`; fix the upstream and ingest again"
    else:
        message = (f"model '{model}': batch {batch_id} accepted: {counts['accepted']} rows ({trainable} trainable"
                   + (f", {held_out} hold-out" if held_out else "") + ")"
                   + (f" — {waiting} label(s) wait for their example" if waiting else "")
                   + f", {counts['quarantined']} quarantined, {counts['duplicate']} duplicate")
        if redelivery_of is not None:
            message += (f"; a re-delivery of batch {redelivery_of}: its labels are in use again for "
                        f"{relabels} example(s)")
        if drift_doc and drift_doc["drifted"]:
            message += f"; DRIFT in {', '.join(drift_doc['drifted_features'])}"
            nxt = f"`llctl drift --batch {batch_id}` for details; if the upstream is broken, `llctl purge-data --batch {batch_id} --reason ...`"
        else:
            nxt = "`llctl train` to update the model" if trainable else "labels for these examples can follow with `llctl ingest FILE --kind labels`"
    return IngestResult(model=model, batch=batch_id, status=status, kind=kind, source=source, input=src.label,
                        content_hash=src.sha256, rows_read=counts["read"], rows_accepted=counts["accepted"],
                        rows_quarantined=counts["quarantined"], rows_duplicate=counts["duplicate"],
                        rows_trainable=trainable, rows_holdout=held_out, labels_waiting=waiting,
                        redelivery_of=redelivery_of, labels_changed=relabels, bad_fraction=bad_fraction,
                        max_bad_fraction=max_bad, event_time_min=tmin, event_time_max=tmax, ignored_columns=ignored,
                        top_reasons=_top(reasons), drift=drift_doc, label_audit=audit_doc, hold=hold,
                        message=message, next=nxt)


def _top(reasons: dict[str, int], n: int = 5) -> dict[str, int]:
    return dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:n])


def _first_new(batch_hashes: list, batch_keys_of, seen_hashes, seen_keys_of):
    """Which rows of the batch to keep: the first of each key, and none ingested before.

    None when every row is kept. Works on 64-bit key hashes (8 bytes a row, sorted once at the
    end: memory stays flat with the file size); rows whose hash collides are compared by their
    actual keys, so a collision never drops a row."""
    import numpy as np
    import pyarrow as pa

    if not batch_hashes:
        return None
    h = np.concatenate(batch_hashes)
    n = len(h)
    order = np.argsort(h, kind="stable")
    hs = h[order]
    repeat = np.zeros(n, bool)
    repeat[order[1:][hs[1:] == hs[:-1]]] = True  # a later row with the hash of an earlier one
    in_seen = np.zeros(n, bool)
    if len(seen_hashes):
        pos = np.searchsorted(seen_hashes, h)
        in_seen = (pos < len(seen_hashes)) & (seen_hashes[np.minimum(pos, len(seen_hashes) - 1)] == h)
    suspects = np.flatnonzero(repeat | in_seen)
    if len(suspects) == 0:
        return None
    keep = np.ones(n, bool)
    if batch_keys_of is None:  # a dry run has no segment to read keys back from: trust the hashes
        keep[suspects] = False
        return pa.array(keep)
    keys = batch_keys_of(suspects)  # the actual keys of the few suspect rows...
    groups = {}
    first = np.flatnonzero(np.isin(h, h[suspects]))  # ...and of every row sharing their hashes
    for i, k in zip(first, batch_keys_of(first), strict=True):
        groups.setdefault(k, []).append(i)
    seen_set = set(seen_keys_of(h[suspects])) if in_seen.any() else set()
    for i, k in zip(suspects, keys, strict=True):
        if k in seen_set or groups[k][0] != i:
            keep[i] = False
    return None if keep.all() else pa.array(keep)


def _batch_keys(writer, schema, idx) -> list[str]:
    """The keys of rows ``idx`` of this batch, read back from its (complete, not yet visible) segment."""
    return writer.read_back(columns=[schema.key])[schema.key].take(idx).to_pylist()


def _seen_keys(seen, seen_h, hashes) -> list[str]:
    """Keys ingested before whose hash is one of ``hashes``."""
    import numpy as np

    return seen.take(np.flatnonzero(np.isin(seen_h, hashes))).to_pylist()


def _holdout(keys, fraction: float):
    """Deterministic per key: the same example is always in (or out of) the hold-out. The membership
    is written into the batch's segment, so a change of hash never moves a stored row."""
    import pyarrow as pa

    from lifelong_cli.data.schema import in_sample

    return pa.array(in_sample(keys, fraction))


def _sample(table, rate: float, offset: int):
    import numpy as np

    if rate >= 1.0:
        return table
    rng = np.random.default_rng(offset + 7)
    return table.filter(rng.random(table.num_rows) < rate)


def trainable_counts(data, schema, refs, rules, batch_id: int, kind: str, seg_path: str) -> tuple[int, int, int]:
    """What the stored batch makes trainable, read as ``train`` reads it (purge rules applied, the
    effective label of each example): (training rows, hold-out rows, labels waiting for their
    example). An examples batch counts its rows with a label; a labels batch the examples whose
    effective label is now its own. Row group by row group (memory stays flat with the batch's size)."""
    import pyarrow.compute as pc

    from lifelong_cli.data import reader as rd

    rules = rd.rules_of(rules)
    trainable = held = waiting = 0
    by_id = {r.id: r for r in refs}
    with data.parquet(seg_path) as pf:
        for g in range(pf.metadata.num_row_groups):
            if kind == "examples":
                rows = rd.batch_rows(data, schema, refs, rules, pf.read_row_group(g), by_id[batch_id])
            else:
                keys = pf.read_row_group(g, columns=[schema.key])[schema.key]
                rows = rd.rows_for(data, schema, refs, rules, keys)
                rows = rows.filter(pc.fill_null(pc.equal(rows[rd.LABEL_BATCH], batch_id), False))
                waiting += len(pc.unique(keys)) - len(rd.examples_for(data, schema, refs, keys, [schema.key]))
            h = int(pc.sum(pc.fill_null(rows[rd.HOLDOUT], False)).as_py() or 0)
            held += h
            trainable += rows.num_rows - h
    return int(trainable), int(held), int(waiting)


def _label_conflict(ctx, data, schema, refs, rules, seg_path: str) -> dict[str, Any] | None:
    """A labels or feedback batch that contradicts the labels in use: the hold it earns (cause,
    reason, figures, a few examples) when it changes more than ``data.label_conflict_tolerance`` of
    its examples' labels in use and ``data.on_label_conflict`` is ``hold``; else None."""
    import pyarrow.compute as pc


    d = ctx.config.settings.data
    if d.on_label_conflict != "hold":
        return None
    new = data.read(seg_path, columns=[schema.key, schema.label])
    now, _, differs = _against_labels_in_use(data, schema, refs, rules, new)
    compared = pc.is_valid(now)
    differs = pc.and_(differs, compared)
    n_compared = int(pc.sum(compared).as_py() or 0)
    changed = int(pc.sum(differs).as_py() or 0)
    share = changed / n_compared if n_compared else 0.0
    if share <= d.label_conflict_tolerance:
        return None
    idx = pc.indices_nonzero(differs).slice(0, 3)
    examples = [{"key": k, "in_use": a, "new": b} for k, a, b in zip(
        new[schema.key].take(idx).to_pylist(), now.take(idx).to_pylist(), new[schema.label].take(idx).to_pylist(),
        strict=True)]
    eg = "; e.g. " + ", ".join(f"{e['key']}: {e['in_use']} → {e['new']}" for e in examples)
    return {"cause": "label conflict", "changed": changed, "compared": n_compared, "share": round(share, 4),
            "tolerance": d.label_conflict_tolerance, "examples": examples,
            "reason": f"changes {changed} of the {n_compared} labels in use for its examples ({share:.1%}, "
                      f"tolerance {d.label_conflict_tolerance:.0%}){eg}"}


def _labels_not_in_use(data, schema, refs, rules, twin: dict[str, Any]) -> int:
    """How many examples would get another label from a re-delivery of an earlier labels batch's
    content: the rows whose label is not their example's effective label now (a later delivery
    replaced it, a purge dropped it), and any ``--hard`` removed from its segment."""
    import pyarrow.compute as pc


    seg = data.read(twin["segment_path"], columns=[schema.key, schema.label]) if twin.get("segment_path") else None
    if seg is None:
        return int(twin.get("rows_accepted") or 0)
    removed = max(0, int(twin.get("rows_accepted") or 0) - seg.num_rows)
    return removed + int(pc.sum(_against_labels_in_use(data, schema, refs, rules, seg)[2]).as_py() or 0)


def _against_labels_in_use(data, schema, refs, rules, labels):
    """Each row of ``labels`` (key, label) against its example's effective label now: the label in
    use (null: none), whether the example is stored, and whether the row would change its label."""
    import pyarrow.compute as pc

    from lifelong_cli.data import reader as rd

    keys = labels[schema.key]
    eff = rd.rows_for(data, schema, refs, rules, keys)
    now = eff[schema.label].take(pc.index_in(keys, value_set=eff[schema.key]))
    stored = pc.is_in(keys, value_set=rd.examples_for(data, schema, refs, keys, [schema.key])[schema.key])
    same = pc.fill_null(pc.equal(now, labels[schema.label].cast(now.type)), False)
    return now, stored, pc.and_(stored, pc.invert(same))


def _stored_twins(data, schema, refs, batch_hashes, writer):
    """The stored example keys that may repeat a key of this batch, and their hashes: the batch's
    hashes looked up in the key index, each hit read back and compared (a dry run, with no segment
    to read its keys from, gets the stored rows sharing a hash)."""
    import numpy as np
    import pyarrow as pa

    from lifelong_cli.data.keyindex import KeyIndex, hashes

    none = pa.array([], pa.string()), np.array([], np.uint64)
    if not batch_hashes or not any(r.kind == "examples" for r in refs):
        return none
    index = KeyIndex(data, schema.key, "examples")
    h = np.concatenate(batch_hashes)
    q, b, pos = index.hits(refs, h)
    if len(q) == 0:
        return none
    if writer is None:
        by_id = {r.id: r for r in refs}
        keys = pa.concat_arrays([data.read_at(by_id[int(x)].segment_path, pos[b == x], columns=[schema.key])[schema.key]
                                 .combine_chunks() for x in np.unique(b)])
    else:
        q = np.unique(q)
        keys = index.find(refs, pa.array(_batch_keys(writer, schema, q), pa.string()), key_hashes=h[q])[schema.key]
        keys = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    return keys, hashes(keys)


def _rolling_through(ctx) -> bool:
    """Whether the drift SLO is relaxed now (``data release --roll-through``, the roll-through
    playbook): a real shift is being learned, so drift is flagged but holds no batch."""
    from lifelong_cli.store import slo

    with ctx.store.tx(write=False) as t:
        return "drift" in slo.relaxed(t, ctx.model, now=ctx.now())


def _verb(status: str, hold: dict[str, Any] | None) -> str:
    return "HOLD" if hold else "accept" if status == "accepted" else "REJECT"


def _checks(ctx, data, schema, refs, rules, *, kind: str, source: str, sample, labels: list,
            redelivery: bool) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None]:
    """What ingest checks of an accepted batch before it is stored (ops/batch_audit.py): an examples
    batch's drift against the model's newest rows (purge rules applied), whether its rows replay
    stored ones, and the audit of its labels. (drift document, label audit, the hold they earn)."""
    import pyarrow as pa
    import pyarrow.compute  # noqa: F401 - pa.compute

    from lifelong_cli.data import reader as rd
    from lifelong_cli.ops import batch_audit

    settings = ctx.config.settings
    drift_doc = hold = None
    if kind == "examples" and sample is not None:
        ref = rd.read_recent(data, schema, refs, rules, settings.drift.reference_rows)
        if ref.num_rows:
            if settings.drift.on_ingest:
                drift_doc = drift_report(ctx, schema, ref, sample)
            hold = batch_audit.drift_hold(drift_doc, ref, sample, schema, settings)
            if hold is not None and _rolling_through(ctx):
                drift_doc["rolled_through"], hold = hold["reason"], None
            hold = hold or batch_audit.replay_hold(ref, sample, schema, settings)
        labelled = sample.filter(pa.compute.is_valid(sample[schema.label]))
    else:
        labelled = pa.concat_tables(labels) if labels else None
    audit_doc = None
    if labelled is not None and not redelivery and labelled.num_rows:
        audit_doc = batch_audit.label_audit(ctx, data, schema, refs, rules, source=source, labelled=labelled)
        hold = hold or audit_doc.get("hold")
    return drift_doc, audit_doc, hold


def drift_report(ctx, schema, ref, current) -> dict[str, Any]:
    """Compare ``current`` rows with reference rows using the configured backend; a JSON-able dict."""
    import numpy as np

    from lifelong_cli.drift import get_detector

    d = ctx.config.settings.drift

    # Label drift only when every current row has a label: unlabelled examples (labels arrive
    # later) would otherwise read as a rise in the label's null rate.
    label = schema.label if current[schema.label].null_count == 0 else None

    def arrays(t):
        out = {}
        for name in schema.numeric_features:
            out[name] = t[name].to_numpy(zero_copy_only=False).astype(np.float64)
        for name in schema.categorical_features:
            out[name] = np.array(t[name].cast("string").to_pylist(), dtype=object)
        if label is not None:
            lab = t[schema.label]
            out[schema.label] = (np.array(lab.to_pylist(), dtype=object) if schema.label_type == "category"
                                 else lab.to_numpy(zero_copy_only=False).astype(np.float64))
        return out

    det = get_detector(d.backend, alpha=d.alpha, correction=d.correction,
                       null_rate_tolerance=d.null_rate_tolerance, min_samples=d.min_samples)
    report = det.compare(arrays(ref), arrays(current), numeric=schema.numeric_features,
                         categorical=schema.categorical_features, label=label)
    doc = report.to_dict()
    doc["drifted_features"] = report.drifted_features()
    doc["hint"] = report.hint()
    doc["n_reference"] = int(ref.num_rows)
    doc["n_current"] = int(current.num_rows)
    return doc
