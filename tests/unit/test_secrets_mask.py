"""Secrets never leave llctl (issue 12 item 4): one masking function built on taking the URL apart,
used by every output path. Unit cases for the parser, then the real `llctl` entry point: every
verb's human output, --json, --debug errors, audit rows, reports and logs, for each URL form plus
the admin token; and `init` writes no password into llctl.yaml in any form."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from lifelong_cli.secrets import MASK, MaskingStream, mask, mask_obj, mask_url, unencoded_at, url_password
from tests.helpers import run_cli

PW = "Pw-S3cret-9x"
TOKEN = "tok-Adm1n-S3cret-77"

# (name, URL with the password PW, the URL as it must be shown)
FORMS = [
    ("user:password", f"postgresql+psycopg://alice:{PW}@127.0.0.1:1/llctl",
     "postgresql+psycopg://alice:***@127.0.0.1:1/llctl"),
    ("query password", f"postgresql+psycopg://alice@127.0.0.1:1/llctl?password={PW}",
     "postgresql+psycopg://alice@127.0.0.1:1/llctl?password=***"),
    ("query password among others", f"postgresql+psycopg://127.0.0.1:1/llctl?sslmode=require&password={PW}&x=1",
     "postgresql+psycopg://127.0.0.1:1/llctl?sslmode=require&password=***&x=1"),
    ("empty user", f"postgresql+psycopg://:{PW}@127.0.0.1:1/llctl", "postgresql+psycopg://:***@127.0.0.1:1/llctl"),
    ("unencoded @ in the password", "postgresql+psycopg://alice:Pw-S3c@ret-9x@127.0.0.1:1/llctl",
     "postgresql+psycopg://alice:***@127.0.0.1:1/llctl"),
    ("percent-encoded password", "postgresql+psycopg://alice:Pw-S3c%40ret-9x@127.0.0.1:1/llctl",
     "postgresql+psycopg://alice:***@127.0.0.1:1/llctl"),
    ("http tracking server", f"https://bob:{PW}@mlflow.example:5000/", "https://bob:***@mlflow.example:5000/"),
]
SECRET_PARTS = (PW, "Pw-S3c", "ret-9x", "S3c%40ret", TOKEN)


def leaks(text: str) -> list[str]:
    return [s for s in SECRET_PARTS if s in text]


# --------------------------------------------------------------------------------------------- the parser


@pytest.mark.parametrize(("name", "url", "shown"), FORMS, ids=[f[0] for f in FORMS])
def test_mask_url_hides_the_password_of_every_form(name, url, shown):
    assert mask_url(url) == shown
    assert mask(f"cannot reach the state store at {url}: refused") == f"cannot reach the state store at {shown}: refused"
    assert mask(json.dumps({"url": url})) == json.dumps({"url": shown})  # inside JSON text: stops at the quote
    assert not leaks(mask(f"({url})")), mask(f"({url})")
    assert url_password(url) is not None


@pytest.mark.parametrize("url", ["postgresql+psycopg://postgres@127.0.0.1:5432/test", "sqlite:///.llctl/state.db",
                                 "postgresql://u@h/db?application_name=a@b", "postgresql://h:5432/db?x=a@b",
                                 "http://[::1]:8700/predict", "s3://bucket/data@2024/x.parquet"])
def test_urls_without_a_password_are_left_as_they_are(url):
    assert mask_url(url) == url and mask(url) == url
    assert url_password(url) is None and not unencoded_at(url)


def test_an_unencoded_at_is_recognised_so_the_store_can_refuse_it():
    assert unencoded_at("postgresql://alice:p@ss@h/db") and not unencoded_at("postgresql://alice:p%40ss@h/db")


def test_libpq_dsn_and_quoted_values_are_masked():
    assert mask(f"host=db password={PW} user=x") == "host=db password=*** user=x"
    assert mask(f"host=db password='{PW} more' user=x") == "host=db password=*** user=x"


def test_the_admin_token_is_masked_by_value(monkeypatch):
    monkeypatch.setenv("LLCTL_ADMIN_TOKEN", TOKEN)
    assert mask(f"Authorization: Bearer {TOKEN}") == f"Authorization: Bearer {MASK}"
    assert mask_obj({"a": [f"x{TOKEN}y", 3], TOKEN: None}) == {"a": [f"x{MASK}y", 3], MASK: None}


def test_a_password_given_in_the_store_url_is_masked_wherever_it_appears(monkeypatch):
    """A driver may quote the password without its URL (a DSN, a message): masked by value."""
    monkeypatch.setenv("LLCTL_STORE__URL", FORMS[0][1])
    assert mask(f'FATAL: password "{PW}" rejected') == f'FATAL: password "{MASK}" rejected'


def test_masking_stream_masks_logs_written_through_it(monkeypatch):
    sink = io.StringIO()
    handler = logging.StreamHandler(MaskingStream(sink))
    log = logging.getLogger("llctl.test.secrets")
    log.addHandler(handler)
    try:
        log.warning("connecting to %s", FORMS[1][1])
    finally:
        log.removeHandler(handler)
    assert sink.getvalue().strip() == f"connecting to {FORMS[1][2]}"


# --------------------------------------------------------------------------------------------- every output path

VERBS = [["status"], ["doctor"], ["config", "show"], ["audit"], ["versions"], ["quarantine", "list"],
         ["incident", "list"], ["check"], ["stop-training", "--reason", "t"], ["resume", "--reason", "t"],
         ["fallback", "on", "--reason", "t"], ["rollback", "--last-good", "--reason", "t"],
         ["purge-data", "--batch", "1", "--reason", "t", "--yes"], ["db", "upgrade"]]


@pytest.mark.parametrize(("name", "url", "shown"), [f for f in FORMS if f[0] != "http tracking server"],
                         ids=[f[0] for f in FORMS if f[0] != "http tracking server"])
def test_no_verb_prints_the_store_password_human_json_or_debug(workspace, cli_env, name, url, shown):
    env = {**cli_env, "LLCTL_STORE__URL": url, "LLCTL_ADMIN_TOKEN": TOKEN}
    for verb in VERBS:
        for mode in ([], ["--json"], ["--debug"]):
            args = [*mode, *verb] if mode == ["--debug"] else [*verb, *mode]
            r = run_cli(args, cwd=workspace, env=env)
            assert r.code != 1, (args, r.stderr)  # an unreachable or refused store is never a bug
            assert not leaks(r.stdout + r.stderr), (args, r.stdout, r.stderr)
            if "--json" in mode:
                json.loads(r.stdout)  # still one JSON document


def test_secrets_in_reasons_titles_and_settings_stay_out_of_output_audit_rows_and_reports(workspace, cli_env):
    env = {**cli_env, "LLCTL_ADMIN_TOKEN": TOKEN}

    def cli(*args):
        r = run_cli([str(a) for a in args], cwd=workspace, env=env)
        assert "Traceback" not in r.stderr, r.stderr
        assert not leaks(r.stdout + r.stderr), (args, r.stdout, r.stderr)
        return r

    urls = " and ".join(u for _, u, _ in FORMS)
    assert cli("incident", "open", f"store {urls} leaked token {TOKEN}").code == 0
    assert cli("stop-training", "--reason", f"db at {urls} is down; token {TOKEN}").code == 0
    assert cli("resume", "--reason", f"back: {FORMS[3][1]}", "--json").code == 0
    assert cli("fallback", "on", "--reason", f"{FORMS[1][1]}").code == 4  # no version yet: refused, not leaked
    for _, url, shown in FORMS:
        r = cli("--set", f"registry.tracking_uri={url}", "config", "show", "--json")
        assert r.json()["config"]["registry"]["tracking_uri"] == shown
    for args in (["audit"], ["audit", "--json"], ["status"], ["status", "--json"], ["incident", "show", "1"],
                 ["incident", "show", "1", "--json"]):
        assert cli(*args).code == 0, args
    out = workspace / "reports"
    for fmt in ("md", "html"):
        r = cli("incident", "report", "1", "--format", fmt, "--out", out, "--json")
        assert r.code == 0, r.stderr
        text = Path(r.json()["path"]).read_text()
        assert "***" in text and not leaks(text), text[:2000]
    from lifelong_cli.context import AppContext

    ctx = AppContext(cwd=workspace, env=cli_env, actor="test")  # what is stored (SQLite or PostgreSQL), not only shown
    try:
        with ctx.store.tx(write=False) as t:
            rows = [(r["args"], r["reason"], r["detail"]) for r in t.rows("SELECT args, reason, detail FROM audit_log")]
    finally:
        ctx.close()
    assert rows and not leaks(json.dumps(rows, default=str))
    assert any("***" in (r[1] or "") for r in rows)


@pytest.mark.parametrize(("name", "url", "shown"), FORMS, ids=[f[0] for f in FORMS])
def test_init_refuses_to_write_a_password_into_llctl_yaml(tmp_path, cli_env, name, url, shown):
    ws = tmp_path / "new"
    for mode in ([], ["--json"]):
        r = run_cli(["init", str(ws), "--store-url", url, *mode], cwd=tmp_path, env=cli_env)
        assert r.code == 6, (r.stdout, r.stderr)
        assert "must not contain a password" in r.stderr and not leaks(r.stdout + r.stderr)
        assert not (ws / "llctl.yaml").exists()


def test_init_writes_a_url_without_a_password_as_given(tmp_path, cli_env):
    cli_env = {k: v for k, v in cli_env.items() if k != "LLCTL_STORE__URL"}  # the URL in llctl.yaml is the one read
    ws = tmp_path / "new"
    url = "sqlite:///" + str(tmp_path / "new" / "state #1.db")  # a '#' survives YAML
    r = run_cli(["init", str(ws), "--store-url", url, "--json"], cwd=tmp_path, env=cli_env)
    assert r.code == 0, r.stderr
    r = run_cli(["config", "show", "--json"], cwd=ws, env=cli_env)
    assert r.json()["config"]["store"]["url"] == url
