"""Validation gates: each reports its figure, its threshold and whether it passed."""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lifelong_cli.errors import CheckFailedError, NotFoundError
from lifelong_cli.registry.base import ArtifactRef


@dataclass
class Gate:
    name: str
    passed: bool | None  # None: not judged (e.g. no stable version to compare with)
    figure: Any
    threshold: Any
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Loaded:
    """A version's artifacts, verified and loaded."""

    version: dict[str, Any]
    pre: Any
    net: Any  # the torch module: a factory model, or a state dict the numpy reader declined
    session: Any
    onnx_bytes: bytes
    layers: list[tuple[np.ndarray, np.ndarray]] | None = None  # the built-in MLP's weights, read without torch
    _targets: dict[tuple[int, str], tuple[Any, np.ndarray]] = field(default_factory=dict, repr=False)

    def targets(self, table, label: str) -> np.ndarray:
        """``pre.targets`` of a table, computed once per table: every gate asks for the golden labels."""
        hit = self._targets.get((id(table), label))
        if hit is None or hit[0] is not table:
            hit = self._targets[(id(table), label)] = (table, self.pre.targets(table, label))
        return hit[1]


def load(registry, version: dict[str, Any], settings) -> Loaded:
    """Fetch (checksum-verified) and load a version; raises CheckFailedError/NotFoundError on a bad artifact.
    The built-in MLP's state dict is read without torch (training/inference.py); a factory model, or
    a state dict that reader declines, is loaded by torch."""
    import onnxruntime as ort

    from lifelong_cli.training import inference
    from lifelong_cli.training.preprocess import Preprocessor

    arts = version["artifacts"]
    blobs = {name: registry.fetch(ArtifactRef.from_dict(name, ref)) for name, ref in sorted(arts.items())}
    pre = Preprocessor.from_dict(json.loads(blobs["preprocess"]))
    net, layers = None, None
    if not settings.model.factory and (state := inference.read_state_dict(blobs["state_dict"])) is not None:
        layers = inference.mlp_layers(state, list(settings.model.hidden), pre.n_inputs, pre.n_outputs)
    if layers is None:
        net = _torch_net(version, blobs["state_dict"], settings, pre)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(blobs["onnx"], sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a broken graph
        raise CheckFailedError(f"v{version['id']}: the ONNX model does not load ({type(exc).__name__})",
                               hint="re-train the version") from None
    return Loaded(version, pre, net, session, blobs["onnx"], layers)


def _torch_net(version: dict[str, Any], state_dict: bytes, settings, pre):
    import torch

    from lifelong_cli.training.model import build_model

    net = build_model(settings.model, pre.n_inputs, pre.n_outputs)
    try:
        net.load_state_dict(torch.load(io.BytesIO(state_dict), weights_only=True))
    except (RuntimeError, ValueError) as exc:
        raise CheckFailedError(f"v{version['id']}: state_dict does not load into the configured model ({exc})".splitlines()[0],
                               hint="was model.hidden / model.factory changed since it was trained?") from None
    return net.eval()


def scores_onnx(m: Loaded, table) -> np.ndarray:
    from lifelong_cli.training.inference import onnx_inputs

    return m.session.run(None, onnx_inputs(m.pre, table))[0]


def scores_state_dict(m: Loaded, table) -> np.ndarray:
    """The trained network's own scores from its state dict (numpy for the built-in MLP, torch for
    the rest): the reference the ONNX graph must match."""
    if m.layers is not None:
        from lifelong_cli.training.inference import mlp_scores

        return mlp_scores(m.layers, m.pre.transform(table), m.pre.task)
    import torch

    from lifelong_cli.training.model import Scored

    with torch.no_grad():
        return Scored(m.net, m.pre.task)(torch.from_numpy(m.pre.transform(table))).numpy()


def metrics(m: Loaded, scores: np.ndarray, table, label: str) -> dict[str, float]:
    y = m.targets(table, label)
    if m.pre.task == "classification":
        pred = scores.argmax(1)
        f1s = []
        for c in range(len(m.pre.classes)):
            tp = float(((pred == c) & (y == c)).sum())
            fp = float(((pred == c) & (y != c)).sum())
            fn = float(((pred != c) & (y == c)).sum())
            if tp + fp + fn:
                f1s.append(2 * tp / (2 * tp + fp + fn))
        return {"accuracy": float((pred == y).mean()), "macro_f1": float(np.mean(f1s)) if f1s else 0.0}
    err = scores.reshape(-1) - y.reshape(-1)
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean()))}


def per_slice_accuracy(m: Loaded, scores: np.ndarray, table, label: str, slice_col: str) -> dict[str, tuple[float, int]]:
    import pyarrow.compute as pc

    y = m.targets(table, label)
    ok = (scores.argmax(1) == y) if m.pre.task == "classification" else -np.abs(scores.reshape(-1) - y.reshape(-1))
    col = table[slice_col]
    if col.null_count:  # slices named None among the others: the general (slower) path
        slices = np.asarray(col.to_pylist(), dtype=object)
        return {str(s): (float(ok[slices == s].mean()), int((slices == s).sum())) for s in sorted(set(slices))}
    enc = pc.dictionary_encode(col).combine_chunks()
    names, codes = enc.dictionary.to_pylist(), enc.indices.to_numpy(zero_copy_only=False)
    rows = np.bincount(codes, minlength=len(names))
    hits = np.bincount(codes, weights=ok.astype(np.float64), minlength=len(names))
    return {str(names[i]): (float(hits[i] / rows[i]), int(rows[i]))
            for i in sorted(range(len(names)), key=names.__getitem__) if rows[i]}


def latency_p99_ms(m: Loaded, table, n: int = 200) -> float:
    from lifelong_cli.training.inference import onnx_inputs

    feeds = [onnx_inputs(m.pre, table.slice(i % max(1, table.num_rows), 1)) for i in range(min(n, max(1, table.num_rows)))]
    for f in feeds[:10]:
        m.session.run(None, f)
    times = []
    for i in range(n):
        f = feeds[i % len(feeds)]
        t0 = time.perf_counter()
        m.session.run(None, f)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 99))


def signature(m: Loaded) -> dict[str, Any]:
    return {"inputs": [(i.name, i.type) for i in m.session.get_inputs()],
            "outputs": [(o.name, o.type, o.shape[1] if len(o.shape) > 1 else None) for o in m.session.get_outputs()]}


HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "mae": False, "rmse": False}


def sanity(cand: Loaded, cs: np.ndarray, golden, label: str, vs) -> Gate:
    """Finite weights and outputs, and predictions not collapsed onto one class (unless the labels are)."""
    weights_ok = finite_weights(cand)
    if cand.pre.task == "classification":
        shares = np.bincount(cs.argmax(1), minlength=cs.shape[1]) / len(cs)
        label_top = max(np.bincount(cand.targets(golden, label), minlength=cs.shape[1]) / len(cs))
        top = float(shares.max())
        collapsed = top > vs.collapse_share and label_top <= vs.collapse_share
        figure = f"top class {top:.1%} of predictions"
    else:
        spread = float(np.std(cs))
        collapsed = spread < 1e-6
        figure = f"prediction std {spread:.3g}"
    ok = weights_ok and bool(np.isfinite(cs).all()) and not collapsed
    return Gate("sanity", ok, figure, f"finite; top class ≤ {vs.collapse_share:.0%}",
                "" if ok else ("non-finite weights or outputs" if not weights_ok else "predictions collapsed"))


def finite_weights(m: Loaded) -> bool:
    if m.layers is not None:
        return all(bool(np.isfinite(w).all() and np.isfinite(b).all()) for w, b in m.layers)
    return all(bool(np.isfinite(p.detach().numpy()).all()) for p in m.net.parameters())


def metric_floors(m: dict[str, float], floors: dict[str, float]) -> list[Gate]:
    out = []
    for name, floor in floors.items():
        if name not in m:
            continue
        good = m[name] >= floor if HIGHER_IS_BETTER[name] else m[name] <= floor
        out.append(Gate(f"golden {name}", good, round(m[name], 4), f"{'≥' if HIGHER_IS_BETTER[name] else '≤'} {floor}"))
    return out


def against_baseline(cand: Loaded, cs: np.ndarray, m: dict[str, float], base: Loaded, base_id: int, golden,
                     label: str, slice_col: str, vs) -> list[Gate]:
    """No regression of the headline metric, and per-slice retention (forgetting), against the baseline."""
    bs = scores_onnx(base, golden)
    bm = metrics(base, bs, golden, label)
    key = "accuracy" if "accuracy" in m else "mae"
    drop = (bm[key] - m[key]) if HIGHER_IS_BETTER[key] else (m[key] - bm[key])
    gates = [Gate("no regression", drop <= vs.max_regression, f"{key} {m[key]:.4f} vs {bm[key]:.4f} (v{base_id})",
                  f"drop ≤ {vs.max_regression}", data={"candidate": m, "baseline": bm})]
    cand_sl = per_slice_accuracy(cand, cs, golden, label, slice_col)
    base_sl = per_slice_accuracy(base, bs, golden, label, slice_col)
    worst, worst_name, judged = 0.0, None, 0
    table = {}
    for name, (acc, n) in cand_sl.items():
        b_acc = base_sl[name][0]
        rel = (b_acc - acc) / b_acc if cand.pre.task == "classification" and b_acc > 0 else 0.0
        table[name] = {"candidate": round(acc, 4), "baseline": round(b_acc, 4), "rows": n, "drop": round(rel, 4)}
        if n >= vs.min_slice_rows:
            judged += 1
            if rel > worst:
                worst, worst_name = rel, name
    ok = worst <= vs.max_slice_drop
    gates.append(Gate("slice retention", ok, f"worst drop {worst:.1%}" + (f" ({worst_name})" if worst_name else ""),
                      f"≤ {vs.max_slice_drop:.0%} per slice", f"{judged} slice(s) judged", data={"slices": table}))
    return gates


def slice_floor(cand: Loaded, cs: np.ndarray, golden, label: str, slice_col: str, vs) -> Gate:
    """Every slice of at least ``min_slice_rows`` rows at or above ``slice_floor`` accuracy: an
    absolute floor, next to the relative retention gate (a slice the baseline also fails is not
    "retained", it is broken)."""
    if cand.pre.task != "classification" or vs.slice_floor is None:
        return Gate("slice floor", None, "not judged", "", "regression, or validation.slice_floor is null")
    sl = {n: (a, r) for n, (a, r) in per_slice_accuracy(cand, cs, golden, label, slice_col).items()
          if r >= vs.min_slice_rows}
    if not sl:
        return Gate("slice floor", None, "no slice large enough", f"≥ {vs.slice_floor:g} per slice")
    name, (acc, rows) = min(sl.items(), key=lambda kv: kv[1][0])
    ok = acc >= vs.slice_floor
    return Gate("slice floor", ok, f"worst slice {name}: accuracy {acc:.4f} on {rows} rows", f"≥ {vs.slice_floor:g}",
                "" if ok else "a slice scores below the floor: its labels or its data may be broken (`llctl drift`, "
                "`llctl labels show KEY`)", {"slices": len(sl)})


def latency(cand: Loaded, golden, max_ms: float) -> Gate:
    p99 = latency_p99_ms(cand, golden)
    for _ in range(2):  # a busy machine can stall one measurement: the best of three is the model's own figure
        if p99 <= max_ms:
            break
        p99 = min(p99, latency_p99_ms(cand, golden))
    return Gate("latency", p99 <= max_ms, f"p99 {p99:.2f} ms", f"≤ {max_ms} ms")


__all__ = ["Gate", "Loaded", "load", "scores_onnx", "scores_state_dict", "metrics", "per_slice_accuracy", "latency_p99_ms",
           "signature", "sanity", "finite_weights", "metric_floors", "against_baseline", "latency", "HIGHER_IS_BETTER",
           "CheckFailedError", "NotFoundError"]
