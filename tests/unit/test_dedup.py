"""De-duplication on 64-bit key hashes: a real duplicate is dropped, a hash collision never is."""

from __future__ import annotations

import numpy as np

from lifelong_cli.ops.ingest import _first_new


def run(hashes, keys, seen_hashes=(), seen_keys=()):
    h = np.asarray(hashes, np.uint64)
    sh = np.asarray(seen_hashes, np.uint64)
    order = np.argsort(sh)
    keep = _first_new([h], lambda idx: [keys[i] for i in idx], sh[order],
                      lambda hs: [k for k, x in zip(seen_keys, seen_hashes, strict=True) if x in set(hs.tolist())])
    return None if keep is None else keep.to_pylist()


def test_a_repeated_key_keeps_only_its_first_row():
    assert run([5, 9, 5], ["a", "b", "a"]) == [True, True, False]


def test_two_keys_with_the_same_hash_are_both_kept():
    assert run([5, 5], ["a", "b"]) is None


def test_a_key_ingested_before_is_dropped_but_a_colliding_new_key_is_not():
    assert run([5, 6], ["old", "new"], seen_hashes=[5, 6], seen_keys=["old", "other"]) == [False, True]
