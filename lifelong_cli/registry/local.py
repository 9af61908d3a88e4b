"""The local registry: a content-addressed directory (objects/ab/abcdef…), written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lifelong_cli.errors import NotFoundError
from lifelong_cli.fsutil import atomic_write_bytes
from lifelong_cli.registry.base import ArtifactRef, sha256_bytes, verify


class LocalRegistry:
    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha: str) -> Path:
        return self.root / "objects" / sha[:2] / sha

    def put(self, name: str, data: bytes) -> ArtifactRef:
        sha = sha256_bytes(data)
        p = self._path(sha)
        if not p.exists():
            atomic_write_bytes(p, data)
        return ArtifactRef(name, sha, len(data), str(p))

    def fetch(self, ref: ArtifactRef) -> bytes:
        p = Path(ref.uri)
        if not p.exists():
            raise NotFoundError(f"artifact {ref.name} is missing at {p}", hint="the registry directory was changed by hand")
        return verify(ref, p.read_bytes())

    def record_version(self, version: int, *, artifacts: dict[str, ArtifactRef], params: dict[str, Any],
                       metrics: dict[str, float], lineage: dict[str, Any]) -> str | None:
        return None  # the state store row is the record

    def set_alias(self, alias: str, version: int | None) -> None:
        return None  # aliases live in the state store's deployment row

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
