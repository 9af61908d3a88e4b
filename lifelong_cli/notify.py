"""Notifications: generic JSON webhooks, Slack and PagerDuty Events v2, sent when llctl changes state.

How an event travels (nothing here may slow down or fail the verb that caused it):

1. ``after_commit`` is called once a state change and its audit entry are committed (``ops/_base.py``
   ``audited``). It maps (verb, outcome) to an event (``incident.opened``, ``rollback``, ...); if a
   configured target wants it, the event is written to the outbox (``.llctl/notify/outbox``, one JSON
   file each, named in time order) and a detached sender (``notify.main``, niced) is started. The verb
   does not wait for it. Any error here becomes one warning line on stderr, never an exception.
2. The child takes the outbox lock (so events leave in the order they happened: an incident's
   ``resolve`` never overtakes its ``trigger``), sends every waiting event to its targets (each attempt
   bounded by the target's timeout, with a hard deadline per event), records each delivery as an audit
   entry ``notify`` (outcome ``ok`` or ``failed``, linked to the open incident like any entry), and
   removes the event from the outbox.

Secrets: a target names the environment variables holding its URL or routing key (``url_env``,
``routing_key_env``); their values are read only when sending, and never written to the outbox, the
audit log or any output (errors are scrubbed of them).

This module is imported by the emergency verbs: standard library only at module level.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifelong_cli.errors import NotFoundError
from lifelong_cli.ops._base import Result, jsonable

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITY = {"sev1": "critical", "sev2": "error", "sev3": "warning", "sev4": "info"}
LOCK_WAIT_SECONDS = 300.0
USER_AGENT = "llctl-notify/1"


# -- what happened -> which event ------------------------------------------------------------------
def events_for(verb: str, outcome: str, args: Mapping[str, Any], detail: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The notification events an audit entry stands for (none for most). Each: event name, severity,
    PagerDuty action and the key a resolve must repeat."""
    args, detail = args or {}, detail or {}
    if outcome == "violated" and verb == "check":
        names = ", ".join(p.get("policy", "?") for p in detail.get("violated", []))
        return [{"event": "slo.violated", "severity": "error", "key": f"slo/{names}"}]
    if verb == "ingest" and outcome == "held":
        return [{"event": "batch.held", "severity": "warning", "key": f"batch/{detail.get('batch')}"}]
    if outcome != "ok":
        return []
    if verb == "incident open":
        return [{"event": "incident.opened", "severity": SEVERITY.get(args.get("severity"), "error"),
                 "key": f"incident/{detail.get('incident')}"}]
    if verb == "incident close":
        return [{"event": "incident.closed", "severity": "info", "action": "resolve",
                 "key": f"incident/{detail.get('incident')}"}]
    if verb == "fallback":
        on = bool(detail.get("on", args.get("on")))
        return [{"event": "fallback.on" if on else "fallback.off", "severity": "warning" if on else "info",
                 "action": "trigger" if on else "resolve", "key": "fallback"}]
    if verb == "stop-training":
        return [{"event": "training.stopped", "severity": "warning", "key": "training-stopped"}]
    if verb == "resume":
        return [{"event": "training.resumed", "severity": "info", "action": "resolve", "key": "training-stopped"}]
    simple = {"rollback": ("rollback", "warning"), "canary abort": ("canary.aborted", "warning"),
              "data-release": ("batch.released", "info"), "data-reject": ("batch.rejected", "info")}
    if verb in simple:
        name, severity = simple[verb]
        key = f"batch/{detail.get('batch')}" if name.startswith("batch.") else f"{name}/{uuid.uuid4().hex[:12]}"
        return [{"event": name, "severity": severity, "key": key,
                 **({"action": "resolve"} if name.startswith("batch.") else {})}]
    return []


def summary_for(event: str, model: str | None, args: Mapping[str, Any], detail: Mapping[str, Any],
                reason: str | None, actor: str) -> str:
    """One line for a person: what happened, to which model, and why."""
    who = f"model '{model}'" if model else "all models"
    d, a = detail or {}, args or {}
    text = {
        "incident.opened": f"incident {d.get('incident')} opened ({a.get('severity')}): {a.get('title')}",
        "incident.closed": f"incident {d.get('incident')} closed" + (f": {reason}" if reason else ""),
        "slo.violated": "SLO violated: " + "; ".join(f"{p.get('policy')} — {p.get('figure')} (threshold {p.get('threshold')})"
                                                     for p in d.get("violated", [])),
        "canary.aborted": f"canary v{d.get('version')} aborted" + (" automatically" if d.get("automatic") else "")
        + (f" at {d['share_was']:.0%}" if isinstance(d.get("share_was"), int | float) else ""),
        "rollback": f"serving rolled back to v{d.get('target')}"
        + (f" (was v{d['previous_stable']})" if d.get("previous_stable") else ""),
        "fallback.on": f"serving from the fallback ({d.get('strategy') or a.get('strategy')})",
        "fallback.off": "fallback off: serving from the model again",
        "training.stopped": f"training stopped by {actor}",
        "training.resumed": f"training resumed by {actor}",
        "batch.held": f"batch {d.get('batch')} held: stored, not trainable until `llctl data release` or `reject`",
        "batch.released": f"held batch {d.get('batch')} released by {actor}",
        "batch.rejected": f"held batch {d.get('batch')} rejected by {actor}",
        "test": f"test notification from llctl ({actor})",
    }.get(event, event)
    if reason and event not in ("incident.closed", "test"):
        text += f": {reason}"
    return f"{who}: {text}"


def links_for(event: str, model: str | None, detail: Mapping[str, Any]) -> dict[str, str]:
    """Commands to run next (llctl has no web UI to link to)."""
    m = f"llctl --model {model} " if model else "llctl "
    out = {"status": m + "status", "audit": m + "audit"}
    if event.startswith("incident.") and detail.get("incident") is not None:
        out["incident"] = m + f"incident show {detail['incident']}"
    if event.startswith("batch."):
        out["holds"] = m + "data holds"
    return out


def targets_for(settings: Any, event: str) -> list[dict[str, Any]]:
    return [t.model_dump() for t in settings.notify.targets if "*" in t.events or event in t.events]


# -- the verb's side: record and hand over ---------------------------------------------------------
def after_commit(ctx: AppContext, *, verb: str, model: str | None, args: Mapping[str, Any], reason: str | None,
                 outcome: str, detail: Mapping[str, Any] | None) -> int:
    """Queue the events this committed change stands for and start a detached sender. Never raises and
    never waits on the network; returns how many events were queued."""
    try:
        settings = ctx.config.settings
        if not settings.notify.targets:
            return 0
        queued = 0
        for spec in events_for(verb, outcome, args, detail or {}):
            targets = targets_for(settings, spec["event"])
            if targets:
                write_outbox(ctx.config.state_dir, make_event(ctx, spec, model=model, args=args, reason=reason,
                                                              detail=detail or {}, verb=verb, outcome=outcome,
                                                              targets=targets))
                queued += 1
        if queued:
            spawn_sender(ctx)
        return queued
    except Exception as exc:  # a notification must never fail the verb: say so on stderr instead
        ctx.warn(f"warning: notification not sent ({type(exc).__name__}: {scrub(str(exc), ctx.env, ctx)}); "
                 "`llctl notify status` shows deliveries")
        return 0


def make_event(ctx: AppContext, spec: Mapping[str, Any], *, model: str | None, args: Mapping[str, Any],
               reason: str | None, detail: Mapping[str, Any], verb: str, outcome: str,
               targets: list[dict[str, Any]]) -> dict[str, Any]:
    from lifelong_cli.store.audit import scrub as scrub_args  # the audit log's masking of URL/password args

    event = spec["event"]
    scope = "*" if model is None else model
    args = scrub_args(args or {})
    return {
        "id": uuid.uuid4().hex,
        "event": event,
        "model": model,
        "summary": summary_for(event, model, args, detail, reason, ctx.actor),
        "detail": jsonable({**detail, **({"args": dict(args)} if args else {})}),
        "reason": reason,
        "at": jsonable(ctx.now()),
        "actor": ctx.actor,
        "severity": spec.get("severity", "warning"),
        "action": spec.get("action", "trigger"),
        "dedup_key": f"llctl/{scope}/{spec['key']}",
        "links": links_for(event, model, detail),
        "source": socket.gethostname(),
        "verb": verb,
        "outcome": outcome,
        "targets": targets,
    }


def outbox_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "notify" / "outbox"


_SEQ = iter(range(1 << 62))


def write_outbox(state_dir: Path, event: Mapping[str, Any]) -> Path:
    """The event as one file, named in time order, written whole (temp file + rename) but not fsynced:
    two fsyncs cost an emergency verb 10-25 ms on a busy disk. A power cut may lose a notification,
    never the change itself (committed in the store, with its audit entry, before this runs)."""
    from lifelong_cli.fsutil import TMP_SUFFIX

    box = outbox_dir(state_dir)
    box.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}-{next(_SEQ):06d}.json"
    tmp = box / f".{name}{TMP_SUFFIX}"
    tmp.write_bytes(json.dumps(event, default=str).encode())
    os.replace(tmp, box / name)
    return box / name


# Lowered priority before the imports: on a busy machine the sender must not take CPU from the verb.
_SENDER = "import os; os.nice(10); from lifelong_cli.notify import main; main()"


def spawn_sender(ctx: AppContext) -> subprocess.Popen:
    """Start the sender (``main``) detached: own session, no terminal, no inherited pipes.
    The store URL goes over its stdin, never into a file or its command line."""
    job = json.dumps({"state_dir": str(ctx.config.state_dir), "store_url": ctx.config.store_url}).encode()
    p = subprocess.Popen([sys.executable, "-c", _SENDER], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                         close_fds=True, env=dict(ctx.env), cwd=str(ctx.config.workspace))
    try:
        p.stdin.write(job)  # far below a pipe's buffer: never blocks
    finally:
        p.stdin.close()
    return p


# -- payloads ------------------------------------------------------------------------------------
def payload(kind: str, event: Mapping[str, Any], routing_key: str | None = None) -> dict[str, Any]:
    """The body posted to a target of ``kind``."""
    if kind == "slack":
        ctx_line = " · ".join(x for x in (f"model {event['model']}" if event.get("model") else "all models",
                                          f"by {event['actor']}", event["at"], event["event"]) if x)
        return {"text": f"[llctl] {event['summary']}",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{_slack_escape(event['summary'])}*"}},
                           {"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(ctx_line)}]},
                           {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(
                               f"`{v}`" for v in event.get("links", {}).values())}}]}
    if kind == "pagerduty":
        body: dict[str, Any] = {"routing_key": routing_key, "event_action": event["action"],
                                "dedup_key": event["dedup_key"], "client": "llctl"}
        if event["action"] == "trigger":
            body["payload"] = {"summary": event["summary"][:1024], "source": event.get("source") or "llctl",
                               "severity": event["severity"], "component": event.get("model") or "*",
                               "group": "llctl", "class": event["event"], "timestamp": event["at"],
                               "custom_details": {"event": event["event"], "actor": event["actor"],
                                                  "reason": event.get("reason"), "detail": event.get("detail"),
                                                  "links": event.get("links")}}
        return body
    return {k: event.get(k) for k in ("event", "model", "summary", "detail", "at", "actor", "links", "severity",
                                       "reason", "id", "dedup_key")}


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def scrub(text: str, env: Mapping[str, str], ctx_or_targets: Any = None) -> str:
    """``text`` with every configured secret value (URLs, routing keys) replaced by ``***``."""
    targets = []
    try:
        if ctx_or_targets is not None and hasattr(ctx_or_targets, "config"):
            targets = [t.model_dump() for t in ctx_or_targets.config.settings.notify.targets]
        elif isinstance(ctx_or_targets, list):
            targets = ctx_or_targets
    except Exception:  # the config itself failed to load: no secrets known to scrub
        targets = []
    for t in targets:
        for name in (t.get("url_env"), t.get("routing_key_env")):
            secret = env.get(name) if name else None
            if secret:
                text = text.replace(secret, "***")
    return text


# -- sending -------------------------------------------------------------------------------------
@dataclass
class Delivery:
    target: str
    kind: str
    event: str
    ok: bool
    status: int | None = None
    error: str | None = None
    attempts: int = 0
    ms: float = 0.0
    dedup_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("target", "kind", "event", "ok", "status", "error", "attempts", "ms",
                                               "dedup_key")}


def _post(url: str, body: Mapping[str, Any], timeout: float) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps(body, default=str).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the URL is the operator's)
            resp.read(65536)
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def deliver(target: Mapping[str, Any], event: Mapping[str, Any], env: Mapping[str, str]) -> Delivery:
    """Send ``event`` to one target, retrying a refused connection, a timeout or a 5xx/429 answer.
    Returns what happened; never raises."""
    started = time.monotonic()
    d = Delivery(target["name"], target["kind"], event["event"], False, dedup_key=event.get("dedup_key"))
    url_env, key_env = target.get("url_env"), target.get("routing_key_env")
    url = env.get(url_env) if url_env else (PAGERDUTY_URL if target["kind"] == "pagerduty" else None)
    key = env.get(key_env) if key_env else None
    if not url:
        d.error = f"environment variable {url_env} is not set"
    elif target["kind"] == "pagerduty" and not key:
        d.error = f"environment variable {key_env} is not set"
    else:
        body = payload(target["kind"], event, routing_key=key)
        for attempt in range(int(target.get("retries", 0)) + 1):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 4.0))
            d.attempts = attempt + 1
            try:
                d.status = _post(url, body, float(target.get("timeout", 2.0)))
                d.error = None if d.status < 300 else f"HTTP {d.status}"
                if d.status < 300 or (d.status < 500 and d.status != 429):
                    break  # done, or a client error that a retry will not fix
            except Exception as exc:  # refused, timed out, DNS, TLS: one line, secrets scrubbed
                reason = getattr(exc, "reason", None) or exc
                d.status, d.error = None, f"{type(reason).__name__}: {reason}"
        if d.error:
            d.error = scrub(d.error, env, [dict(target)])
    d.ok = d.error is None
    d.ms = round((time.monotonic() - started) * 1000, 1)
    return d


def deadline_for(targets: list[Mapping[str, Any]]) -> float:
    """The longest one event may take over all its targets (they are sent in parallel)."""
    return max((float(t.get("timeout", 2.0)) * (int(t.get("retries", 0)) + 1) + 2.0 * int(t.get("retries", 0))
                for t in targets), default=0.0) + 1.0


def send_event(event: Mapping[str, Any], env: Mapping[str, str]) -> list[Delivery]:
    """Every target of ``event`` in parallel, under one hard deadline; a target still hanging then is
    reported as timed out (its thread is a daemon and dies with the process)."""
    targets = event.get("targets") or []
    results: dict[int, Delivery] = {}
    threads = []
    for i, t in enumerate(targets):
        th = threading.Thread(target=lambda i=i, t=t: results.__setitem__(i, deliver(t, event, env)), daemon=True)
        th.start()
        threads.append(th)
    end = time.monotonic() + deadline_for(targets)
    for th in threads:
        th.join(max(0.0, end - time.monotonic()))
    return [results.get(i) or Delivery(t["name"], t["kind"], event["event"], False, error="timed out (hard deadline)",
                                       dedup_key=event.get("dedup_key"))
            for i, t in enumerate(targets)]


def record(store_url: str | None, state_dir: Path, event: Mapping[str, Any], deliveries: list[Delivery]) -> None:
    """One audit entry ``notify`` per delivery; if the store cannot take them, a line in
    ``.llctl/notify/failed.jsonl`` (shown by `llctl notify status` and `doctor`)."""
    now = datetime.now(UTC)
    try:
        if not store_url:
            raise RuntimeError("no store URL given to the sender")
        from lifelong_cli.store import audit
        from lifelong_cli.store.db import Store

        with Store(store_url).tx() as t:
            for d in deliveries:
                audit.append(t, model=event.get("model"), ts=now, actor=str(event.get("actor") or "llctl"),
                             verb="notify", args={"target": d.target, "event": d.event}, reason=None,
                             outcome="ok" if d.ok else "failed", detail=d.to_dict())
    except Exception as exc:  # the store is down too: keep the record on disk instead
        line = {"at": now.isoformat(), "event": event.get("event"), "model": event.get("model"),
                "store_error": f"{type(exc).__name__}: {exc}"[:300], "deliveries": [d.to_dict() for d in deliveries]}
        path = Path(state_dir) / "notify" / "failed.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


def drain(state_dir: Path, store_url: str | None, env: Mapping[str, str], *, wait: float = LOCK_WAIT_SECONDS) -> int:
    """Send everything in the outbox, oldest first, holding the outbox lock; returns events sent."""

    box = outbox_dir(state_dir)
    box.mkdir(parents=True, exist_ok=True)
    lock = (box.parent / "lock").open("a")
    try:
        if not _lock(lock, wait):
            return 0  # the holder sends what is waiting; a later sender retries the rest
        sent = 0
        while True:
            waiting = sorted(p for p in box.glob("*.json") if not p.name.startswith("."))
            if not waiting:
                return sent
            for p in waiting:
                try:
                    event = json.loads(p.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    p.rename(p.with_suffix(".unreadable"))
                    continue
                record(store_url, state_dir, event, send_event(event, env))
                p.unlink(missing_ok=True)
                sent += 1
    finally:
        lock.close()


def _lock(f: Any, wait: float) -> bool:
    """Block (using no CPU) until the outbox lock is ours, for at most ``wait`` seconds."""
    import fcntl

    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        if threading.current_thread() is not threading.main_thread():
            end = time.monotonic() + wait
            while time.monotonic() < end:
                time.sleep(0.2)
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    continue
            return False
    import signal

    def expired(*_: Any) -> None:
        raise TimeoutError

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, wait)
    try:
        fcntl.flock(f, fcntl.LOCK_EX)
        return True
    except TimeoutError:
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def main() -> None:
    """The detached sender: a job ({state_dir, store_url}) on stdin; then drain the outbox."""
    job = json.loads(sys.stdin.read() or "{}")
    drain(Path(job["state_dir"]), job.get("store_url"), os.environ)


# -- the CLI's side: test, status ----------------------------------------------------------------
@dataclass(frozen=True)
class NotifyTestResult(Result):
    model: str
    ok: bool
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""


def send_test(ctx: AppContext, *, target: str | None = None) -> NotifyTestResult:
    """Send a ``test`` event now, synchronously, to every target (or the one named); report each
    (``ok`` False when any failed: the CLI exits 7)."""
    settings = ctx.config.settings
    names = [t.name for t in settings.notify.targets]
    if not names:
        raise NotFoundError("no notification targets are configured",
                            hint="add notify.targets to llctl.yaml (see config.example.yaml)")
    if target is not None and target not in names:
        raise NotFoundError(f"no notification target {target!r}; targets: {', '.join(names)}",
                            hint=f"llctl notify test --target {names[0]}")
    targets = [t.model_dump() for t in settings.notify.targets if target in (None, t.name)]
    model = ctx.model
    event = make_event(ctx, {"event": "test", "severity": "info", "key": f"test/{uuid.uuid4().hex[:12]}"},
                       model=model, args={}, reason=None, detail={}, verb="notify test", outcome="ok",
                       targets=targets)
    deliveries = send_event(event, ctx.env)
    paged = [t for t, d in zip(targets, deliveries, strict=True) if t["kind"] == "pagerduty" and d.ok]
    if paged:  # a test must not leave an alert open on someone's pager: resolve it at once
        for d in send_event({**event, "action": "resolve", "targets": paged}, ctx.env):
            if not d.ok:
                deliveries.append(d)
    parts = [f"{d.target} ({d.kind}): " + (f"ok, HTTP {d.status} in {d.ms:.0f} ms" if d.ok else f"failed: {d.error}")
             for d in deliveries]
    return NotifyTestResult(model, all(d.ok for d in deliveries), [d.to_dict() for d in deliveries],
                            f"model '{model}': test notification — " + "; ".join(parts))


@dataclass(frozen=True)
class NotifyStatus(Result):
    model: str
    targets: list[dict[str, Any]]
    pending: int
    recent: list[dict[str, Any]]
    failed: int
    unrecorded: int
    message: str = ""


def status(ctx: AppContext, *, limit: int = 20) -> NotifyStatus:
    """The configured targets (whether their environment variables are set here), events waiting in
    the outbox, and the latest deliveries from the audit log."""
    from lifelong_cli.store import audit

    settings = ctx.config.settings
    model = ctx.model
    targets = [{"name": t.name, "kind": t.kind, "events": t.events, "timeout": t.timeout, "retries": t.retries,
                **{k: getattr(t, k) for k in ("url_env", "routing_key_env") if getattr(t, k)},
                "env_set": all(ctx.env.get(n) for n in (t.url_env, t.routing_key_env) if n)}
               for t in settings.notify.targets]
    box = outbox_dir(ctx.config.state_dir)
    pending = len(list(box.glob("*.json"))) if box.is_dir() else 0
    unrecorded_file = Path(ctx.config.state_dir) / "notify" / "failed.jsonl"
    unrecorded = len(unrecorded_file.read_text(encoding="utf-8").splitlines()) if unrecorded_file.is_file() else 0
    with ctx.store.tx(write=False) as t:
        recent = audit.query(t, model=model, verb="notify", limit=limit)
    rows = [{"at": r["ts"], "outcome": r["outcome"], **{k: (r["detail"] or {}).get(k) for k in
                                                        ("target", "event", "status", "error", "attempts", "ms")}}
            for r in recent]
    failed = sum(1 for r in rows if r["outcome"] == "failed")
    msg = (f"model '{model}': {len(targets)} notification target(s); {pending} event(s) waiting to be sent; "
           f"{failed} of the last {len(rows)} deliveries failed")
    if unrecorded:
        msg += f"; {unrecorded} delivery record(s) could not reach the store (see {unrecorded_file})"
    return NotifyStatus(model, targets, pending, jsonable(rows), failed, unrecorded, msg)


@dataclass(frozen=True)
class FlushResult(Result):
    model: str
    sent: int
    pending: int
    message: str = ""


def flush(ctx: AppContext, *, wait: float = 30.0) -> FlushResult:
    """Send what is waiting in the outbox now, in this process (after a crash or a reboot killed the
    sender); each delivery is recorded as usual."""
    model = ctx.model
    sent = drain(ctx.config.state_dir, ctx.config.store_url, ctx.env, wait=wait)
    box = outbox_dir(ctx.config.state_dir)
    pending = len(list(box.glob("*.json"))) if box.is_dir() else 0
    msg = f"model '{model}': {sent} waiting event(s) sent (deliveries: `llctl notify status`)"
    if pending:
        msg += f"; {pending} still waiting (another sender holds the outbox)"
    return FlushResult(model, sent, pending, msg)


def doctor_check(ctx: AppContext) -> tuple[bool, str, str | None] | None:
    """For `llctl doctor`: None without targets, else (ok, detail, hint)."""
    from lifelong_cli.store import audit

    targets = ctx.config.settings.notify.targets
    if not targets:
        return None
    unset = sorted({n for t in targets for n in (t.url_env, t.routing_key_env) if n and not ctx.env.get(n)})
    box = outbox_dir(ctx.config.state_dir)
    stale = [p for p in box.glob("*.json") if time.time() - p.stat().st_mtime > 300] if box.is_dir() else []
    with ctx.store.tx(write=False) as t:
        last = {}
        for r in audit.query(t, model=ctx.model, verb="notify", limit=50):
            last[(r["detail"] or {}).get("target")] = r
    failing = sorted(str(k) for k, r in last.items() if r["outcome"] == "failed")
    problems = ([f"environment variable(s) {', '.join(unset)} not set here"] if unset else []) \
        + ([f"{len(stale)} event(s) waiting in the outbox for over 5 min"] if stale else []) \
        + ([f"last delivery to {', '.join(failing)} failed"] if failing else [])
    if problems:
        return False, "; ".join(problems), "`llctl notify status` lists deliveries; `llctl notify test` sends one now"
    return True, f"{len(targets)} target(s), last deliveries ok", None

