"""Shared fixtures: a real workspace on SQLite, and on PostgreSQL when LLCTL_TEST_POSTGRES_URL is set
(each PostgreSQL test gets a database of its own, dropped afterwards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lifelong_cli.context import AppContext
from lifelong_cli.ops.init import init

PG_URL = os.environ.get("LLCTL_TEST_POSTGRES_URL")


def _pg_database() -> Iterator[str]:
    from sqlalchemy import create_engine, text

    name = f"llctl_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request) -> str:
    if request.param == "postgres" and not PG_URL:
        pytest.skip("LLCTL_TEST_POSTGRES_URL is not set (.ci/run sets it)")
    return request.param


@pytest.fixture
def store_url(backend: str, tmp_path: Path) -> Iterator[str | None]:
    """None means the workspace default (SQLite in .llctl/)."""
    if backend == "sqlite":
        yield None
    else:
        yield from _pg_database()


# Training in the test workspaces: one fixed pass (`training.epochs: 1`) instead of the shipped adaptive
# default (at least `training.min_steps` optimizer steps, early stopping), which only the tests marked
# `training_defaults` are about. Flags, environment and `overrides=` still take precedence over it.
FAST_TRAINING = "  epochs: 1  # tests/conftest.py: one pass (the shipped default is null: adaptive)"


def use_fast_training(ws: Path) -> None:
    """Set ``training.epochs: 1`` in the workspace's llctl.yaml (as written by `llctl init`)."""
    cfg = ws / "llctl.yaml"
    text = cfg.read_text()
    assert "\n  epochs: null\n" in text, f"{cfg}: no 'epochs: null' under training to replace"
    cfg.write_text(text.replace("\n  epochs: null\n", f"\n{FAST_TRAINING}\n", 1))


@pytest.fixture
def workspace(request, tmp_path: Path, store_url: str | None) -> Path:
    ws = tmp_path / "ws"
    ctx = AppContext(cwd=tmp_path, env=_clean_env(store_url), actor="tester")
    try:
        init(ctx, directory=str(ws))
    finally:
        ctx.close()
    if not request.node.get_closest_marker("training_defaults"):
        use_fast_training(ws)
    return ws


def _clean_env(store_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLCTL_")}
    if store_url:
        env["LLCTL_STORE__URL"] = store_url
    return env


@pytest.fixture
def make_ctx(workspace: Path, store_url: str | None):
    """Build an AppContext in the workspace (a new one per call, like a new CLI process)."""
    made: list[AppContext] = []

    def make(actor: str = "tester", **kw) -> AppContext:
        ctx = AppContext(cwd=workspace, env=_clean_env(store_url), actor=actor, **kw)
        made.append(ctx)
        return ctx

    yield make
    for c in made:
        c.close()


@pytest.fixture
def ctx(make_ctx) -> AppContext:
    return make_ctx()


@pytest.fixture
def cli_env(store_url: str | None) -> dict[str, str]:
    """Environment for running the real `llctl` in a subprocess against the test store."""
    env = _clean_env(store_url)
    env["LLCTL_ACTOR"] = "tester"
    return env


@pytest.fixture
def sqlite_cli_env() -> dict[str, str]:
    """Like cli_env, on the default SQLite store only: for end-to-end tests whose subject is not the
    state store (the registry, serving), which need not run twice."""
    env = _clean_env(None)
    env["LLCTL_ACTOR"] = "tester"
    return env


# -- running under pytest-xdist (`make test` runs `-n auto --dist loadgroup`) ----------------------

def pytest_collection_modifyitems(config, items) -> None:
    """Keep the tests of a module that share a module-scoped fixture (a trained workspace, an MLflow
    server) on one xdist worker, so that it is built once, not once per worker; and start the slow
    end-to-end modules first, so that a long test does not begin last and leave a worker idle."""
    for item in items:
        defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        shared = any(d.scope in ("module", "class") for seq in defs.values() for d in seq)
        if shared and item.module and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    # a stable sort: modules stay contiguous, slow ones (the `slow` marker) ahead of the rest
    items.sort(key=lambda it: 0 if it.get_closest_marker("slow") else 1)
