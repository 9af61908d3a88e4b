"""A synthetic stream for the demo and tests, generated offline (no downloads).

Matches the schema in config.example.yaml: a binary label from a noisy linear rule over x1, x2,
with x3 sometimes missing and a categorical segment. ``broken=True`` mimics a broken upstream:
x1 arrives in the wrong unit (x100) and a share of rows carry text in a numeric column.
``flip=True`` mimics a labelling pipeline gone wrong: every label is inverted. ``split_labels``
turns a batch into examples without labels and the labels that arrive later.

    python -m lifelong_cli.data.synthetic OUT_DIR [--batches 3] [--rows 2000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def batch_table(start: int, rows: int, *, day: int, seed: int, broken: bool = False, flip: bool = False):
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    x1 = rng.normal(0, 1, rows)
    x2 = rng.normal(0, 1, rows)
    x3 = rng.normal(0, 1, rows)
    seg = rng.choice(["a", "b", "c"], rows)
    positive = (x1 + 0.5 * x2 + rng.normal(0, 0.5, rows)) > 0
    label = (positive != flip).astype(int).astype(str)
    x1_out = (x1 * 100 if broken else x1).round(5).astype(str).astype(object)
    if broken:
        x1_out[rng.random(rows) < 0.05] = "n/a"
    x3_out = x3.round(5).astype(str).astype(object)
    x3_out[rng.random(rows) < 0.1] = None
    times = [f"2026-11-{day:02d}T{(i * 7) % 24:02d}:{i % 60:02d}:00Z" for i in range(rows)]
    return pa.table({
        "example_id": [f"ex-{start + i}" for i in range(rows)], "event_time": times, "label": label,
        "x1": x1_out, "x2": x2.round(5).astype(str), "x3": x3_out, "segment": seg,
    })


def split_labels(table):
    """(examples without the label, labels: key + event time + label) — labels arrive later."""
    return table.drop_columns(["label"]), table.select(["example_id", "event_time", "label"])


def main() -> None:
    import pyarrow.csv as pcsv

    ap = argparse.ArgumentParser(description="Write a synthetic stream of CSV batches.")
    ap.add_argument("out")
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--broken", type=int, default=None, help="1-based index of the batch with a broken upstream")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for b in range(a.batches):
        t = batch_table(b * a.rows, a.rows, day=1 + b, seed=b, broken=(a.broken == b + 1))
        pcsv.write_csv(t, out / f"batch-{b + 1:02d}.csv")
        print(out / f"batch-{b + 1:02d}.csv")


if __name__ == "__main__":
    main()
