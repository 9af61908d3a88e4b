"""What a replica answers with: a version's ONNX model, or a fallback; and the request-row checks.

Rows arrive as JSON objects keyed by feature name. They are checked against the schema in the
config (the same rules `ingest` applies) and turned into the ONNX model's inputs: one ``[N, 1]``
tensor per feature."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lifelong_cli.config import FeatureSpec

FLOAT32_MAX = float(np.finfo(np.float32).max)


class BadRequest(Exception):
    """A request the client must fix (422), with the reason."""


def check_rows(rows: Any, features: list[FeatureSpec], max_rows: int) -> list[dict[str, Any]]:
    if isinstance(rows, dict):
        rows = [rows]
    if not isinstance(rows, list) or not rows:
        raise BadRequest('give "row": {...} or "rows": [{...}, ...] with at least one row')
    if len(rows) > max_rows:
        raise BadRequest(f"{len(rows)} rows in one request; the limit is {max_rows} (serving.max_batch_rows)")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise BadRequest(f"row {i}: expected an object of feature values, got {type(row).__name__}")
        for f in features:
            v = row.get(f.name)
            where = f"row {i}, feature {f.name!r}"
            if v is None:
                if not f.nullable:
                    raise BadRequest(f"{where}: missing (the feature is not nullable)")
                continue
            if f.type in ("float", "int"):
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise BadRequest(f"{where}: expected a number, got {json.dumps(v)[:40]}")
                if isinstance(v, float) and not math.isfinite(v):
                    raise BadRequest(f"{where}: not a finite number")
                if abs(v) > FLOAT32_MAX:  # the model takes float32: larger would reach it as infinity
                    raise BadRequest(f"{where}: {json.dumps(v)[:40]} is beyond the float32 range the model takes")
                if f.type == "int" and float(v) != int(v):
                    raise BadRequest(f"{where}: expected an integer, got {v}")
                if (f.min is not None and v < f.min) or (f.max is not None and v > f.max):
                    raise BadRequest(f"{where}: {v} is outside [{f.min}, {f.max}]")
            elif f.type == "bool":
                if not isinstance(v, bool):
                    raise BadRequest(f"{where}: expected true or false, got {json.dumps(v)[:40]}")
            else:
                if not isinstance(v, str):
                    raise BadRequest(f"{where}: expected a string, got {json.dumps(v)[:40]}")
                if f.categories is not None and v not in f.categories:
                    raise BadRequest(f"{where}: {v[:40]!r} is not one of the allowed categories")
    return rows


@dataclass
class ServedModel:
    """A version's ONNX session plus what is needed to read its output."""

    version: int
    session: Any
    numeric: list[str]
    categorical: list[str]
    task: str
    classes: list[str]
    kind: str = "model"

    @classmethod
    def load(cls, version: int, onnx_bytes: bytes, preprocess: dict[str, Any]) -> ServedModel:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
        return cls(version, session, list(preprocess["numeric"]), list(preprocess["categorical"]),
                   preprocess["task"], list(preprocess["classes"]))

    def feeds(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        if len(rows) == 1:  # the common case, kept cheap
            r = rows[0]
            feed = {n: np.array([[np.nan if r.get(n) is None else r[n]]], dtype=np.float32) for n in self.numeric}
            for n in self.categorical:
                feed[n] = np.array([["" if r.get(n) is None else str(r[n])]], dtype=object)
            return feed
        feed = {}
        for name in self.numeric:
            vals = [r.get(name) for r in rows]
            feed[name] = np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float32).reshape(-1, 1)
        for name in self.categorical:
            feed[name] = np.array(["" if r.get(name) is None else str(r.get(name)) for r in rows],
                                  dtype=object).reshape(-1, 1)
        return feed

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]:
        scores = self.session.run(None, self.feeds(rows))[0]
        if not np.isfinite(scores).all():
            raise FloatingPointError(f"v{self.version} produced a non-finite output")
        if self.task == "classification":
            return [self.classes[i] for i in scores.argmax(1)]
        return [float(x) for x in scores.reshape(-1)]


@dataclass
class FallbackModel:
    """Answers from a version's fallback artifact: the majority class, the median, or a lookup."""

    version: int
    strategy: str
    doc: dict[str, Any]
    kind: str = "fallback"

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]:
        default = self.doc.get("majority") if self.doc.get("task") == "classification" else self.doc.get("median")
        if self.strategy != "lookup":
            return [default] * len(rows)
        key, table = self.doc["lookup"]["key"], self.doc["lookup"]["table"]
        return [table.get("" if r.get(key) is None else str(r.get(key)), default) for r in rows]


def probe_row(features: list[FeatureSpec]) -> dict[str, Any]:
    """A valid row for a load-and-query check: mid-range numbers, the first category."""
    row: dict[str, Any] = {}
    for f in features:
        if f.type in ("float", "int"):
            lo, hi = f.min if f.min is not None else 0.0, f.max if f.max is not None else 0.0
            mid = (lo + hi) / 2 if f.min is not None and f.max is not None else (lo if f.min is not None else min(hi, 0.0))
            row[f.name] = int(mid) if f.type == "int" else float(mid)
        elif f.type == "bool":
            row[f.name] = False
        else:
            row[f.name] = f.categories[0] if f.categories else "x"
    return row
