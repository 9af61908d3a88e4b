"""Hold-out shares of consecutive batches of sequential keys: the hash llctl uses (FNV-1a 64 +
fmix64) next to the unmixed 32-bit FNV-1a it replaced, per key form, against the 3-sigma band.
Target: at most 1 % of batches outside it (a fair sample: 0.27 %). Exit 1 if missed.

    .venv/bin/python benchmarks/holdout.py [--batches 100] [--size 1200] [--fraction 0.1]
"""

from __future__ import annotations

import argparse
import math
import uuid

import pyarrow as pa

from lifelong_cli.data.schema import in_sample, key_hash

FORMS = {
    "h2-0006000…": lambda i: f"h2-{6000 + i:07d}",
    "ex000000000…": lambda i: f"ex{i:09d}",
    "k0…": lambda i: f"k{i}",
    "user-0…": lambda i: f"user-{i}",
    "0…": lambda i: str(i),
    "uuid4": lambda i: str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15 + 12345) % (1 << 128), version=4)),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--size", type=int, default=1200)
    ap.add_argument("--fraction", type=float, default=0.1)
    a = ap.parse_args()
    want = a.size * a.fraction
    band = 3 * math.sqrt(a.size * a.fraction * (1 - a.fraction))
    print(f"{a.batches} batches of {a.size} consecutive keys at holdout_fraction {a.fraction}: "
          f"target {want:.0f} ± {band:.0f} (3 sigma) each")
    print(f"{'keys':<14} {'now (FNV-1a 64 + fmix64)':<30} {'before (FNV-1a 32)':<30}")
    outside = 0
    for name, form in FORMS.items():
        now, before = [], []
        for b in range(a.batches):
            keys = pa.array([form(i) for i in range(b * a.size, (b + 1) * a.size)])
            now.append(int(in_sample(keys, a.fraction).sum()))
            before.append(int((key_hash(keys) <= int(a.fraction * 0xFFFFFFFF)).sum()))
        out = lambda xs: sum(abs(x - want) > band for x in xs)  # noqa: E731
        outside += out(now)
        print(f"{name:<14} {min(now):>4}–{max(now):<4} ({out(now)} outside)          "
              f"{min(before):>4}–{max(before):<4} ({out(before)} outside)")
    share = outside / (len(FORMS) * a.batches)
    ok = share <= 0.01
    print(f"batches outside 3 sigma: {share:.2%} (target ≤ 1%): {'met' if ok else 'MISSED'}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
