"""AppContext: everything a command or an op needs, passed explicitly (nothing reads globals).

Adapters (config, store) are built on first use, so a command that needs neither stays fast."""

from __future__ import annotations

import getpass
import os
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from lifelong_cli.config import LoadedConfig
    from lifelong_cli.store.db import Store


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_actor(env: Mapping[str, str]) -> str:
    if env.get("LLCTL_ACTOR"):
        return env["LLCTL_ACTOR"]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return user


@dataclass
class AppContext:
    config_file: str | None = None
    cwd: Path = field(default_factory=Path.cwd)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    overrides: dict[str, Any] = field(default_factory=dict)
    actor: str | None = None
    json: bool = False
    debug: bool = False
    clock: Callable[[], datetime] = utcnow
    stdout: Console | None = None
    stderr: Console | None = None

    def __post_init__(self) -> None:
        if self.actor is None:
            self.actor = default_actor(self.env)

    @cached_property
    def config(self) -> LoadedConfig:
        from lifelong_cli.config import load_config

        return load_config(explicit=self.config_file, env=self.env, overrides=self.overrides, cwd=self.cwd)

    @cached_property
    def store(self) -> Store:
        """The state store, checked to be at this llctl's schema revision."""
        store = self.raw_store
        store.require_current()
        return store

    @cached_property
    def raw_store(self) -> Store:
        """The state store without the schema check (for `db upgrade`, `doctor`, `init`)."""
        from lifelong_cli.store.db import Store

        return Store(self.config.store_url)

    @cached_property
    def model_row(self) -> dict[str, Any]:
        """The store's row of the model this command acts on (see ``store.models.resolve``)."""
        from lifelong_cli.store import models

        cfg = self.config
        with self.store.tx(write=False) as t:
            return models.resolve(t, cfg.settings.model.name, explicit=cfg.model_named)

    @property
    def model(self) -> str:
        """The name of the model this command acts on; every state row it reads or writes is that model's."""
        return self.model_row["name"]

    @property
    def data_root(self) -> str:
        """This model's data directory (or URL): data.root, below it the model's prefix."""
        root = self.config.data_root
        prefix = self.model_row["data_prefix"]
        return root if not prefix else f"{root.rstrip('/')}/{prefix}"

    @property
    def registry_root(self) -> Path:
        """This model's local registry directory (or its cache of MLflow's artifacts): registry.root,
        below it the model's prefix. Versions store their artifacts' full local paths, so a version
        written before models had prefixes still resolves."""
        prefix = self.model_row["data_prefix"]
        root = self.config.registry_root
        return root / prefix if prefix else root

    def now(self) -> datetime:
        return self.clock()

    @property
    def host_id(self) -> str:
        return f"{self.actor}@{socket.gethostname()} pid {os.getpid()}"

    def say(self, text: str) -> None:
        """One plain line on stdout (no rich: the emergency verbs' output path stays light)."""
        sys.stdout.write(text + "\n")

    def warn(self, text: str) -> None:
        """One plain line on stderr."""
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def out(self) -> Console:
        if self.stdout is None:
            from rich.console import Console

            self.stdout = Console(highlight=False, soft_wrap=True)
        return self.stdout

    def err(self) -> Console:
        if self.stderr is None:
            from rich.console import Console

            self.stderr = Console(stderr=True, highlight=False, soft_wrap=True)
        return self.stderr

    def close(self) -> None:
        if "raw_store" in self.__dict__:
            self.raw_store.dispose()
