"""Times given on the command line: ISO-8601, or a duration before now."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from lifelong_cli.errors import UsageError

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str, *, now: datetime, flag: str) -> datetime:
    """An ISO-8601 time (UTC if no zone) or a duration before now: 30m, 2h, 7d."""
    from datetime import UTC

    v = value.strip()
    m = _RELATIVE.match(v)
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{flag} {value!r} is not a time", hint=f"use ISO-8601 (2026-11-25T03:00:00Z) or a duration (30m, 2h, 7d) for {flag}"
        ) from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
