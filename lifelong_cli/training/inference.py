"""Scoring a version without importing torch (validate and the gates stay light: torch costs more
start-up than the whole validation): the ONNX feed built from an Arrow table, and the built-in MLP
evaluated in numpy from its state dict. A state dict is read by a restricted unpickler that knows
only the names ``torch.save`` writes for plain tensors — like ``torch.load(weights_only=True)``, it
never runs arbitrary code; anything else is declined (``None``) and the caller falls back to torch."""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from typing import Any

import numpy as np

_STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
             "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
             "ByteStorage": np.uint8, "BoolStorage": np.bool_}


def onnx_inputs(pre, table) -> dict[str, np.ndarray]:
    """Feed dict for the exported model from an Arrow table of raw feature columns."""
    import pyarrow.compute as pc

    feed = {}
    for name in pre.numeric:
        col = table[name]
        feed[name] = np.asarray(pc.cast(col, "float64").to_numpy(zero_copy_only=False), np.float32).reshape(-1, 1)
    for name in pre.categorical:
        feed[name] = np.asarray([("" if v is None else str(v)) for v in table[name].to_pylist()], dtype=object).reshape(-1, 1)
    return feed


class _Declined(Exception):
    """The file is not a plain tensor state dict this reader knows; torch decides instead."""


class _Storage:
    def __init__(self, dtype: type) -> None:
        self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):  # noqa: ARG001 - torch's signature
    arr, n = storage
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in (*size, *stride)):
        raise _Declined("bad tensor geometry")
    if 0 not in size and (offset + sum((d - 1) * s for d, s in zip(size, stride, strict=True)) >= n
                          or int(np.prod(size)) > n):
        raise _Declined("tensor reaches past its storage")
    if 0 in size:
        return np.zeros(size, arr.dtype)
    view = np.lib.stride_tricks.as_strided(arr[offset:], shape=size, strides=[s * arr.itemsize for s in stride])
    return np.array(view)


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGES:
            return _Storage(_STORAGES[name])
        raise _Declined(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise _Declined("unknown persistent id")
        _, kind, key, _location, numel = pid
        raw = self.archive.read(f"{self.prefix}data/{key}")
        arr = np.frombuffer(raw, dtype=np.dtype(kind.dtype).newbyteorder("<"))
        if len(arr) < numel:
            raise _Declined("storage shorter than its declared size")
        return arr, int(numel)


def read_state_dict(data: bytes) -> dict[str, np.ndarray] | None:
    """The tensors of a ``torch.save``\\ d state dict as numpy arrays; ``None`` when the bytes are not
    a plain tensor state dict this reader knows (damaged, another format or dtype): torch's own
    loader then gives the verdict and its message."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("data.pkl")]
        if len(pkl) != 1:
            return None
        prefix = pkl[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder") != b"little":
            return None
        obj = _Unpickler(archive.read(pkl[0]), archive, prefix).load()
    except (_Declined, pickle.UnpicklingError, zipfile.BadZipFile, KeyError, EOFError, OSError, TypeError, ValueError,
            AttributeError, IndexError, MemoryError):
        return None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()):
        return None
    return dict(obj)


def mlp_layers(state: dict[str, np.ndarray], hidden: list[int], n_inputs: int,
               n_outputs: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """The (weight, bias) of each Linear of the built-in MLP (training/model.py: Linear, ReLU,
    Dropout per hidden layer, then a Linear), if ``state`` is exactly that network's state dict
    with these sizes; ``None`` otherwise (torch then says what does not fit)."""
    widths = [n_inputs, *hidden, n_outputs]
    want = {}
    for j in range(len(widths) - 1):
        want[f"net.{3 * j}.weight"] = (widths[j + 1], widths[j])
        want[f"net.{3 * j}.bias"] = (widths[j + 1],)
    if set(state) != set(want) or any(state[k].shape != shape or state[k].dtype != np.float32 for k, shape in want.items()):
        return None
    return [(state[f"net.{3 * j}.weight"], state[f"net.{3 * j}.bias"]) for j in range(len(widths) - 1)]


def mlp_scores(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, task: str) -> np.ndarray:
    """The MLP in eval mode (dropout off) on preprocessed float32 rows, plus softmax for classification:
    what ``Scored(net, task)`` computes in torch."""
    h = np.asarray(x, np.float32)
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0, dtype=np.float32)
    if task != "classification":
        return h
    z = np.exp(h - h.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
