"""The migrations and the schema module describe the same database."""

from __future__ import annotations

from pathlib import Path

from lifelong_cli.store.db import HEAD_REVISION, Store
from lifelong_cli.store.schema import metadata


def test_head_revision_constant_matches_alembic_head():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import lifelong_cli.store.db as db

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION


def test_migrated_database_matches_schema_module(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store = Store(f"sqlite:///{tmp_path}/s.db")
    before, after = store.upgrade()
    assert (before, after) == (None, HEAD_REVISION)
    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    store.dispose()
    assert diffs == []


def test_upgrade_twice_is_a_noop(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    store.upgrade()
    assert store.upgrade() == (HEAD_REVISION, HEAD_REVISION)
    store.dispose()


FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "store-0002-demo.json"


def _load_0002_store(url: str) -> dict:
    """A store at revision 0002 holding the rows a real `llctl demo` of that release wrote."""
    import json
    from datetime import datetime

    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    import lifelong_cli.store.db as db

    doc = json.loads(FIXTURE.read_text())
    store = Store(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, doc["revision"])
    with store.engine.begin() as conn:
        meta = sa.MetaData()
        meta.reflect(conn)
        conn.execute(sa.text("DELETE FROM deployment"))
        conn.execute(sa.text("DELETE FROM training_control"))
        for name in ("model_versions", "validations", "deployment", "training_control", "batches", "purge_rules",
                     "incidents", "incident_notes", "audit_log", "replicas", "predictions", "feedback"):
            table = meta.tables[name]
            rows = []
            for r in doc["tables"][name]:
                row = {}
                for k, v in r.items():
                    if isinstance(table.c[k].type, sa.DateTime) and isinstance(v, str):
                        v = datetime.fromisoformat(v)
                    elif isinstance(table.c[k].type, sa.Boolean) and v is not None:
                        v = bool(v)
                    row[k] = v
                rows.append(row)
            if rows:
                conn.execute(table.insert(), rows)
        if store.dialect == "postgresql":
            for name in ("validations", "batches", "purge_rules", "incidents", "incident_notes", "audit_log",
                         "predictions", "feedback"):
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                     f"(SELECT max(id) FROM {name}))"))
    store.dispose()
    return doc["tables"]


def test_upgrade_of_a_single_model_store_keeps_every_row(tmp_path, store_url):
    """A store written by the release before models were scoped upgrades in place: every row is kept,
    and all of it belongs to the one model, whose state (stable, head, stop flag) is unchanged."""
    from lifelong_cli.store import control, deployment, models, versions

    url = store_url or f"sqlite:///{tmp_path}/old.db"
    old = _load_0002_store(url)
    store = Store(url)
    assert store.upgrade(model_name="configured-but-not-the-owner") == ("0002", HEAD_REVISION)
    with store.tx(write=False) as t:
        assert models.names(t) == ["demo"]  # named by the versions it holds
        for name, rows in old.items():
            if name in ("slo_relaxations",):
                continue
            assert t.scalar(f"SELECT count(*) FROM {name}") == len(rows), name
        for name in ("batches", "purge_rules", "predictions", "feedback", "audit_log", "incidents"):
            assert t.scalar(f"SELECT count(*) FROM {name} WHERE model = 'demo'") == len(old[name]), name
        dep_old = old["deployment"][0]
        dep = deployment.get(t, "demo")
        for k in ("stable_version", "canary_version", "training_head", "generation", "canary_state"):
            assert dep[k] == dep_old[k], k
        assert control.get(t, "demo").stopped == bool(old["training_control"][0]["stopped"])
        assert [v["id"] for v in old["model_versions"]] == [
            r["id"] for r in t.rows("SELECT id FROM model_versions WHERE model = 'demo' ORDER BY id")]
        for v in old["validations"]:
            assert versions.latest_verdict(t, "demo", v["version_id"]) is not None
        assert versions.get(t, "demo", old["model_versions"][-1]["id"])["artifacts"] == old["model_versions"][-1]["artifacts"]
        audit_ids = [r["id"] for r in t.rows("SELECT id FROM audit_log ORDER BY id")]
        assert audit_ids == [r["id"] for r in old["audit_log"]]
    # The audit log is still append-only after the backfill.
    import pytest

    with pytest.raises(Exception, match="append-only"), store.tx() as t:
        t.execute("UPDATE audit_log SET reason = 'x'")
    # New rows get fresh ids after the copied ones (sequences moved on).
    with store.tx() as t:
        nid = t.insert("validations", {"model": "demo", "version_id": old["model_versions"][0]["id"],
                                       "created_at": old_ts(), "actor": "t", "verdict": "passed", "gates": []})
        assert nid > max(v["id"] for v in old["validations"])
    store.dispose()


def old_ts():
    from datetime import UTC, datetime

    return datetime.now(UTC)


def test_an_empty_store_gets_no_model_until_init(tmp_path):
    from lifelong_cli.store import models

    store = Store(f"sqlite:///{tmp_path}/s.db")
    store.upgrade(model_name="x")
    with store.tx(write=False) as t:
        assert models.names(t) == []
        assert t.scalar("SELECT count(*) FROM deployment") == 0
    store.dispose()
