"""feedback export: outcomes that serving received, as feedback rows `llctl ingest --kind feedback` takes.

`POST /v1/feedback` labels a request by its id; the prediction log holds the example keys each
request carried (the schema's key column in the rows). Joined, they become rows of
(key, event time, label) — the feedback arrives as late labels for those examples. Feedback for a
request whose rows carried no key cannot be joined to an example and is counted, not exported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lifelong_cli.errors import NotFoundError
from lifelong_cli.ops._base import Result

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class FeedbackExport(Result):
    path: str | None
    rows: int
    without_key: int
    last_id: int | None
    message: str
    next: str = ""


def export(ctx: AppContext, *, out: str, after_id: int = 0) -> FeedbackExport:
    import csv
    import io
    from pathlib import Path

    from lifelong_cli.ops.fsutil import atomic_write_bytes

    s = ctx.config.settings.data
    with ctx.store.tx(write=False) as t:
        rows = t.rows("SELECT f.id, f.ts, f.row_index, f.label, p.keys FROM feedback f JOIN predictions p "
                      "ON p.request_id = f.request_id AND p.ok = :t WHERE f.id > :after ORDER BY f.id",
                      {"after": after_id, "t": True}, types={"ts": "ts", "keys": "json"})
        last = t.scalar("SELECT max(id) FROM feedback")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([s.key, s.event_time, s.label])
    exported, without_key, seen = 0, 0, set()
    for r in rows:
        keys = r["keys"] or []
        key = keys[r["row_index"]] if 0 <= r["row_index"] < len(keys) else None
        if key is None or r["label"] is None:
            without_key += 1
            continue
        if (key, r["label"]) in seen:
            continue
        seen.add((key, r["label"]))
        w.writerow([key, r["ts"].isoformat().replace("+00:00", "Z"), r["label"]])
        exported += 1
    if not exported:
        raise NotFoundError(f"no feedback to export after id {after_id}"
                            + (f" ({without_key} without an example key)" if without_key else ""),
                            hint="clients send the example key in each row and POST /v1/feedback with the request id")
    atomic_write_bytes(ctx.cwd / Path(out), buf.getvalue().encode())
    return FeedbackExport(out, exported, without_key, last,
                          f"{exported} feedback row(s) written to {out}"
                          + (f"; {without_key} skipped (no example key)" if without_key else ""),
                          f"`llctl ingest {out} --kind feedback`; next time --after-id {last}")
