"""Drift detection: is the current batch distributed like the reference?

``get_detector("scipy" | "alibi", **opts)`` returns a :class:`DriftDetector`; its ``compare(...)`` returns a
:class:`DriftReport`. Backends are imported when asked for (alibi-detect is a heavy import; the default needs only numpy).
"""

from __future__ import annotations

from typing import Any

from lifelong_cli.drift.base import DriftDetector, DriftReport, FeatureDrift
from lifelong_cli.errors import ConfigError

__all__ = ["BACKENDS", "DriftDetector", "DriftReport", "FeatureDrift", "get_detector"]

BACKENDS = ("scipy", "alibi")


def get_detector(name: str = "scipy", **opts: Any) -> DriftDetector:
    """The drift backend ``name`` with options ``alpha``, ``correction``, ``null_rate_tolerance``,
    ``min_samples``.

    Raises ``ConfigError`` for an unknown backend, option or option value, and ``UnavailableError`` when the
    backend's library is not installed (alibi-detect for ``alibi``)."""
    key = str(name).strip().lower()
    if key == "scipy":
        from lifelong_cli.drift.scipy_backend import ScipyDriftDetector as cls
    elif key == "alibi":
        from lifelong_cli.drift.alibi_backend import AlibiDriftDetector as cls
    else:
        raise ConfigError(f"unknown drift backend {name!r}",
                          hint=f"set drift.backend to one of: {', '.join(BACKENDS)}", backend=str(name))
    try:
        return cls(**opts)
    except TypeError as e:
        raise ConfigError(f"bad option for the {key!r} drift backend: {e}",
                          hint="options: alpha, correction, null_rate_tolerance, min_samples") from e
