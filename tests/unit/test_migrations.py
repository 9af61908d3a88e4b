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
