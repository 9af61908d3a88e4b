"""Preprocessing fitted on training rows only, stored with the version and baked into the ONNX
graph, so that serving computes exactly what training computed (no train/serve skew).

Numeric features: missing → training mean, then standardised, then clipped to ±``clip``.
Categorical features: one-hot over the categories in the config (or, if none are configured, those
seen in the first training data); an unknown category is all zeros. The statistics are fitted once,
on the first version's training data, and inherited by every descendant: refitting would move the
inputs under the learned weights.

Features that barely vary in the first data are the hazard of fitting once: a pixel that is 0 in
all but one of the first task's images has a standard deviation of 0.06, and a 16 later becomes a
standardised 260 — a few such inputs swamp every other one (Permuted-Digits through the CLI: 0.83
without clipping, 0.92 with it). So the standardised value is clipped to ±``clip``, and the scale
may have a floor (``scale_floor`` × |mean|; a constant feature gets 1). Both are stored with the
version and baked into the ONNX graph, so serving still computes exactly what training computed.
Not a floor on the declared ``min``/``max``: those are validation bounds, often far wider than the data."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lifelong_cli.data.schema import DataSchema
from lifelong_cli.errors import PreconditionError


@dataclass(frozen=True)
class Preprocessor:
    numeric: list[str]
    means: list[float]
    stds: list[float]
    categorical: list[str]
    categories: list[list[str]]
    task: str  # classification | regression
    classes: list[str]
    clip: float | None = None  # standardised values clipped to ±clip (None: versions fitted before clipping)

    @property
    def n_inputs(self) -> int:
        return len(self.numeric) + sum(len(c) for c in self.categories)

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else 1

    @classmethod
    def fit(cls, table: pa.Table, schema: DataSchema, *, scale_floor: float = 0.0,
            clip: float | None = None) -> Preprocessor:
        """Fit on training rows. ``scale_floor``: the smallest scale, as a share of the magnitude of
        the feature's mean; ``clip``: standardised values are clipped to ±clip."""
        numeric = [f.name for f in schema.features if f.type in ("float", "int", "bool")]
        means, stds = [], []
        for name in numeric:
            x = _floats(table[name])
            finite = x[np.isfinite(x)]
            m = float(finite.mean()) if finite.size else 0.0
            s = float(finite.std()) if finite.size else 1.0
            s = max(s, scale_floor * abs(m))
            means.append(m)
            stds.append(s if s > 1e-12 else 1.0)
        categorical, categories = [], []
        for f in schema.features:
            if f.type != "category":
                continue
            cats = list(f.categories) if f.categories else sorted({v for v in table[f.name].to_pylist() if v is not None})
            categorical.append(f.name)
            categories.append(cats)
        if schema.label_type == "category":
            classes = list(schema.label_categories) if schema.label_categories else sorted(
                {v for v in table[schema.label].to_pylist() if v is not None})
            task = "classification"
        else:
            classes, task = [], "regression"
        return cls(numeric, means, stds, categorical, categories, task, classes, clip)

    def transform(self, table: pa.Table) -> np.ndarray:
        n = table.num_rows
        cols = []
        if self.numeric:
            x = np.stack([_floats(table[c]) for c in self.numeric], axis=1)
            mean, std = np.asarray(self.means), np.asarray(self.stds)
            x = np.where(np.isnan(x), mean, x)
            # in float32, as the ONNX graph computes it, so that clipping cuts at the same values
            z = (x.astype(np.float32) - mean.astype(np.float32)) / std.astype(np.float32)
            cols.append(np.clip(z, -self.clip, self.clip) if self.clip is not None else z)
        for name, cats in zip(self.categorical, self.categories, strict=True):
            idx = {c: i for i, c in enumerate(cats)}
            oh = np.zeros((n, len(cats)))
            for r, v in enumerate(table[name].to_pylist()):
                j = idx.get(v)
                if j is not None:
                    oh[r, j] = 1.0
            cols.append(oh)
        return (np.concatenate(cols, axis=1) if cols else np.zeros((n, 0))).astype(np.float32)

    def targets(self, table: pa.Table, label: str) -> np.ndarray:
        if self.task == "regression":
            return _floats(table[label]).astype(np.float32).reshape(-1, 1)
        idx = {c: i for i, c in enumerate(self.classes)}
        out = np.empty(table.num_rows, dtype=np.int64)
        for r, v in enumerate(table[label].to_pylist()):
            if v not in idx:
                raise PreconditionError(
                    f"label {v!r} is not one of the model's classes {self.classes}",
                    hint="list every class in data.label_categories (new classes need a new model)")
            out[r] = idx[v]
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        return cls(**d)  # a version fitted before clipping has no "clip": None, as it was trained


def _floats(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if pa.types.is_boolean(col.type):
        col = pc.cast(col, pa.float64())
    return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
