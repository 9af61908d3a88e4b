"""Scoring without torch (training/inference.py): the state dict read by the restricted unpickler
equals torch's, the numpy MLP equals the configured torch model, and anything else is declined."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest
import torch

from lifelong_cli.config import ModelSettings
from lifelong_cli.training.artifacts import torch_bytes
from lifelong_cli.training.inference import mlp_layers, mlp_scores, read_state_dict
from lifelong_cli.training.model import Scored, build_model


def _model(hidden: list[int], n_in: int = 6, n_out: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_model(ModelSettings(hidden=hidden), n_in, n_out)
    with torch.no_grad():  # weights large enough that a wrong layer order or activation shows
        for p in net.parameters():
            p.mul_(3.0)
    return net.eval()


@pytest.mark.parametrize("hidden", [[64, 64], [5], []])
def test_the_state_dict_read_without_torch_equals_torchs(hidden):
    net = _model(hidden)
    got = read_state_dict(torch_bytes(net.state_dict()))
    want = {k: v.numpy() for k, v in net.state_dict().items()}
    assert got is not None and set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape
        np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("hidden", [[64, 64], [7]])
def test_the_numpy_mlp_scores_as_the_configured_torch_model(task, hidden):
    n_out = 3 if task == "classification" else 1
    net = _model(hidden, n_out=n_out, seed=1)
    layers = mlp_layers(read_state_dict(torch_bytes(net.state_dict())), hidden, 6, n_out)
    assert layers is not None
    x = np.random.default_rng(2).normal(0, 3, (500, 6)).astype(np.float32)
    with torch.no_grad():
        want = Scored(net, task)(torch.from_numpy(x)).numpy()
    got = mlp_scores(layers, x, task)
    assert got.shape == want.shape == (500, n_out)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_a_state_dict_of_other_sizes_or_layers_is_not_taken_as_the_mlp():
    state = read_state_dict(torch_bytes(_model([16, 16]).state_dict()))
    assert mlp_layers(state, [16, 16], 6, 3) is not None
    assert mlp_layers(state, [32, 16], 6, 3) is None  # model.hidden changed since training
    assert mlp_layers(state, [16, 16], 7, 3) is None
    assert mlp_layers({**state, "net.9.weight": state["net.0.weight"]}, [16, 16], 6, 3) is None


def _zip_with_pickle(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/byteorder", "little")
    return buf.getvalue()


class _Evil:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_naming_any_other_callable_is_declined_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    assert read_state_dict(_zip_with_pickle(pickle.dumps({"w": _Evil(str(marker))}, protocol=2))) is None
    assert not marker.exists()


@pytest.mark.parametrize("blob", [b"", b"not a zip at all", _zip_with_pickle(b"\x80\x02garbage")])
def test_damaged_bytes_are_declined_so_that_torch_gives_the_verdict(blob):
    assert read_state_dict(blob) is None


def test_a_tensor_reaching_past_its_storage_is_declined():
    sd = torch_bytes({"w": torch.zeros(4)})
    z = zipfile.ZipFile(io.BytesIO(sd))
    pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for n in z.namelist():
            data = z.read(n)
            if n.endswith("/data/0"):
                data = data[:8]  # 2 floats left of 4
            out.writestr(n, data)
    assert pkl and read_state_dict(buf.getvalue()) is None
