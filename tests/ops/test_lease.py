"""The training lease: one holder at a time, heartbeats extend it, an expired one is taken over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lifelong_cli.errors import LeaseHeldError, PreconditionError
from lifelong_cli.store import control

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)


def test_second_acquire_is_refused_naming_the_holder(ctx):
    with ctx.store.tx() as c:
        control.acquire_lease(c, ctx.model, holder="trainer-a", ttl=TTL, now=T0)
    with pytest.raises(LeaseHeldError) as ei, ctx.store.tx() as c:
        control.acquire_lease(c, ctx.model, holder="trainer-b", ttl=TTL, now=T0 + timedelta(seconds=5))
    assert "trainer-a" in ei.value.message
    assert ei.value.exit_code == 5


def test_heartbeat_extends_and_reports_stop_flag(ctx):
    with ctx.store.tx() as c:
        lease = control.acquire_lease(c, ctx.model, holder="a", ttl=TTL, now=T0)
    with ctx.store.tx() as c:
        control.stop(c, ctx.model, actor="oncall", reason="x", now=T0)
    with ctx.store.tx() as c:
        lease2, state = control.heartbeat(c, ctx.model, lease, ttl=TTL, now=T0 + timedelta(seconds=25))
    assert lease2.expires_at == T0 + timedelta(seconds=55)
    assert state.stopped is True
    # still held 50 s after acquiring, because of the heartbeat
    with pytest.raises(LeaseHeldError), ctx.store.tx() as c:
        control.acquire_lease(c, ctx.model, holder="b", ttl=TTL, now=T0 + timedelta(seconds=50))


def test_expired_lease_is_taken_over_and_old_holder_loses_it(ctx):
    with ctx.store.tx() as c:
        old = control.acquire_lease(c, ctx.model, holder="dead", ttl=TTL, now=T0)
    with ctx.store.tx() as c:
        new = control.acquire_lease(c, ctx.model, holder="alive", ttl=TTL, now=T0 + timedelta(seconds=31))
    assert new.holder == "alive"
    with pytest.raises(PreconditionError, match="lease lost"), ctx.store.tx() as c:
        control.heartbeat(c, ctx.model, old, ttl=TTL, now=T0 + timedelta(seconds=32))
    with ctx.store.tx() as c:
        assert control.release_lease(c, ctx.model, old) is False
        assert control.release_lease(c, ctx.model, new) is True
    with ctx.store.tx(write=False) as c:
        assert control.get(c, ctx.model).lease_holder is None


def test_released_lease_can_be_acquired_again(ctx):
    with ctx.store.tx() as c:
        lease = control.acquire_lease(c, ctx.model, holder="a", ttl=TTL, now=T0)
    with ctx.store.tx() as c:
        control.release_lease(c, ctx.model, lease)
    with ctx.store.tx() as c:
        assert control.acquire_lease(c, ctx.model, holder="b", ttl=TTL, now=T0 + timedelta(seconds=1)).holder == "b"


def test_each_model_has_its_own_lease_and_stop_flag(ctx):
    from lifelong_cli.store import models

    with ctx.store.tx() as c:
        models.add(c, name="other", actor="t", now=T0, data_prefix="other")
    with ctx.store.tx() as c:
        mine = control.acquire_lease(c, ctx.model, holder="a", ttl=TTL, now=T0)
        theirs = control.acquire_lease(c, "other", holder="b", ttl=TTL, now=T0)  # not held by a's lease
        control.stop(c, ctx.model, actor="oncall", reason="x", now=T0)
    with ctx.store.tx() as c:
        _, state = control.heartbeat(c, "other", theirs, ttl=TTL, now=T0 + timedelta(seconds=1))
        assert state.stopped is False and state.lease_holder == "b"
        assert control.get(c, ctx.model).stopped is True
        assert control.release_lease(c, "other", mine) is False  # a's token is not b's
        assert control.release_lease(c, ctx.model, mine) is True
        assert control.get(c, "other").lease_holder == "b"
