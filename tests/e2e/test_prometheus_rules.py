"""The shipped alert rules and dashboard against promtool and against what llctl really exports: the
rules load, every alert fires and stays quiet in its unit tests, and every metric the rules and the
dashboard name is one that `llctl metrics` (or `llctl serve`) writes — so they cannot drift apart.
Also `llctl metrics --listen` over real HTTP."""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import llctl_bin, run_bin

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "llctl.json"
METRIC = re.compile(r"\b((?:llctl|process)_[a-z0-9_]+)\b")
# series that are not about one model: the store, the process
NOT_PER_MODEL = re.compile(r"^(llctl_store_|process_)")


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("promtool is missing in CI: .ci/run installs Debian's `prometheus` package")
    pytest.skip("promtool is not installed (apt-get install --no-install-recommends prometheus)")


def _sample_names(families) -> set[str]:
    """The sample names a Prometheus text format holds or declares (a counter `x` is `x_total`)."""
    out: set[str] = set()
    for fam in families:
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                    "summary": ["_sum", "_count", ""]}.get(fam.type, [""])
        out |= {fam.name + s for s in suffixes}
        out |= {s.name for s in fam.samples}
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> set[str]:
    """Every metric name `llctl metrics --once --textfile` writes (real binary, fresh workspace), plus what
    only a process adds: a serving replica's request and prediction-log metrics, the process metrics."""
    from prometheus_client import generate_latest

    from lifelong_cli.serving.app import Metrics

    tmp = tmp_path_factory.mktemp("exported")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLCTL_")}
    assert run_bin(["init", str(tmp / "ws")], cwd=tmp, env=env).code == 0
    path = tmp / "llctl.prom"
    r = run_bin(["metrics", "--once", "--textfile", str(path)], cwd=tmp / "ws", env=env)
    assert r.code == 0, r.stderr
    names = _sample_names(text_string_to_metric_families(path.read_text()))
    assert "llctl_fallback_since_timestamp_seconds" in names  # declared even when nothing is in fallback
    serving = Metrics()  # no replica: the families only a replica adds (requests, latency, prediction log)
    names |= _sample_names(text_string_to_metric_families(generate_latest(serving.registry).decode()))
    return names


def _rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_promtool_checks_the_rules(promtool):
    p = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in p.stdout


def test_promtool_unit_tests_of_the_rules_pass(promtool):
    p = subprocess.run([promtool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout


def test_every_alert_is_tested_firing_and_quiet_and_names_an_llctl_command():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    evals = [e for t in tests for e in t.get("alert_rule_test", [])]
    for rule in _rules():
        name = rule["alert"]
        mine = [e for e in evals if e["alertname"] == name]
        assert any(e["exp_alerts"] for e in mine), f"{name}: no test where it fires"
        assert any(not e["exp_alerts"] for e in mine), f"{name}: no test where it stays quiet"
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        assert rule["annotations"]["summary"] and "`llctl " in rule["annotations"]["description"], name


def test_every_metric_the_rules_name_is_exported(exported):
    used = {m for rule in _rules() for m in METRIC.findall(rule["expr"])}
    assert used, "no metric found in the rules"
    assert used - exported == set(), f"rules name metrics llctl does not export: {sorted(used - exported)}"


def _exprs(node) -> list[str]:
    if isinstance(node, dict):
        return ([node["expr"]] if isinstance(node.get("expr"), str) else []) + [
            e for v in node.values() for e in _exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in _exprs(v)]
    return []


def test_the_dashboard_is_templated_by_model_and_uses_only_exported_metrics(exported):
    doc = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert "model" in variables and variables["model"].get("multi") and variables["model"].get("includeAll")
    query = variables["model"]["query"]
    query = query["query"] if isinstance(query, dict) else query
    assert "label_values(" in query and set(METRIC.findall(query)) <= exported
    panels = [p for p in doc["panels"] if p.get("type") != "row"]
    assert len(panels) >= 8
    exprs = _exprs(panels)
    assert len(exprs) >= len(panels)
    for expr in exprs:
        used = set(METRIC.findall(expr))
        assert used, f"no llctl metric in {expr!r}"
        assert used <= exported, f"{expr!r} names metrics llctl does not export: {sorted(used - exported)}"
        if any(not NOT_PER_MODEL.match(m) for m in used):
            assert 'model=~"$model"' in expr, f"not templated by model: {expr!r}"


def _read_line(stream, deadline: float) -> str:
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    line = b""
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        if sel.select(timeout=max(0.0, deadline - time.monotonic())):
            chunk = os.read(stream.fileno(), 1)
            if not chunk:
                break
            line += chunk
    return line.decode()


@pytest.mark.slow
def test_metrics_listen_serves_every_model_over_http_and_stops_cleanly_on_sigterm(workspace, cli_env):
    assert run_bin(["stop-training", "--reason", "drill"], cwd=workspace, env=cli_env).code == 0
    proc = subprocess.Popen([llctl_bin(), "metrics", "--listen", "127.0.0.1:0"], cwd=workspace, env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        line = _read_line(proc.stderr, time.monotonic() + 30)
        found = re.search(r"http://\S+/metrics", line)
        assert found, line
        r = httpx.get(found.group(0), timeout=10)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        fams = {f.name: f for f in text_string_to_metric_families(r.text)}
        (stopped,) = fams["llctl_training_stopped"].samples
        assert stopped.value == 1 and fams["llctl_store_up"].samples[0].value == 1
        assert "process_cpu_seconds" in fams  # the exporter's own process
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_every_dashboard_query_is_valid_promql(promtool, tmp_path):
    """promtool parses each panel's query (as a recording rule, Grafana's variables filled in)."""
    doc = json.loads(DASHBOARD.read_text())
    exprs = _exprs([p for p in doc["panels"] if p.get("type") != "row"])
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"llctl:dashboard_query_{i}", "expr": e.replace("$__rate_interval", "1m").replace("$model", ".*")}
        for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    p = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in p.stdout


def test_the_exporter_loads_no_heavy_module(workspace, cli_env):
    """An exporter scraped every 15 s stays light: no torch, onnxruntime, pandas, pyarrow, sqlalchemy."""
    heavy = ["torch", "mlflow", "pandas", "pyarrow", "onnxruntime", "onnx", "scipy", "alembic", "sqlalchemy"]
    probe = ("import json, sys\nfrom lifelong_cli.cli.app import main\ntry:\n    main(sys.argv[1:])\n"
             "except SystemExit:\n    pass\n"
             f"print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.__stderr__)\n")
    p = subprocess.run([sys.executable, "-c", probe, "metrics"], cwd=workspace, env=cli_env, capture_output=True,
                       text=True, timeout=60)
    assert "llctl_store_up 1.0" in p.stdout, p.stderr
    assert json.loads(p.stderr.strip().splitlines()[-1]) == []
