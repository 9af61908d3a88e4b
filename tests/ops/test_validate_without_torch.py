"""validate scores the built-in MLP from its state dict without torch: the same verdict and figures
as the torch path (which a model factory still takes), and the same refusal of weights that do not
fit the configured model."""

from __future__ import annotations

import pyarrow.csv as pcsv

from lifelong_cli.data.synthetic import batch_table
from lifelong_cli.ops.ingest import ingest
from lifelong_cli.ops.train import train
from lifelong_cli.ops.validate import validate

FAST = {"training.epochs": "2"}
# The built-in MLP, built by a user factory: validate then loads it with torch.
FACTORY = """
from lifelong_cli.training.model import MLP

def same_mlp(n_inputs, n_outputs, config):
    return MLP(n_inputs, n_outputs, list(config["hidden"]), config["dropout"])
"""


def _trained(make_ctx, tmp_path, batches: int = 2) -> int:
    ctx = make_ctx(overrides=FAST)
    for n in range(1, batches + 1):
        path = tmp_path / f"b{n}.csv"
        pcsv.write_csv(batch_table(n * 1000, 600, day=n, seed=n), path)
        ingest(ctx, path=str(path))
        version = train(ctx).version
    return version


def _gates(result) -> dict[str, dict]:
    return {g["name"]: g for g in result.gates}


def test_numpy_and_torch_paths_give_the_same_verdict_and_figures(make_ctx, tmp_path, monkeypatch):
    version = _trained(make_ctx, tmp_path)
    light = validate(make_ctx(overrides=FAST), version=version, dry_run=True)
    (tmp_path / "same_models.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    heavy = validate(make_ctx(overrides={**FAST, "model.factory": "same_models:same_mlp"}), version=version,
                     dry_run=True)
    a, b = _gates(light), _gates(heavy)
    assert light.verdict == heavy.verdict and set(a) == set(b)
    for name in a:
        if name in ("latency", "onnx parity"):  # a timing, and a difference of float32 rounding
            continue
        assert (a[name]["passed"], a[name]["figure"], a[name]["data"]) == (b[name]["passed"], b[name]["figure"],
                                                                          b[name]["data"]), name
    assert a["onnx parity"]["passed"] is True and b["onnx parity"]["passed"] is True
    for g in (a["onnx parity"], b["onnx parity"]):
        assert float(g["figure"].rsplit(" ", 1)[1]) < 1e-5, g


def test_weights_that_do_not_fit_the_configured_model_fail_integrity(make_ctx, tmp_path):
    version = _trained(make_ctx, tmp_path, batches=1)
    r = validate(make_ctx(overrides={**FAST, "model.hidden": "[8]"}), version=version, dry_run=True)
    integrity = _gates(r)["integrity"]
    assert r.verdict == "rejected" and integrity["passed"] is False
    assert "state_dict does not load into the configured model" in integrity["detail"]
