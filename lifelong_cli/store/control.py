"""Training control: the stop flag and the training lease (one row per model).

Every function takes an open write transaction (``Store.tx()``); the row is locked first so that
concurrent engineers and trainers are serialised (FOR UPDATE on PostgreSQL; BEGIN IMMEDIATE on
SQLite)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from lifelong_cli.errors import LeaseHeldError, PreconditionError
from lifelong_cli.store.sql import Tx

_TS = ("stopped_at", "resumed_at", "lease_acquired_at", "lease_heartbeat_at", "lease_expires_at")
TYPES = {**{c: "ts" for c in _TS}, "stopped": "bool"}


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
    lease_token: str | None
    lease_acquired_at: datetime | None
    lease_heartbeat_at: datetime | None
    lease_expires_at: datetime | None

    def lease_active(self, now: datetime) -> bool:
        return self.lease_holder is not None and self.lease_expires_at is not None and self.lease_expires_at > now


_COLS = ", ".join(f.name for f in fields(ControlState))


def _read(t: Tx, model: str, *, lock: bool) -> ControlState:
    sql = f"SELECT {_COLS} FROM training_control WHERE model = :m" + (" FOR UPDATE" if lock and t.postgres else "")
    row = t.row(sql, {"m": model}, types=TYPES)
    if row is None:
        from lifelong_cli.errors import ModelNotFoundError

        raise ModelNotFoundError(f"model '{model}' is not in this state store", hint="`llctl models` lists them")
    return ControlState(**row)


def get(t: Tx, model: str) -> ControlState:
    return _read(t, model, lock=False)


def _set(t: Tx, model: str, **values) -> None:
    t.execute(f"UPDATE training_control SET {', '.join(f'{k} = :{k}' for k in values)} WHERE model = :model",
              {**values, "model": model})


def stop(t: Tx, model: str, *, actor: str, reason: str, now: datetime) -> tuple[ControlState, bool]:
    """Set the stop flag. Returns (state, changed); a second stop changes nothing."""
    before = _read(t, model, lock=True)
    if before.stopped:
        return before, False
    _set(t, model, stopped=True, stopped_by=actor, stopped_at=now, stop_reason=reason)
    return get(t, model), True


def resume(t: Tx, model: str, *, actor: str, reason: str | None, now: datetime) -> tuple[ControlState, bool]:
    """Lift the stop flag. Returns (state, changed); resuming a running system changes nothing."""
    before = _read(t, model, lock=True)
    if not before.stopped:
        return before, False
    _set(t, model, stopped=False, resumed_by=actor, resumed_at=now, resume_reason=reason)
    return get(t, model), True


@dataclass(frozen=True)
class Lease:
    holder: str
    token: str
    expires_at: datetime


def acquire_lease(t: Tx, model: str, *, holder: str, ttl: timedelta, now: datetime) -> Lease:
    """Take the training lease, or raise LeaseHeldError naming the live holder.

    An expired lease (its holder died without releasing) is taken over."""
    cur = _read(t, model, lock=True)
    if cur.lease_active(now):
        raise LeaseHeldError(
            f"training lease held by {cur.lease_holder} since {cur.lease_acquired_at:%Y-%m-%d %H:%M:%S}Z "
            f"(expires {cur.lease_expires_at:%H:%M:%S}Z unless renewed)",
            hint="wait for that run to finish, or `llctl stop-training --reason ...` to stop it",
            holder=cur.lease_holder,
        )
    lease = Lease(holder=holder, token=secrets.token_hex(16), expires_at=now + ttl)
    _set(t, model, lease_holder=holder, lease_token=lease.token, lease_acquired_at=now, lease_heartbeat_at=now,
         lease_expires_at=lease.expires_at)
    return lease


def heartbeat(t: Tx, model: str, lease: Lease, *, ttl: timedelta, now: datetime) -> tuple[Lease, ControlState]:
    """Extend the lease and return the control state (the trainer checks the stop flag here).

    Raises PreconditionError if the lease was lost (expired and taken by someone else)."""
    cur = _read(t, model, lock=True)
    if cur.lease_token != lease.token:
        raise PreconditionError(
            f"training lease lost: now held by {cur.lease_holder or 'nobody'}",
            hint="this run stops without writing a version; run `llctl status` to see who trains",
        )
    expires = now + ttl
    _set(t, model, lease_heartbeat_at=now, lease_expires_at=expires)
    return Lease(lease.holder, lease.token, expires), get(t, model)


def release_lease(t: Tx, model: str, lease: Lease) -> bool:
    """Give the lease back; returns False if it was no longer ours."""
    if _read(t, model, lock=True).lease_token != lease.token:
        return False
    _set(t, model, lease_holder=None, lease_token=None, lease_acquired_at=None, lease_heartbeat_at=None,
         lease_expires_at=None)
    return True


# -- read by the Prometheus exporter (issue 13) ------------------------------------------------------
def every(t: Tx) -> dict[str, ControlState]:
    """Every model's training control state, by model name (one query)."""
    rows = t.rows(f"SELECT model, {_COLS} FROM training_control ORDER BY model", types=TYPES)
    return {r.pop("model"): ControlState(**r) for r in rows}
