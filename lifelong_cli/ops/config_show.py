"""config show: the merged configuration, secrets masked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lifelong_cli.ops._base import Result

if TYPE_CHECKING:
    from lifelong_cli.context import AppContext


@dataclass(frozen=True)
class ConfigShowResult(Result):
    path: str | None
    workspace: str
    config: dict[str, Any]
    sources: dict[str, str]


def config_show(ctx: AppContext) -> ConfigShowResult:
    cfg = ctx.config
    return ConfigShowResult(
        path=str(cfg.path) if cfg.path else None,
        workspace=str(cfg.workspace),
        config=cfg.masked(),
        sources=dict(cfg.sources),
    )
