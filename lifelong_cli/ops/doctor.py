"""doctor: is this workspace consistent? Each check says what it found and what to do."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import LlctlError
from lifelong_cli.ops._base import Result
from lifelong_cli.ops.fsutil import TMP_SUFFIX

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

    for name, p in (("data root", cfg.data_root), ("registry root", str(cfg.registry_root))):
        if "://" in p:
            checks.append(Check(name, True, f"{p} (remote; not checked)"))
        elif Path(p).is_dir():
            leftovers = list(Path(p).rglob(f"*{TMP_SUFFIX}"))
            if leftovers:
                checks.append(Check(name, False, f"{len(leftovers)} unfinished temp file(s) under {p}, e.g. {leftovers[0]}",
                                    "left by an interrupted write; readers ignore them, delete them when nothing runs"))
            else:
                checks.append(Check(name, True, p))
        else:
            checks.append(Check(name, False, f"{p} does not exist", "run `llctl init` in the workspace"))

    try:
        store = ctx.raw_store
        rev = store.revision()
    except LlctlError as exc:
        checks.append(Check("store", False, exc.message, exc.hint))
        return DoctorResult(ok=False, checks=checks)
    checks.append(Check("store", True, f"reachable at {store.display_url}"))
    from lifelong_cli.store.schema import HEAD_REVISION

    if rev != HEAD_REVISION:
        checks.append(Check("migrations", False, f"store at {rev or 'no schema'}, llctl needs {HEAD_REVISION}",
                            "run `llctl db upgrade`"))
        return DoctorResult(ok=False, checks=checks)
    checks.append(Check("migrations", True, f"at {rev}"))
    checks.extend(_store_checks(ctx, store))
    return DoctorResult(ok=all(c.ok for c in checks), checks=checks)


def _store_checks(ctx: AppContext, store) -> list[Check]:
    from sqlalchemy import func, select

    from lifelong_cli.store.schema import batches, deployment, model_versions, training_control

    out: list[Check] = []
    now = ctx.now()
    with store.read() as conn:
        dep = conn.execute(select(deployment)).mappings().all()
        ctl = conn.execute(select(training_control)).mappings().all()
        if len(dep) != 1 or len(ctl) != 1:
            out.append(Check("singletons", False, f"{len(dep)} deployment row(s), {len(ctl)} training-control row(s); expected 1 each",
                             "the store was edited by hand; restore it from a backup"))
            return out
        out.append(Check("singletons", True, "deployment and training-control rows present"))
        d = dep[0]
        known = {r[0] for r in conn.execute(select(model_versions.c.id))}
        dangling = {k: d[k] for k in ("stable_version", "canary_version", "training_head") if d[k] is not None and d[k] not in known}
        out.append(Check("deployment pointers", not dangling,
                         f"point at missing versions: {dangling}" if dangling else f"generation {d['generation']}",
                         "`llctl rollback --to V` to a version that exists" if dangling else None))
        c = ctl[0]
        if c["lease_holder"] and c["lease_expires_at"] and c["lease_expires_at"] <= now:
            out.append(Check("training lease", True, f"expired lease of {c['lease_holder']} (the next train takes it over)"))
        else:
            out.append(Check("training lease", True, f"held by {c['lease_holder']}" if c["lease_holder"] else "free"))
        missing = []
        for row in conn.execute(select(batches.c.id, batches.c.segment_path).where(batches.c.status == "accepted")):
            if row[1] and "://" not in row[1] and not Path(row[1]).exists():
                missing.append(row[0])
        out.append(Check("segments", not missing,
                         f"batches {missing[:10]} have no segment file" if missing
                         else f"{conn.execute(select(func.count(batches.c.id))).scalar()} batch(es), all segments present",
                         "the data root was changed by hand; restore those files or purge the batches" if missing else None))
        referenced = {p for row in conn.execute(select(batches.c.segment_path, batches.c.quarantine_path)) for p in row if p}
        root = Path(ctx.config.data_root)
        if "://" not in ctx.config.data_root and root.is_dir():
            orphans = [p for area in ("segments", "quarantine") for p in (root / area).rglob("*.parquet")
                       if str(p) not in referenced]
            out.append(Check("unreferenced segments", not orphans,
                             f"{len(orphans)} segment file(s) no batch refers to, e.g. {orphans[0]}" if orphans
                             else "every segment file belongs to a batch",
                             "left by an ingest interrupted just before it committed (or replaced by a hard purge); "
                             "readers never see them; delete them when nothing runs" if orphans else None))
        guard = _append_only_guard(conn)
        out.append(Check("audit log", guard, "append-only guard installed" if guard else "append-only trigger missing",
                         None if guard else "run `llctl db upgrade`; if it persists the store was edited by hand"))
    return out


def _append_only_guard(conn: Any) -> bool:
    from sqlalchemy import text

    if conn.dialect.name == "postgresql":
        q = "SELECT count(*) FROM pg_trigger WHERE tgname = 'audit_log_append_only'"
    else:
        q = "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'audit_log_no_%'"
    return conn.execute(text(q)).scalar() >= 1
