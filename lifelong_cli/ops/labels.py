"""labels show: an example's label history — every delivery, and the one training uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import NotFoundError, UsageError
from lifelong_cli.ops._base import Result

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class LabelHistory(Result):
    model: str
    key: str
    effective: Any  # the label training uses (None: the example is not trainable)
    effective_batch: int | None  # the delivery it comes from (the examples batch: its own label)
    trainable: bool
    holdout: bool | None  # the example is in the hold-out (never trained on, part of the golden set)
    hidden_by: list[int]  # purge rules hiding the example itself
    deliveries: list[dict[str, Any]]  # oldest first: batch, kind, source, ingested_at, label, status, rules
    message: str
    next: str = ""


def labels_show(ctx: AppContext, *, key: str) -> LabelHistory:
    """The deliveries of ``key``'s label in this model, oldest first, each with its status: ``in use``
    (training's label: the newest delivery no purge rule drops), ``replaced by batch N`` (a newer
    delivery is in use), ``dropped by purge rule N``; and the example row's own label."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from lifelong_cli.data import reader as rd
    from lifelong_cli.data.schema import DataSchema
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.store import batches, purge_rules

    if not key or len(key) > 10_000:
        raise UsageError("KEY must be 1 to 10,000 characters", hint="llctl labels show user-000123")
    model = ctx.model
    schema = DataSchema.from_settings(ctx.config.settings.data)
    data = DataStore(ctx.data_root)
    with ctx.store.tx(write=False) as t:
        refs = batches.for_reading(t, model)
        rules = rd.rules_of(purge_rules.active(t, model))
    keys = pa.array([key], pa.string())
    example = rd.examples_for(data, schema, refs, keys)
    every = rd.all_labels_for(data, schema, refs, keys).sort_by([(rd.LABEL_BATCH, "ascending")])
    used = rd.rows_for(data, schema, refs, rules, keys, holdout="include")
    held = _held_deliveries(ctx, data, schema, model, key)
    if example.num_rows == 0 and every.num_rows == 0 and not held:
        raise NotFoundError(f"model '{model}' has no example or label with key {key!r}",
                            hint="check the key (the data.key column) and `--model`; purged rows still show, hard-purged ones do not")
    by_id = {r.id: r for r in refs}
    with ctx.store.tx(write=False) as t:
        ingested = {row["id"]: row["created_at"] for row in batches.created_at_of(
            t, model, [*every[rd.LABEL_BATCH].to_pylist(), *example[rd.BATCH].to_pylist()])}
    in_use = used[rd.LABEL_BATCH][0].as_py() if used.num_rows else None
    in_use_batch = (in_use if in_use is not None else used[rd.BATCH][0].as_py()) if used.num_rows else None
    sources = {r.id: r.source for r in refs}

    deliveries: list[dict[str, Any]] = []
    hidden_by: list[int] = []
    holdout = None
    if example.num_rows:
        row = example.slice(0, 1)
        holdout = bool(row[rd.HOLDOUT][0].as_py())
        probe = row.append_column(rd.LABEL_BATCH, pa.nulls(1, pa.int64()))
        hidden_by = [r.id for r in rules if r.mask(probe, schema)[0].as_py()]
        bid = row[rd.BATCH][0].as_py()
        own = row[schema.label][0].as_py()
        status = ("hidden by purge rule " + ", ".join(map(str, hidden_by)) if hidden_by
                  else "in use" if in_use_batch == bid and in_use is None
                  else "no label" if own is None else _replaced(in_use))
        deliveries.append({"batch": bid, "kind": "examples", "source": sources.get(bid), "ingested_at": ingested.get(bid),
                           "label": own, "status": status, "rules": hidden_by})
    for i in range(every.num_rows):
        bid = every[rd.LABEL_BATCH][i].as_py()
        label = every["_late_label"][i].as_py()
        dropping: list[int] = []
        if example.num_rows:  # the rule conditions on the row are the example's
            view = example.slice(0, 1).set_column(example.schema.get_field_index(schema.label), schema.label,
                                                  pa.array([label], example.schema.field(schema.label).type))
            view = view.append_column(rd.LABEL_BATCH, pa.array([bid], pa.int64()))
            dropping = [r.id for r in rules if r.drops(view, schema, sources)[0].as_py()]
        status = ("waiting for its example" if not example.num_rows
                  else "dropped by purge rule " + ", ".join(map(str, dropping)) if dropping
                  else "in use" if bid == in_use and not hidden_by else _replaced(in_use))
        deliveries.append({"batch": bid, "kind": by_id[bid].kind if bid in by_id else "labels",
                           "source": sources.get(bid), "ingested_at": ingested.get(bid), "label": label,
                           "status": status, "rules": dropping})
    deliveries.extend(held)
    deliveries.sort(key=lambda d: d["batch"])
    effective = used[schema.label][0].as_py() if used.num_rows else None
    trainable = used.num_rows > 0 and not bool(pc.any(pc.fill_null(used[rd.HOLDOUT], False)).as_py())
    if used.num_rows:
        where = "its own label" if in_use is None else f"the delivery of batch {in_use}"
        message = (f"model '{model}': {key!r}: training uses label {effective!r} ({where}); "
                   f"{len(deliveries)} deliver{'y' if len(deliveries) == 1 else 'ies'}"
                   + ("; in the hold-out (golden set), never trained on" if holdout else ""))
    elif hidden_by:
        message = f"model '{model}': {key!r} is hidden by purge rule(s) {', '.join(map(str, hidden_by))}: not trainable"
    elif not example.num_rows:
        message = f"model '{model}': {key!r}: {every.num_rows} label(s) wait for their example"
    else:
        message = f"model '{model}': {key!r} has no label in use: not trainable"
    nxt = ("`llctl purge-data --batch N --reason ...` drops a delivery (the one before it is used again); "
           "`llctl purge-data --undo RULE` brings it back")
    return LabelHistory(model=model, key=key, effective=effective, effective_batch=in_use_batch, trainable=trainable,
                        holdout=holdout, hidden_by=hidden_by, deliveries=deliveries, message=message, next=nxt)


def _replaced(in_use: int | None) -> str:
    return f"replaced by batch {in_use}" if in_use is not None else "not in use"


def _held_deliveries(ctx: AppContext, data, schema, model: str, key: str) -> list[dict[str, Any]]:
    """The key's label rows in the model's batches on hold: stored, not trainable until released."""
    import pyarrow.compute as pc

    from lifelong_cli.store import batches

    with ctx.store.tx(write=False) as t:
        on_hold = [b for b in batches.held(t, model) if b["segment_path"]]
    out = []
    for b in on_hold:
        seg = data.read(b["segment_path"], columns=[schema.key, schema.label])
        for label in seg.filter(pc.equal(seg[schema.key], key))[schema.label].to_pylist():
            out.append({"batch": b["id"], "kind": b["kind"], "source": b["source"], "ingested_at": b["created_at"],
                        "label": label, "rules": [],
                        "status": "on hold: " + ((b["detail"] or {}).get("hold") or {}).get("cause", "held")})
    return out
