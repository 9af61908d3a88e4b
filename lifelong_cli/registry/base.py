"""The registry interface: where a version's artifacts live. Chosen by ``registry.kind``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lifelong_cli.errors import CheckFailedError


@dataclass(frozen=True)
class ArtifactRef:
    name: str
    sha256: str
    bytes: int
    uri: str

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "bytes": self.bytes, "uri": self.uri}

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> ArtifactRef:
        return cls(name, d["sha256"], d["bytes"], d["uri"])


class Registry(Protocol):
    kind: str

    def put(self, name: str, data: bytes) -> ArtifactRef: ...

    def fetch(self, ref: ArtifactRef) -> bytes:
        """The artifact's bytes, verified against its sha256 (CheckFailedError if corrupted)."""
        ...

    def record_version(self, version: int, *, artifacts: dict[str, ArtifactRef], params: dict[str, Any],
                       metrics: dict[str, float], lineage: dict[str, Any]) -> str | None:
        """Record a committed version (an MLflow run and model version); returns a reference or None."""
        ...

    def set_alias(self, alias: str, version: int | None) -> None: ...

    def check(self) -> None:
        """Raise UnavailableError now if the registry cannot be reached."""
        ...


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(ref: ArtifactRef, data: bytes) -> bytes:
    got = sha256_bytes(data)
    if got != ref.sha256:
        raise CheckFailedError(f"artifact {ref.name} ({ref.uri}) fails its checksum: sha256 {got[:12]}… ≠ {ref.sha256[:12]}…",
                               hint="the artifact was corrupted or changed; use another version", artifact=ref.name)
    return data


def open_registry(ctx: Any) -> Registry:
    """The registry of the model the command acts on (``ctx.model``): in MLflow, the registered
    model of that name; locally, the model's content-addressed directory."""
    cfg = ctx.config
    kind = cfg.settings.registry.kind
    if kind == "mlflow":
        from lifelong_cli.registry.mlflow_registry import MlflowRegistry

        return MlflowRegistry(cfg, model=ctx.model, cache_root=ctx.registry_root)
    from lifelong_cli.registry.local import LocalRegistry

    return LocalRegistry(Path(ctx.registry_root))
