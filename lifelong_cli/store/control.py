"""Training control: the stop flag and the training lease (one row, id=1).

Every function takes an open write transaction; the row is locked first so that concurrent
engineers and trainers are serialised (FOR UPDATE on PostgreSQL; BEGIN IMMEDIATE on SQLite)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from lifelong_cli.errors import LeaseHeldError, PreconditionError
from lifelong_cli.store.schema import training_control

_ROW = training_control.c.id == 1


@dataclass(frozen=True)
class ControlState:
    stopped: bool
    stopped_by: str | None
    stopped_at: datetime | None
    stop_reason: str | None
    resumed_by: str | None
    resumed_at: datetime | None
    resume_reason: str | None
    lease_holder: str | None
    lease_acquired_at: datetime | None
    lease_heartbeat_at: datetime | None
    lease_expires_at: datetime | None

    def lease_active(self, now: datetime) -> bool:
        return self.lease_holder is not None and self.lease_expires_at is not None and self.lease_expires_at > now


def _lock(conn: Connection):
    q = select(training_control).where(_ROW)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = conn.execute(q).mappings().one()
    return row


def get(conn: Connection) -> ControlState:
    row = conn.execute(select(training_control).where(_ROW)).mappings().one()
    return _state(row)


def _state(row) -> ControlState:
    return ControlState(**{k: row[k] for k in ControlState.__dataclass_fields__})


def stop(conn: Connection, *, actor: str, reason: str, now: datetime) -> tuple[ControlState, bool]:
    """Set the stop flag. Returns (state, changed); a second stop changes nothing."""
    before = _state(_lock(conn))
    if before.stopped:
        return before, False
    conn.execute(
        update(training_control).where(_ROW).values(stopped=True, stopped_by=actor, stopped_at=now, stop_reason=reason)
    )
    return get(conn), True


def resume(conn: Connection, *, actor: str, reason: str | None, now: datetime) -> tuple[ControlState, bool]:
    """Lift the stop flag. Returns (state, changed); resuming a running system changes nothing."""
    before = _state(_lock(conn))
    if not before.stopped:
        return before, False
    conn.execute(
        update(training_control)
        .where(_ROW)
        .values(stopped=False, resumed_by=actor, resumed_at=now, resume_reason=reason)
    )
    return get(conn), True


@dataclass(frozen=True)
class Lease:
    holder: str
    token: str
    expires_at: datetime


def acquire_lease(conn: Connection, *, holder: str, ttl: timedelta, now: datetime) -> Lease:
    """Take the training lease, or raise LeaseHeldError naming the live holder.

    An expired lease (its holder died without releasing) is taken over."""
    row = _lock(conn)
    if row["lease_holder"] and row["lease_expires_at"] and row["lease_expires_at"] > now:
        raise LeaseHeldError(
            f"training lease held by {row['lease_holder']} since {row['lease_acquired_at']:%Y-%m-%d %H:%M:%S}Z "
            f"(expires {row['lease_expires_at']:%H:%M:%S}Z unless renewed)",
            hint="wait for that run to finish, or `llctl stop-training --reason ...` to stop it",
            holder=row["lease_holder"],
        )
    lease = Lease(holder=holder, token=secrets.token_hex(16), expires_at=now + ttl)
    conn.execute(
        update(training_control)
        .where(_ROW)
        .values(
            lease_holder=holder,
            lease_token=lease.token,
            lease_acquired_at=now,
            lease_heartbeat_at=now,
            lease_expires_at=lease.expires_at,
        )
    )
    return lease


def heartbeat(conn: Connection, lease: Lease, *, ttl: timedelta, now: datetime) -> tuple[Lease, ControlState]:
    """Extend the lease and return the control state (the trainer checks the stop flag here).

    Raises PreconditionError if the lease was lost (expired and taken by someone else)."""
    row = _lock(conn)
    if row["lease_token"] != lease.token:
        raise PreconditionError(
            f"training lease lost: now held by {row['lease_holder'] or 'nobody'}",
            hint="this run stops without writing a version; run `llctl status` to see who trains",
        )
    expires = now + ttl
    conn.execute(
        update(training_control).where(_ROW).values(lease_heartbeat_at=now, lease_expires_at=expires)
    )
    return Lease(lease.holder, lease.token, expires), _state({**row, "lease_heartbeat_at": now, "lease_expires_at": expires})


def release_lease(conn: Connection, lease: Lease) -> bool:
    """Give the lease back; returns False if it was no longer ours."""
    row = _lock(conn)
    if row["lease_token"] != lease.token:
        return False
    conn.execute(
        update(training_control)
        .where(_ROW)
        .values(lease_holder=None, lease_token=None, lease_acquired_at=None, lease_heartbeat_at=None, lease_expires_at=None)
    )
    return True
