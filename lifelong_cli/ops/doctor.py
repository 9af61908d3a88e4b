"""doctor: is this workspace consistent? Each check says what it found and what to do. The model's
own rows are checked (``--model``); store-wide problems (other models' state rows, stray files under
the data root, the audit log's guard) are reported once."""

from __future__ import annotations

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
        referenced = {p for b in batches.segment_paths(t) for p in (b["segment_path"], b["quarantine_path"]) if p}
        guard = health.append_only_guard(t)
    root = Path(ctx.config.data_root)
    if "://" not in ctx.config.data_root and root.is_dir():
        orphans = [p for p in root.rglob("*.parquet")
                   if {"segments", "quarantine"} & set(p.relative_to(root).parts[:-1]) and str(p) not in referenced]
        out.append(Check("unreferenced segments", not orphans,
                         f"{len(orphans)} segment file(s) no batch refers to, e.g. {orphans[0]}" if orphans
                         else "every segment file belongs to a batch",
                         "left by an ingest interrupted just before it committed (or replaced by a hard purge); "
                         "readers never see them; delete them when nothing runs" if orphans else None))
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
