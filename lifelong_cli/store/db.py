"""Opening the state store and running work in transactions.

One door for the work: ``tx()``, a DB-API connection with plain SQL (``sql.py``), used by every
store module so that no command pays for importing SQLAlchemy. SQLAlchemy's ``engine`` serves the
schema and the migrations only. On SQLite a write transaction is ``BEGIN IMMEDIATE`` (WAL mode, busy
timeout), so concurrent writers queue instead of failing half-way; on PostgreSQL writers lock the
model's rows they change (``SELECT … FOR UPDATE``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import ConfigError, StoreOutdatedError, StoreUnavailableError
from lifelong_cli.store.sql import Tx

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

HEAD_REVISION = "0003"  # the newest migration; a test keeps it equal to Alembic's head
SQLITE_BUSY_TIMEOUT_MS = 30_000
_SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
                   "PRAGMA foreign_keys=ON", "PRAGMA synchronous=NORMAL")

def mask_url(url: str) -> str:
    """The URL (or a driver's message) with any password replaced by ``***`` (``lifelong_cli.secrets``)."""
    from lifelong_cli.secrets import mask

    return mask(url)


def _describe(exc: BaseException) -> str:
    """A one-line description of a driver error with no URL or password in it."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return mask_url(text.splitlines()[0] if text else type(orig).__name__)


class Store:
    """The state store at one URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        from lifelong_cli.secrets import unencoded_at

        if unencoded_at(url):  # the driver would take part of the password for the host, and print it
            raise ConfigError("store.url: the user or password holds an unencoded '@' (write it as %40)",
                              hint="percent-encode the password in the URL, or put it in PGPASSWORD")
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigError(f"store.url: unsupported database '{self.dialect}'",
                              hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
        if self.dialect == "sqlite":
            self.path = url.split("///", 1)[1] if "///" in url else ""
            if self.path and self.path != ":memory:" and not Path(self.path).parent.exists():
                raise StoreUnavailableError(f"state store directory {Path(self.path).parent} does not exist",
                                            hint="run `llctl init` in the workspace, or fix store.url")

    @property
    def display_url(self) -> str:
        return mask_url(self.url)

    def _unavailable(self, exc: BaseException, what: str = "cannot reach") -> StoreUnavailableError:
        return StoreUnavailableError(
            f"{what} the state store at {self.display_url}: {_describe(exc)}",
            hint="check store.url (or LLCTL_STORE__URL) and that the database is running; `llctl doctor` checks it")

    # -- the fast door ---------------------------------------------------------------------------
    def _dbapi_connect(self) -> Any:
        if self.dialect == "sqlite":
            import sqlite3

            try:
                conn = sqlite3.connect(self.path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
                for p in _SQLITE_PRAGMAS:
                    conn.execute(p)
            except sqlite3.Error as exc:
                raise self._unavailable(exc) from exc
            return conn
        import psycopg

        conninfo = re.sub(r"^postgresql\+\w+://", "postgresql://", self.url)
        try:
            return psycopg.connect(conninfo, connect_timeout=5)
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc

    @contextmanager
    def tx(self, *, write: bool = True) -> Iterator[Tx]:
        """One transaction on a DB-API connection: committed when the block ends, rolled back on error."""
        conn = self._dbapi_connect()
        operational = _operational_errors(self.dialect)
        try:
            if self.dialect == "sqlite":
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield Tx(conn, self.dialect)
            conn.commit()
        except operational as exc:
            _rollback(conn)
            raise self._unavailable(exc, "error talking to") from exc
        except BaseException:
            _rollback(conn)
            raise
        finally:
            conn.close()

    def revision(self) -> str | None:
        """The schema revision the store is at, or None for an empty database."""
        exists = ("SELECT to_regclass('alembic_version') IS NOT NULL" if self.dialect == "postgresql"
                  else "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'")
        with self.tx(write=False) as t:
            if not t.scalar(exists):
                return None
            return t.scalar("SELECT version_num FROM alembic_version")

    def require_current(self) -> None:
        rev = self.revision()
        if rev == HEAD_REVISION:
            return
        if rev is None:
            raise StoreOutdatedError(f"the state store at {self.display_url} has no llctl schema",
                                     hint="run `llctl db upgrade` (or `llctl init` for a new workspace)")
        raise StoreOutdatedError(f"the state store is at schema revision {rev}, this llctl needs {HEAD_REVISION}",
                                 hint="run `llctl db upgrade`")

    # -- the SQLAlchemy door ---------------------------------------------------------------------
    @cached_property
    def engine(self) -> Engine:
        from sqlalchemy import create_engine, event

        if self.dialect == "sqlite":
            engine = create_engine(self.url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn, _record) -> None:
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
                for p in _SQLITE_PRAGMAS:
                    dbapi_conn.execute(p)

            @event.listens_for(engine, "begin")
            def _on_begin(conn) -> None:
                write = conn.get_execution_options().get("llctl_write", True)
                conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

            return engine
        return create_engine(self.url, connect_args={"connect_timeout": 5})

    def upgrade(self, model_name: str | None = None) -> tuple[str | None, str]:
        """Apply pending migrations; returns (revision before, revision after). ``model_name`` names
        the model that a single-model store's rows belong to, when they do not say (migration 0003)."""
        from alembic import command
        from alembic.config import Config

        before = self.revision()
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            cfg.attributes["llctl_model"] = model_name
            command.upgrade(cfg, "head")
        return before, self.revision() or ""

    def dispose(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()


def _operational_errors(dialect: str) -> tuple[type[BaseException], ...]:
    if dialect == "sqlite":
        import sqlite3

        return (sqlite3.OperationalError,)
    import psycopg

    return (psycopg.OperationalError,)


def _rollback(conn: Any) -> None:
    try:
        conn.rollback()
    except Exception:  # the connection is already broken; closing it discards the transaction
        return
