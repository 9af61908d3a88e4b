"""`llctl demo` end to end with the real binary: the inverted labels are held at ingest, the bad-labels
playbook rejects them, the story ends recovered, with a report."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers import run_bin

pytestmark = pytest.mark.slow


def test_demo_recovers_and_writes_a_postmortem(tmp_path: Path, sqlite_cli_env: dict[str, str]) -> None:
    wd = tmp_path / "demo"
    t0 = time.monotonic()
    r = run_bin(["demo", "--workdir", str(wd), "--json"], cwd=tmp_path, env=sqlite_cli_env, timeout=300)
    took = time.monotonic() - t0
    assert r.code == 0, r.stderr[-3000:]
    doc = r.json()
    assert took < 180, f"the demo took {took:.0f} s (budget: 3 minutes on 2 cores)"
    assert doc["requests"] > 500 and doc["requests_failed"] == 0
    assert len(doc["batches_held"]) == 2 and doc["rows_purged"] == 0  # the two inverted labels batches, held
    assert doc["time_to_detect_s"] is not None and doc["time_to_detect_s"] < 60
    assert doc["time_to_mitigate_s"] is not None
    assert doc["golden_after"] >= doc["golden_before"] - 0.02
    assert doc["golden_worst_served"] >= doc["golden_before"] - 0.02  # no version trained on them was served
    v = doc["versions"]
    assert v["rejected"] is None and v["stable"] > v["first"]  # recovered with a version trained on clean data
    report = Path(doc["report"])
    text = report.read_text()
    for heading in ("## Key times", "## Golden-set metric", "## Data and versions affected", "## Timeline",
                    "## Root cause", "## Follow-ups"):
        assert heading in text
    pngs = list(report.parent.glob("incident-*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    # The narrated progress went to stderr, the JSON document alone to stdout.
    assert "playbook" in r.stderr and r.stdout.lstrip().startswith("{")
