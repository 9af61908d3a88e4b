"""golden import: a labelled golden set, optionally sliced by a column, never trained on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lifelong_cli.errors import InvalidInputError, UsageError
from lifelong_cli.ops._base import Result, audited

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class GoldenImportResult(Result):
    model: str
    batch: int | None
    status: str
    rows: int
    rows_quarantined: int
    slices: dict[str, int] = field(default_factory=dict)
    message: str = ""


def golden_import(ctx: AppContext, *, path: str, slice_by: str | None = None, fmt: str | None = None,
                  name: str = "golden", dry_run: bool = False) -> GoldenImportResult:
    """Store a golden set. Rows are validated like examples and must carry a label; ``slice_by``
    names a column of the file whose values name the slices (e.g. an old task, a segment). The set
    belongs to the model the command acts on; importing the same file for another model is not a
    duplicate."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from lifelong_cli.data.reader import SLICE
    from lifelong_cli.data.readers import iter_chunks, open_input
    from lifelong_cli.data.schema import DataSchema, missing_required, validate_chunk
    from lifelong_cli.data.segments import DataStore
    from lifelong_cli.store import batches

    schema = DataSchema.from_settings(ctx.config.settings.data)
    if slice_by is not None and not slice_by.strip():
        raise UsageError("--slice-by needs a column name", hint="llctl golden import FILE --slice-by task")
    model = ctx.model
    data = DataStore(ctx.data_root)
    src = open_input(path, fmt=fmt, spool_dir=ctx.config.state_dir / "spool")
    try:
        with ctx.store.tx(write=False) as t:
            twin = batches.accepted_twin(t, model, "golden", src.sha256)
        if twin is not None:
            return GoldenImportResult(model, twin, "duplicate", 0, 0,
                                      message=f"model '{model}': already imported as golden batch {twin}")
        wanted = schema.columns("golden") + ([slice_by] if slice_by and slice_by not in schema.columns("golden") else [])
        out_schema = schema.arrow_schema("golden").append(pa.field(SLICE, pa.string()))
        good_parts, bad_rows, read = [], 0, 0
        for chunk, malformed in iter_chunks(src, wanted=wanted, chunk_rows=ctx.config.settings.data.chunk_rows):
            missing = missing_required(src.columns, schema, "golden")
            if slice_by and slice_by not in src.columns:
                missing.append(slice_by)
            if missing:
                raise InvalidInputError(f"{src.label}: missing column(s) {', '.join(missing)}",
                                        hint="a golden set needs the key, the label, the features (and the --slice-by column)")
            good, bad = validate_chunk(chunk, schema, "golden", first_line=read + 1)
            read += chunk.num_rows + len(malformed)
            bad_rows += bad.num_rows + len(malformed)
            if good.num_rows:
                if slice_by:
                    tags = pa.table({schema.key: pc.utf8_trim_whitespace(pc.cast(chunk[schema.key], pa.string())),
                                     SLICE: pc.binary_join_element_wise(f"{slice_by}=", pc.cast(chunk[slice_by], pa.string()), "")})
                    tags = tags.group_by(schema.key, use_threads=False).aggregate([(SLICE, "first")])
                    good = good.join(tags.rename_columns([schema.key, SLICE]), schema.key, join_type="left outer")
                else:
                    good = good.append_column(SLICE, pa.array([name] * good.num_rows, pa.string()))
                good_parts.append(good)
        rows = sum(p.num_rows for p in good_parts)
        if rows == 0:
            raise InvalidInputError(f"{src.label}: no valid labelled rows for a golden set ({bad_rows} bad)",
                                    hint="`llctl ingest` checks the same rules; every golden row needs a label")
        table = pa.concat_tables(good_parts)
        if dry_run:
            slices = {r["values"]: r["counts"] for r in pc.value_counts(table[SLICE]).to_pylist()}
            return GoldenImportResult(model, None, "dry-run", rows, bad_rows, slices,
                                      f"dry run: would import {rows} golden rows in {len(slices)} slice(s) "
                                      f"for model '{model}'")
        w = data.writer(data.new_path("segments/golden"), out_schema)
        w.write(table)
        seg = w.commit()
        slices = {r["values"]: r["counts"] for r in pc.value_counts(table[SLICE]).to_pylist()}
        try:
            with audited(ctx, "golden-import", args={"path": src.label, "slice_by": slice_by}) as (t, entry):
                bid = batches.add(
                    t, model, kind="golden", source=name, content_hash=src.sha256, status="accepted", input=src.label,
                    created_at=ctx.now(), created_by=ctx.actor, rows_read=read, rows_accepted=rows,
                    rows_quarantined=bad_rows, rows_duplicate=0, rows_trainable=0, segment_path=seg,
                    detail={"slices": slices})
                twin = batches.accepted_twin(t, model, "golden", src.sha256) if bid is None else None
                entry.outcome = "ok" if bid is not None else "duplicate"
                entry.detail = {"batch": bid if bid is not None else twin, "rows": rows}
        except BaseException:  # no batch names the segment: it must not linger
            data.remove(seg)
            raise
        if bid is None:  # a concurrent import of the same file committed first
            data.remove(seg)
            return GoldenImportResult(model, twin, "duplicate", 0, 0,
                                      message=f"model '{model}': already imported as golden batch {twin}")
    finally:
        src.cleanup()
    return GoldenImportResult(model, bid, "accepted", rows, bad_rows, slices,
                              f"model '{model}': golden batch {bid}: {rows} rows in {len(slices)} slice(s)"
                              + (f", {bad_rows} bad row(s) skipped" if bad_rows else ""))
