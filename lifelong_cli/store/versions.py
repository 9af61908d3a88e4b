"""Model versions and their validation verdicts, per model: lineage, "last good" and "tainted by a purge"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lifelong_cli.errors import ModelVersionNotFoundError
from lifelong_cli.store.sql import Tx

TYPES = {"created_at": "ts", "lineage": "json", "metrics": "json", "artifacts": "json", "pushed_at": "ts",
         "promoted_at": "ts", "demoted_at": "ts", "push_forced": "bool"}
COLS = ("model, id, parent_id, created_at, created_by, strategy, seq_from, seq_to, watermark, rows_trained, "
        "config_hash, lineage, metrics, artifacts, registry_ref, pushed_at, pushed_by, push_forced, promoted_at, "
        "demoted_at, demoted_reason")
_LATEST_VERDICT = ("(SELECT x.verdict FROM validations x WHERE x.model = v.model AND x.version_id = v.id "
                   "ORDER BY x.id DESC LIMIT 1)")


def get(t: Tx, model: str, version: int) -> dict[str, Any] | None:
    return t.row(f"SELECT {COLS} FROM model_versions WHERE model = :m AND id = :v", {"m": model, "v": version},
                 types=TYPES)


def require(t: Tx, model: str, version: int) -> dict[str, Any]:
    row = get(t, model, version)
    if row is None:
        raise ModelVersionNotFoundError(f"model '{model}' has no version {version}", hint="`llctl versions` lists them")
    return row


def latest_verdict(t: Tx, model: str, version: int) -> str | None:
    return t.scalar("SELECT verdict FROM validations WHERE model = :m AND version_id = :v ORDER BY id DESC LIMIT 1",
                    {"m": model, "v": version})


def tainted(t: Tx, model: str) -> set[int]:
    """Versions trained on rows that an active (or hard) purge rule of this model removed."""
    out: set[int] = set()
    for r in t.rows("SELECT blast_radius FROM purge_rules WHERE model = :m AND (active = :t OR hard = :t)",
                    {"m": model, "t": True}, types={"blast_radius": "json"}):
        out |= set((r["blast_radius"] or {}).get("affected_versions", []))
    return out


def last_good(t: Tx, model: str, before: int | None = None) -> list[dict[str, Any]]:
    """"Last good" candidates, newest first: a passed verdict, not trained on data an active (or hard)
    purge hides, not demoted (rolled back from, or its canary aborted by analysis), and — once any
    version has been promoted — served healthily, i.e. promoted to stable."""
    rows = t.rows(f"SELECT v.id, v.created_at, v.artifacts, v.promoted_at FROM model_versions v "
                  f"WHERE v.model = :m AND v.demoted_at IS NULL AND {_LATEST_VERDICT} = 'passed' ORDER BY v.id DESC",
                  {"m": model}, types=TYPES)
    bad = tainted(t, model)
    rows = [r for r in rows if r["id"] not in bad and (before is None or r["id"] < before)]
    served = [r for r in rows if r["promoted_at"] is not None]
    return served or rows


def demote(t: Tx, model: str, version: int, *, now: datetime, reason: str) -> None:
    """No longer "served healthily" (rolled back from, or aborted by analysis): never last good by itself."""
    t.execute("UPDATE model_versions SET demoted_at = :now, demoted_reason = :why WHERE model = :m AND id = :v",
              {"now": now, "why": reason, "m": model, "v": version})


def vouch(t: Tx, model: str, version: int) -> None:
    """Whoever names a version to serve vouches for it again."""
    t.execute("UPDATE model_versions SET demoted_at = NULL, demoted_reason = NULL WHERE model = :m AND id = :v",
              {"m": model, "v": version})


def next_id(t: Tx, model: str) -> int:
    """The number the model's next version gets: versions count per model from 1."""
    return (t.scalar("SELECT max(id) FROM model_versions WHERE model = :m", {"m": model}) or 0) + 1


def add(t: Tx, model: str, *, parent_id: int | None, created_at: datetime, created_by: str, strategy: str,
        seq_from: int | None, seq_to: int | None, watermark: int | None, rows_trained: int, config_hash: str | None,
        lineage: dict[str, Any], metrics: dict[str, Any], artifacts: dict[str, Any]) -> int:
    """Write the model's next version; returns its number. The caller holds the model's deployment
    row locked (the training head moves in the same transaction), so two commits cannot both take
    the same number."""
    version = next_id(t, model)
    t.execute("INSERT INTO model_versions (model, id, parent_id, created_at, created_by, strategy, seq_from, seq_to, "
              "watermark, rows_trained, config_hash, lineage, metrics, artifacts) VALUES (:m, :v, :parent, :at, :by, "
              ":strategy, :sf, :st, :wm, :rows, :ch, :lineage, :metrics, :artifacts)",
              {"m": model, "v": version, "parent": parent_id, "at": created_at, "by": created_by, "strategy": strategy,
               "sf": seq_from, "st": seq_to, "wm": watermark, "rows": rows_trained, "ch": config_hash,
               "lineage": lineage, "metrics": metrics, "artifacts": artifacts})
    return version


def set_registry_ref(t: Tx, model: str, version: int, ref: str) -> None:
    """Where the registry recorded the version (an MLflow run and model version)."""
    t.execute("UPDATE model_versions SET registry_ref = :r WHERE model = :m AND id = :v",
              {"r": ref, "m": model, "v": version})


def mark_pushed(t: Tx, model: str, version: int, *, now: datetime, actor: str, forced: bool) -> None:
    t.execute("UPDATE model_versions SET pushed_at = :now, pushed_by = :by, push_forced = :f WHERE model = :m AND id = :v",
              {"now": now, "by": actor, "f": forced, "m": model, "v": version})


def mark_promoted(t: Tx, model: str, version: int, *, now: datetime) -> None:
    """Promoted to stable: from now on it counts as served healthily (see ``last_good``)."""
    t.execute("UPDATE model_versions SET promoted_at = :now WHERE model = :m AND id = :v",
              {"now": now, "m": model, "v": version})


def record_verdict(t: Tx, model: str, version: int, *, now: datetime, actor: str, verdict: str,
                   gates: list[dict[str, Any]]) -> int:
    """Store a validation verdict with its gates; the newest one is the version's verdict."""
    return t.insert("validations", {"model": model, "version_id": version, "created_at": now, "actor": actor,
                                    "verdict": verdict, "gates": gates})


def latest_validation(t: Tx, model: str, version: int) -> dict[str, Any] | None:
    """The newest verdict of a version, with its gates, when and by whom."""
    return t.row("SELECT verdict, gates, created_at, actor FROM validations WHERE model = :m AND version_id = :v "
                 "ORDER BY id DESC LIMIT 1", {"m": model, "v": version}, types={"gates": "json", "created_at": "ts"})


def newest(t: Tx, model: str, *, limit: int) -> list[dict[str, Any]]:
    """The model's versions, newest first, each with its latest verdict (for `llctl versions`)."""
    return t.rows("SELECT v.id, v.parent_id, v.created_at, v.created_by, v.strategy, v.seq_from, v.seq_to, "
                  f"v.watermark, v.rows_trained, v.metrics, {_LATEST_VERDICT} AS verdict "
                  "FROM model_versions v WHERE v.model = :m ORDER BY v.id DESC LIMIT :n", {"m": model, "n": limit},
                  types={"created_at": "ts", "metrics": "json"})


def count(t: Tx, model: str) -> int:
    return t.scalar("SELECT count(*) FROM model_versions WHERE model = :m", {"m": model})


# -- added by the data-plane engineer for purge-data's blast radius (issue 10) -----------------------
def lineage_graph(t: Tx, model: str) -> list[dict[str, Any]]:
    """Every version of the model (id, parent_id, seq_from, seq_to), oldest first: what a purge's
    blast radius follows."""
    return t.rows("SELECT id, parent_id, seq_from, seq_to FROM model_versions WHERE model = :m ORDER BY id",
                  {"m": model})


def not_known_bad(t: Tx, model: str) -> list[int]:
    """Versions not known to be bad: not demoted, latest verdict not 'rejected', not tainted by a purge
    (the blast radius's "last clean" candidates when no version is "last good" yet)."""
    ids = [r["id"] for r in t.rows(f"SELECT v.id FROM model_versions v WHERE v.model = :m AND v.demoted_at IS NULL "
                                   f"AND coalesce({_LATEST_VERDICT}, '') <> 'rejected' ORDER BY v.id", {"m": model})]
    bad = tainted(t, model)
    return [i for i in ids if i not in bad]


# -- read by the Prometheus exporter (issue 13) ------------------------------------------------------
def totals_by_model(t: Tx) -> dict[str, dict[str, Any]]:
    """Per model: versions trained, the newest version and when it was trained, and when its stable
    version was trained (the age `check`'s staleness policy measures)."""
    out: dict[str, dict[str, Any]] = {}
    for r in t.rows("SELECT model, count(*) AS n, max(id) AS latest, max(created_at) AS last_at "
                    "FROM model_versions GROUP BY model", types={"last_at": "ts"}):
        out[r["model"]] = {"versions": int(r["n"]), "latest": r["latest"], "last_trained_at": r["last_at"],
                           "stable_trained_at": None}
    for r in t.rows("SELECT d.model, v.created_at FROM deployment d JOIN model_versions v "
                    "ON v.model = d.model AND v.id = d.stable_version", types={"created_at": "ts"}):
        out.setdefault(r["model"], {"versions": 0, "latest": None, "last_trained_at": None})
        out[r["model"]]["stable_trained_at"] = r["created_at"]
    return out


def verdict_counts(t: Tx) -> list[dict[str, Any]]:
    """(model, verdict, n): validation verdicts recorded, per model and verdict."""
    return t.rows("SELECT model, verdict, count(*) AS n FROM validations GROUP BY model, verdict ORDER BY model, verdict")
