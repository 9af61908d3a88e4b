"""Opening the state store and running work in transactions.

SQLite: WAL mode, a busy timeout, and ``BEGIN IMMEDIATE`` for writes so that concurrent
writers queue instead of failing half-way. PostgreSQL: writers lock the singleton rows they
change (``SELECT … FOR UPDATE``, see ``control.py`` and ``deployment.py``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from lifelong_cli.errors import ConfigError, StoreOutdatedError, StoreUnavailableError
from lifelong_cli.store.schema import HEAD_REVISION

SQLITE_BUSY_TIMEOUT_MS = 30_000

_PASSWORD_IN_URL = re.compile(r"(?P<pre>://[^:/@]+:)[^@]*(?P<post>@)")


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    return _PASSWORD_IN_URL.sub(r"\g<pre>***\g<post>", url)


def _describe(exc: BaseException) -> str:
    """A one-line description of a driver error with no URL or password in it."""
    orig = getattr(exc, "orig", None) or exc
    line = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return mask_url(line)


class Store:
    """The state store behind one SQLAlchemy engine."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigError(
                f"store.url: unsupported database '{self.dialect}'",
                hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB",
            )
        self.engine = self._make_engine(url)

    @property
    def display_url(self) -> str:
        return mask_url(self.url)

    def _make_engine(self, url: str) -> Engine:
        if self.dialect == "sqlite":
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:" and not Path(path).parent.exists():
                raise StoreUnavailableError(
                    f"state store directory {Path(path).parent} does not exist",
                    hint="run `llctl init` in the workspace, or fix store.url",
                )
            engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn, _record) -> None:
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                mode = conn.get_execution_options().get("llctl_write", True)
                conn.exec_driver_sql("BEGIN IMMEDIATE" if mode else "BEGIN")

            return engine
        return create_engine(url, pool_pre_ping=False, connect_args={"connect_timeout": 5})

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back on any error."""
        with self._connect(write=True) as conn, conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only snapshot (on SQLite it does not take the write lock)."""
        with self._connect(write=False) as conn, conn.begin():
            yield conn

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[Connection]:
        try:
            conn = self.engine.connect()
        except (OperationalError, DBAPIError) as exc:
            raise StoreUnavailableError(
                f"cannot reach the state store at {self.display_url}: {_describe(exc)}",
                hint="check store.url (or LLCTL_STORE__URL) and that the database is running; `llctl doctor` checks it",
            ) from exc
        try:
            if self.dialect == "sqlite":
                conn = conn.execution_options(llctl_write=write)
            yield conn
        except OperationalError as exc:
            raise StoreUnavailableError(
                f"state store error at {self.display_url}: {_describe(exc)}",
                hint="retry; if it persists run `llctl doctor`",
            ) from exc
        finally:
            conn.close()

    def revision(self) -> str | None:
        """The schema revision the store is at, or None for an empty database."""
        exists = (
            "SELECT to_regclass('alembic_version') IS NOT NULL"
            if self.dialect == "postgresql"
            else "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        )
        with self.read() as conn:
            if not conn.execute(text(exists)).scalar():
                return None
            row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        return row[0] if row else None

    def require_current(self) -> None:
        rev = self.revision()
        if rev == HEAD_REVISION:
            return
        if rev is None:
            raise StoreOutdatedError(
                f"the state store at {self.display_url} has no llctl schema",
                hint="run `llctl db upgrade` (or `llctl init` for a new workspace)",
            )
        raise StoreOutdatedError(
            f"the state store is at schema revision {rev}, this llctl needs {HEAD_REVISION}",
            hint="run `llctl db upgrade`",
        )

    def upgrade(self) -> tuple[str | None, str]:
        """Apply pending migrations; returns (revision before, revision after)."""
        from alembic import command
        from alembic.config import Config

        before = self.revision()
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return before, self.revision() or ""

    def dispose(self) -> None:
        self.engine.dispose()
