"""A thin layer over the DB-API driver: the one door every store module uses.

`import sqlalchemy` costs more than a third of an emergency verb's budget, so state is read and
written here with plain parameterised SQL (``:name`` parameters, on sqlite3 or psycopg). Values are stored exactly as the
SQLAlchemy schema in ``schema.py`` stores them, so both layers read each other's rows; a test
checks that."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's SQLite DATETIME storage format


class Tx:
    """One open transaction on a DB-API connection."""

    def __init__(self, dbapi_conn: Any, dialect: str) -> None:
        self.raw = dbapi_conn
        self.dialect = dialect

    @property
    def postgres(self) -> bool:
        return self.dialect == "postgresql"

    def _sql(self, sql: str) -> str:
        return _PARAM.sub(r"%(\1)s", sql) if self.postgres else sql

    def _param(self, v: Any) -> Any:
        if isinstance(v, datetime):
            if v.tzinfo is None:
                raise ValueError("naive datetime given to the store; use an aware UTC datetime")
            v = v.astimezone(UTC).replace(tzinfo=None)
            return v if self.postgres else v.strftime(_SQLITE_TS)
        if isinstance(v, dict | list):
            if self.postgres:
                from psycopg.types.json import Json

                return Json(v)
            return json.dumps(v)
        return v

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        cur = self.raw.cursor()
        cur.execute(self._sql(sql), {k: self._param(v) for k, v in (params or {}).items()})
        return cur

    def rows(self, sql: str, params: Mapping[str, Any] | None = None, *, types: Mapping[str, str] | None = None
             ) -> list[dict[str, Any]]:
        cur = self.execute(sql, params)
        if cur.description is None:
            return []
        names = [d[0] for d in cur.description]
        return [decode(dict(zip(names, r, strict=True)), types or {}) for r in cur.fetchall()]

    def row(self, sql: str, params: Mapping[str, Any] | None = None, *, types: Mapping[str, str] | None = None
            ) -> dict[str, Any] | None:
        rows = self.rows(sql, params, types=types)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        r = self.execute(sql, params).fetchone()
        return None if r is None else r[0]

    def insert(self, table: str, values: Mapping[str, Any]) -> int:
        cols = list(values)
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"
        if self.postgres:
            return self.execute(sql + " RETURNING id", values).fetchone()[0]
        return self.execute(sql, values).lastrowid


    def insert_many(self, table: str, rows: list[Mapping[str, Any]]) -> None:
        """One statement, many rows (the prediction log's batched writes)."""
        if not rows:
            return
        cols = list(rows[0])
        sql = self._sql(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})")
        self.raw.cursor().executemany(sql, [{k: self._param(v) for k, v in r.items()} for r in rows])


def decode(row: dict[str, Any], types: Mapping[str, str]) -> dict[str, Any]:
    """Convert stored values back: 'ts' (aware UTC datetime), 'bool', 'json'."""
    for k, kind in types.items():
        if k not in row or row[k] is None:
            continue
        v = row[k]
        if kind == "ts":
            if isinstance(v, str):
                v = datetime.fromisoformat(v)
            row[k] = v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
        elif kind == "bool":
            row[k] = bool(v)
        elif kind == "json" and isinstance(v, str | bytes):
            row[k] = json.loads(v)
    return row


def types_for(*pairs: tuple[Iterable[str], str]) -> dict[str, str]:
    return {name: kind for names, kind in pairs for name in names}
