"""feedback export: outcomes that serving received for the model, as feedback rows `llctl ingest --kind
feedback` takes.

`POST /v1/feedback` (or `/v1/models/{name}/feedback`) labels a request by its id; the prediction log
holds the example keys each request carried (the schema's key column in the rows). Joined, they
become rows of (key, event time, label) — the feedback arrives as late labels for those examples. Feedback for a
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
    model: str
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

    from lifelong_cli.fsutil import atomic_write_bytes
    from lifelong_cli.store import predictions

    s = ctx.config.settings.data
    with ctx.store.tx(write=False) as t:
        rows = predictions.feedback_with_keys(t, ctx.model, after_id=after_id)
        last = predictions.last_feedback_id(t, ctx.model)
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
        raise NotFoundError(f"model '{ctx.model}': no feedback to export after id {after_id}"
                            + (f" ({without_key} without an example key)" if without_key else ""),
                            hint="clients send the example key in each row and POST /v1/feedback "
                            "(/v1/models/NAME/feedback) with the request id")
    atomic_write_bytes(ctx.cwd / Path(out), buf.getvalue().encode())
    return FeedbackExport(model=ctx.model, path=out, rows=exported, without_key=without_key, last_id=last,
                          message=f"model '{ctx.model}': {exported} feedback row(s) written to {out}"
                          + (f"; {without_key} skipped (no example key)" if without_key else ""),
                          next=f"`llctl ingest {out} --kind feedback`; next time --after-id {last}")
