"""init: create (or bring up to date) a workspace."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lifelong_cli.config import CONFIG_NAME, load_config
from lifelong_cli.errors import ConfigError, UsageError
from lifelong_cli.fsutil import atomic_write_text
from lifelong_cli.ops._base import Result
from lifelong_cli.secrets import mask_url, url_password

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"


@dataclass(frozen=True)
class InitResult(Result):
    workspace: Path
    config: Path
    config_written: bool
    backup: Path | None
    store: str
    revision_before: str | None
    revision: str
    created: list[str]
    model: str
    model_added: bool
    other_models: list[str]
    message: str
    next: str


def init(ctx: AppContext, *, directory: str | None = None, force: bool = False,
         store_url: str | None = None, dry_run: bool = False) -> InitResult:
    """Write ``llctl.yaml`` (unless one exists; ``force`` rewrites it, keeping a backup),
    create ``.llctl/`` and bring the state store to the current schema. Safe to re-run."""
    ws = Path(directory).expanduser() if directory else ctx.cwd
    ws = ws if ws.is_absolute() else ctx.cwd / ws
    if ws.exists() and not ws.is_dir():
        raise UsageError(f"{ws} exists and is not a directory", hint="pass a directory to `llctl init`")
    if store_url and (url_password(store_url) is not None or mask_url(store_url) != store_url):
        raise ConfigError("--store-url must not contain a password (it would be written to llctl.yaml); "
                          "nothing was written",
                          hint="put the password in PGPASSWORD (or ~/.pgpass), or the whole URL in LLCTL_STORE__URL, "
                               "and pass the URL without it")
    if store_url and any(c in store_url for c in "\r\n\0"):
        raise UsageError("--store-url contains a line break or NUL", hint="pass the URL on one line")
    cfg_path = ws / CONFIG_NAME
    if dry_run:
        plan = []
        if not cfg_path.exists() or force:
            plan.append(f"{'rewrite' if cfg_path.exists() else 'write'} {cfg_path}")
        plan += [f"create {ws / '.llctl'} (state DB, data, artifacts)"] if not (ws / ".llctl").exists() else []
        plan.append("bring the state store to the current schema")
        return InitResult(workspace=ws, config=cfg_path, config_written=False, backup=None, store="", revision_before=None,
                          revision="", created=[], model="", model_added=False, other_models=[], message="dry run: would " + "; ".join(plan), next="run again without --dry-run")
    ws.mkdir(parents=True, exist_ok=True)
    written, backup, created = False, None, []
    if not cfg_path.exists() or force:
        text = EXAMPLE.read_text(encoding="utf-8")
        if store_url:
            # as a double-quoted YAML scalar (JSON's escapes): a '#' or ': ' in the URL stays part of it
            text = re.sub(r"(?m)^(\s*url:\s*).*$", lambda m: m.group(1) + json.dumps(store_url), text, count=1)
        named = ctx.overrides.get("model.name") or ctx.env.get("LLCTL_MODEL")
        if named:
            text = re.sub(r"(?m)^(\s*name:\s*).*$", lambda m: m.group(1) + str(named), text, count=1)
        if cfg_path.exists():
            backup = cfg_path.with_name(f"{CONFIG_NAME}.bak.{ctx.now():%Y%m%dT%H%M%S}")
            cfg_path.rename(backup)
        atomic_write_text(cfg_path, text)
        written = True
        created.append(str(cfg_path))
    loaded = load_config(explicit=cfg_path, env=ctx.env, overrides=ctx.overrides, cwd=ws)
    for d in (loaded.state_dir, Path(loaded.data_root), loaded.registry_root):
        if "://" in str(d):
            continue
        if not d.exists():
            d.mkdir(parents=True)
            created.append(str(d))
    from lifelong_cli.store import audit, models
    from lifelong_cli.store.db import Store

    name = loaded.settings.model.name
    store = Store(loaded.store_url)
    try:
        before, after = store.upgrade(model_name=name)
        with store.tx() as t:
            others = [m for m in models.names(t) if m != name]
            added = models.add(t, name=name, actor=ctx.actor, now=ctx.now(), data_prefix=name)
            if added:
                audit.append(t, model=name, ts=ctx.now(), actor=ctx.actor, verb="init", args={"workspace": str(ws)},
                             reason=None, outcome="ok", detail={"model_added": name, "other_models": others})
    finally:
        store.dispose()
    verb = "initialised" if written and not backup else "updated"
    held = (f"; the store also holds model(s) {', '.join(others)} — each keeps its own state"
            if others else "")
    return InitResult(
        workspace=ws,
        config=cfg_path,
        config_written=written,
        backup=backup,
        store=store.display_url,
        revision_before=before,
        revision=after,
        created=created,
        model=name,
        model_added=added,
        other_models=others,
        message=f"workspace {verb} at {ws} for model '{name}' ({'added to' if added else 'already in'} the store, "
                f"schema {after}){held}",
        next=f"edit {cfg_path} to describe your data, then `llctl ingest FILE`; `llctl status` shows the state",
    )
