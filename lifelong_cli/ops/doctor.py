"""doctor: is this workspace consistent? Each check says what it found and what to do. The model's
own rows are checked (``--model``); store-wide problems (other models' state rows, stray files under
the data root, the audit log's guard) are reported once.

``doctor_fix`` removes what a crash (kill -9, power loss) leaves behind: temp files of unfinished
atomic writes under the data root, the registry and the ingest spool, segment files no batch
refers to, and training snapshots built from segments a hard purge has since rewritten. Only files older than ``min_age`` are touched (a running ingest's files are younger), and
a file any batch of any model refers to is never removed (checked again inside the transaction that
writes the one ``doctor fix`` audit entry)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import LlctlError
from lifelong_cli.fsutil import TMP_SUFFIX
from lifelong_cli.ops._base import Result

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    hint: str | None = None


@dataclass(frozen=True)
class DoctorResult(Result):
    ok: bool
    checks: list[Check] = field(default_factory=list)
    model: str | None = None  # the model whose rows were checked (None: it could not be chosen)

    @property
    def findings(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def doctor(ctx: AppContext) -> DoctorResult:
    """Run every check; never raises for a finding (the CLI exits 3 when there are any)."""
    checks: list[Check] = []
    try:
        cfg = ctx.config
    except LlctlError as exc:
        checks.append(Check("config", False, exc.message, exc.hint))
        return DoctorResult(ok=False, checks=checks)
    checks.append(Check("config", True, str(cfg.path) if cfg.path else "defaults (no llctl.yaml)"))

    for name, p in _file_roots(cfg):
        if "://" in p:
            checks.append(Check(name, True, f"{p} (remote; not checked)"))
        elif Path(p).is_dir():
            leftovers = _temp_files(Path(p))
            if leftovers:
                checks.append(Check(name, False, f"{len(leftovers)} unfinished temp file(s) under {p}, e.g. {leftovers[0]}",
                                    "left by an interrupted write; readers ignore them; "
                                    "`llctl doctor --fix` removes them (after showing them)"))
            else:
                checks.append(Check(name, True, p))
        elif name == "spool":
            checks.append(Check(name, True, f"{p} (nothing spooled yet)"))
        else:
            checks.append(Check(name, False, f"{p} does not exist", "run `llctl init` in the workspace"))

    try:
        store = ctx.raw_store
        rev = store.revision()
    except LlctlError as exc:
        checks.append(Check("store", False, exc.message, exc.hint))
        return DoctorResult(ok=False, checks=checks)
    checks.append(Check("store", True, f"reachable at {store.display_url}"))
    from lifelong_cli.store.db import HEAD_REVISION

    if rev != HEAD_REVISION:
        checks.append(Check("migrations", False, f"store at {rev or 'no schema'}, llctl needs {HEAD_REVISION}",
                            "run `llctl db upgrade`"))
        return DoctorResult(ok=False, checks=checks)
    checks.append(Check("migrations", True, f"at {rev}"))
    try:
        model = ctx.model
    except LlctlError as exc:
        checks.append(Check("model", False, exc.message, exc.hint))
        model = None
    checks.extend(_store_checks(ctx, store, model))
    from lifelong_cli.notify import doctor_check

    if model is not None and (found := doctor_check(ctx)) is not None:
        checks.append(Check("notifications", *found))
    return DoctorResult(ok=all(c.ok for c in checks), checks=checks, model=model)


def _store_checks(ctx: AppContext, store, model: str | None) -> list[Check]:
    """The rows of ``model``, and once for the whole store: every model's state rows, files under the
    data root that no batch of any model refers to, the audit log's guard."""
    from lifelong_cli.store import batches, control, deployment, health

    out: list[Check] = []
    now = ctx.now()
    with store.tx(write=False) as t:
        rows = health.models_state_rows(t)
        broken = [r["name"] for r in rows if (r["deployment"], r["control"]) != (1, 1)]
        others = [r["name"] for r in rows if r["name"] != model]
        if model is not None:
            out.append(Check("model", True, f"'{model}'" + (f"; the store also holds {', '.join(others)}" if others else "")))
        out.append(Check("singletons", not broken,
                         f"model(s) {', '.join(broken)} lack their deployment or training-control row" if broken
                         else f"deployment and training-control rows present for {len(rows)} model(s)",
                         "the store was edited by hand; restore it from a backup" if broken else None))
        if model is not None and model not in broken:
            out += _model_checks(t, model, now, deployment.get(t, model), control.get(t, model))
        seg_rows = batches.segment_paths(t)
        referenced = _referenced(seg_rows)
        guard = health.append_only_guard(t)
    if "://" not in ctx.config.data_root and Path(ctx.config.data_root).is_dir():
        stale = _stale_snapshots(Path(ctx.config.data_root), {b["id"]: b["segment_path"] for b in seg_rows})
        out.append(Check("snapshots", not stale,
                         f"{len(stale)} training snapshot(s) built from segment files the batches no longer name, "
                         f"e.g. {stale[0]}" if stale else "every training snapshot matches its segments",
                         "left by a `purge-data --hard` interrupted after it committed (they may still hold the rows "
                         "it removed), or the workspace was moved; never read; `llctl doctor --fix` removes them"
                         if stale else None))
        orphans = _unreferenced_segments(Path(ctx.config.data_root), referenced)
        out.append(Check("unreferenced segments", not orphans,
                         f"{len(orphans)} segment file(s) no batch refers to, e.g. {orphans[0]}" if orphans
                         else "every segment file belongs to a batch",
                         "left by an ingest interrupted just before it committed (or replaced by a hard purge); "
                         "readers never see them; `llctl doctor --fix` removes them (after showing them)"
                         if orphans else None))
    out.append(Check("audit log", guard, "append-only guard installed" if guard else "append-only trigger missing",
                     None if guard else "run `llctl db upgrade`; if it persists the store was edited by hand"))
    return out


def _model_checks(t: Any, model: str, now: Any, d: dict[str, Any], c: Any) -> list[Check]:
    """One model's deployment pointers, training lease and segments."""
    from lifelong_cli.store import batches, versions

    out: list[Check] = []
    known = {v["id"] for v in versions.lineage_graph(t, model)}
    dangling = {k: d[k] for k in ("stable_version", "canary_version", "training_head") if d[k] is not None and d[k] not in known}
    out.append(Check("deployment pointers", not dangling,
                     f"model '{model}': point at missing versions: {dangling}" if dangling
                     else f"model '{model}': generation {d['generation']}",
                     "`llctl rollback --to V` to a version that exists" if dangling else None))
    if c.lease_holder and c.lease_expires_at and c.lease_expires_at <= now:
        out.append(Check("training lease", True, f"model '{model}': expired lease of {c.lease_holder} "
                                                 "(the next train takes it over)"))
    else:
        out.append(Check("training lease", True, f"model '{model}': " + (f"held by {c.lease_holder}" if c.lease_holder
                                                                          else "free")))
    rows = batches.segment_paths(t, model)
    missing = [b["id"] for b in rows if b["status"] == "accepted" and b["segment_path"]
               and "://" not in b["segment_path"] and not Path(b["segment_path"]).exists()]
    out.append(Check("segments", not missing,
                     f"model '{model}': batches {missing[:10]} have no segment file" if missing
                     else f"model '{model}': {len(rows)} batch(es), all segments present",
                     "the data root was changed by hand; restore those files or purge the batches" if missing else None))
    return out


# -- what a crash leaves behind, and doctor --fix ----------------------------------------------------

def _file_roots(cfg: Any) -> list[tuple[str, str]]:
    """(check name, directory) of every place an interrupted write can leave a temp file."""
    return [("data root", cfg.data_root), ("registry root", str(cfg.registry_root)),
            ("spool", str(cfg.state_dir / "spool"))]


def _temp_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(f"*{TMP_SUFFIX}") if p.is_file())


def _unreferenced_segments(root: Path, referenced: set[str]) -> list[Path]:
    """Segment and quarantine files under the data root that no batch (of any model) names."""
    return sorted(p for p in root.rglob("*.parquet")
                  if {"segments", "quarantine"} & set(p.relative_to(root).parts[:-1]) and str(p) not in referenced)


def _stale_snapshots(root: Path, segment_of: dict[int, str | None]) -> list[Path]:
    """Training snapshots (``data/snapshots.py``) naming a batch whose segment is no longer the one they
    were built from: a hard purge rewrote it, and was killed before it dropped the snapshots. A
    snapshot that cannot be read is not judged (its reader rebuilds it)."""
    files = sorted(p for p in root.rglob("*.parquet") if p.parent.name == "snapshots")
    if not files:
        return []
    import json

    import pyarrow.parquet as pq

    stale = []
    for p in files:
        try:
            meta = json.loads((pq.read_schema(p).metadata or {}).get(b"llctl", b"{}"))
        except (OSError, ValueError):
            continue
        if any(segment_of.get(int(b)) != path for b, path in (meta.get("batches") or {}).items()):
            stale.append(p)
    return stale


@dataclass(frozen=True)
class Leftover:
    path: str
    kind: str  # "temp file" | "unreferenced segment" | "stale snapshot"
    bytes: int
    age_seconds: float


@dataclass(frozen=True)
class DoctorFixResult(Result):
    dry_run: bool
    min_age_seconds: float
    removed: list[Leftover]  # with dry_run: what would be removed
    kept_too_young: list[Leftover]  # leftovers younger than min_age (maybe a command still running)
    failed: list[dict[str, str]]
    bytes_removed: int
    ok: bool  # doctor passes after the fix (with dry_run: before it)
    checks: list[Check] = field(default_factory=list)  # doctor's checks after the fix
    message: str = ""


def find_leftovers(ctx: AppContext, *, min_age_seconds: float) -> tuple[list[Leftover], list[Leftover]]:
    """(removable, too young): temp files under the data root, the registry and the spool, segment
    files no batch refers to, and stale training snapshots; removable when older than
    ``min_age_seconds``. Remote roots (fsspec URLs) are not scanned."""
    cfg = ctx.config
    now = time.time()
    found: dict[str, Leftover] = {}

    def add(p: Path, kind: str) -> None:
        try:
            st = p.stat()
        except FileNotFoundError:  # finished (renamed) or cleaned up meanwhile
            return
        found.setdefault(str(p), Leftover(str(p), kind, st.st_size, max(0.0, now - st.st_mtime)))

    for _name, root in _file_roots(cfg):
        if "://" not in root and Path(root).is_dir():
            for p in _temp_files(Path(root)):
                add(p, "temp file")
    if "://" not in cfg.data_root and Path(cfg.data_root).is_dir():
        rows = _batch_files(ctx)
        for p in _unreferenced_segments(Path(cfg.data_root), _referenced(rows)):
            add(p, "unreferenced segment")
        for p in _stale_snapshots(Path(cfg.data_root), {b["id"]: b["segment_path"] for b in rows}):
            add(p, "stale snapshot")
    items = sorted(found.values(), key=lambda x: x.path)
    return ([x for x in items if x.age_seconds >= min_age_seconds],
            [x for x in items if x.age_seconds < min_age_seconds])


def _batch_files(ctx: AppContext, t: Any = None) -> list[dict[str, Any]]:
    """(id, segment_path, quarantine_path, ...) of every batch of every model."""
    from lifelong_cli.store import batches

    if t is not None:
        return batches.segment_paths(t)
    with ctx.raw_store.tx(write=False) as t2:
        return batches.segment_paths(t2)


def _referenced(rows: list[dict[str, Any]]) -> set[str]:
    """Every file a batch names (segments of examples, labels, feedback, golden sets; quarantine files)."""
    return {p for b in rows for p in (b["segment_path"], b["quarantine_path"]) if p}


def doctor_fix(ctx: AppContext, *, min_age_seconds: float = 600.0, dry_run: bool = False,
               only: list[str] | None = None) -> DoctorFixResult:
    """Remove the leftovers of interrupted writes (``find_leftovers``), then run ``doctor``.

    Args:
        min_age_seconds: leave files younger than this (a running command may still own them).
        dry_run: list what would be removed and change nothing.
        only: remove only these paths (the plan the operator confirmed); anything not among the
            leftovers found now is left alone.

    One audit entry (verb ``doctor fix``, store-wide) lists the paths and bytes removed; it is written in
    the transaction that re-reads the batches, so a file a batch has come to name meanwhile is kept.
    Nothing removed: no entry."""
    from lifelong_cli.errors import UsageError
    from lifelong_cli.ops._base import audited

    if min_age_seconds < 0:
        raise UsageError(f"--min-age must not be negative (got {min_age_seconds:g}s)", hint="e.g. --min-age 10m")
    ctx.raw_store.revision()  # the store must be reachable: the removal is checked and audited there
    plan, young = find_leftovers(ctx, min_age_seconds=min_age_seconds)
    if only is not None:
        wanted = set(only)
        plan = [x for x in plan if x.path in wanted]
    if dry_run or not plan:
        after = doctor(ctx)
        msg = (f"dry run: would remove {len(plan)} leftover(s), {sum(x.bytes for x in plan)} bytes" if dry_run and plan
               else "nothing to remove")
        if young:
            msg += f"; {len(young)} leftover(s) younger than {min_age_seconds:g}s kept (maybe still being written)"
        return DoctorFixResult(dry_run=dry_run, min_age_seconds=min_age_seconds, removed=plan, kept_too_young=young,
                               failed=[], bytes_removed=0, ok=after.ok, checks=after.checks, message=msg)
    removed: list[Leftover] = []
    failed: list[dict[str, str]] = []
    with audited(ctx, "doctor fix", args={"min_age_seconds": min_age_seconds}, store_wide=True) as (t, entry):
        referenced = _referenced(_batch_files(ctx, t))  # under the write lock: a batch committed meanwhile keeps its file
        for x in plan:
            if x.path in referenced:
                continue
            try:
                Path(x.path).unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                failed.append({"path": x.path, "error": str(exc)})
                continue
            removed.append(x)
        entry.outcome = "ok" if not failed else "partial"
        entry.detail = {"removed": [{"path": x.path, "kind": x.kind, "bytes": x.bytes} for x in removed],
                        "bytes": sum(x.bytes for x in removed), "failed": failed}
    after = doctor(ctx)
    nbytes = sum(x.bytes for x in removed)
    msg = f"removed {len(removed)} leftover(s), {nbytes} bytes"
    if failed:
        msg += f"; {len(failed)} could not be removed (see failed)"
    if young:
        msg += f"; {len(young)} younger than {min_age_seconds:g}s kept"
    return DoctorFixResult(dry_run=False, min_age_seconds=min_age_seconds, removed=removed, kept_too_young=young,
                           failed=failed, bytes_removed=nbytes, ok=after.ok, checks=after.checks, message=msg)
