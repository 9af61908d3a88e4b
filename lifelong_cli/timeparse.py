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
    if len(v) > 64:  # nothing that long is a time; and a regex over megabytes is not free
        raise UsageError(f"{flag} {value[:40]!r}… is not a time",
                         hint=f"use ISO-8601 (2026-11-25T03:00:00Z) or a duration (30m, 2h, 7d) for {flag}")
    m = _RELATIVE.match(v)
    if m:
        try:
            return now - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
        except (OverflowError, ValueError):  # 999999999999d: before year 1
            raise UsageError(f"{flag} {value[:40]!r} reaches back before year 1",
                             hint=f"use a shorter duration (e.g. 365d) or an ISO-8601 time for {flag}") from None
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{flag} {value[:60]!r} is not a time", hint=f"use ISO-8601 (2026-11-25T03:00:00Z) or a duration (30m, 2h, 7d) for {flag}"
        ) from None
    try:
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 is before year 1 in UTC
        raise UsageError(f"{flag} {value[:60]!r} is out of range in UTC",
                         hint=f"use a time between years 1 and 9999 for {flag}") from None
