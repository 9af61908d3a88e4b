"""A version's artifacts as bytes: torch state (loaded weights-only) and Parquet tables."""

from __future__ import annotations

import io
from typing import Any


def torch_bytes(obj: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def torch_load(data: bytes) -> Any:
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)  # never unpickle arbitrary objects


def pq_bytes(table) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def pq_read(data: bytes):
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data))
